#include "client/job_format.h"

#include <google/protobuf/util/json_util.h>

#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/format.h"
#include "proto/job_state.h"

namespace vsdm::client {

std::string ToJson(const google::protobuf::Message& message) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  o.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(message, &out, o);
  return out;
}

std::string ProgressBar(const v1::Progress& p) {
  const int width = 30;
  const double f = p.rounds() > 0 ? static_cast<double>(p.round()) / static_cast<double>(p.rounds()) : 0.0;
  const int fill = static_cast<int>(f * width);
  std::string bar(width, ' ');
  for (int i = 0; i < fill && i < width; ++i) bar[i] = '=';
  if (fill >= 0 && fill < width) bar[fill] = '>';
  return absl::StrFormat("round %d/%d [%s] %3.0f%%  loss %.4f  |A| %.3f  %.0f steps/s  goodput %.0f%%  ETA %s",
                         p.round(), p.rounds(), bar, 100 * f, p.loss(), p.a_norm(), p.steps_per_second(),
                         100 * p.goodput_ratio(), FormatDuration(p.eta_seconds()));
}

std::string FinalSummary(const v1::Job& j) {
  std::string out = absl::StrCat(j.job_id(), " ", JobStateName(j.state()));
  if (!j.message().empty()) absl::StrAppend(&out, ": ", j.message());
  absl::StrAppend(&out, "\n");
  const auto& m = j.progress().metrics();
  auto get = [&](const char* k) {
    auto it = m.find(k);
    return it == m.end() ? -1.0 : it->second;
  };
  if (j.state() == v1::JOB_STATE_SUCCEEDED && m.count("energy_distance")) {
    absl::StrAppend(&out, absl::StrFormat("energy distance %.4f (data floor %.4f), PMF-RMSE %.3e "
                                          "(floor %.3e), ODE straightness %.3f, %.0fs\n",
                                          get("energy_distance"), get("energy_distance_floor"), get("pmf_rmse"),
                                          get("pmf_rmse_floor"), get("ode_straightness"), get("wall_seconds")));
  }
  if (j.state() == v1::JOB_STATE_SUCCEEDED && m.count("fd")) {
    absl::StrAppend(
        &out, absl::StrFormat("FD %.2f (floor %.2f, Gaussian %.1f, blurred %.2f), confident %.2f "
                              "(real %.2f), class TV %.3f, memorisation ratio %.2f, %.0fs\n",
                              get("fd"), get("fd_floor"), get("fd_gaussian"), get("fd_blur"), get("confident_fraction"),
                              get("confident_fraction_test"), get("class_tv_from_uniform"), get("memorisation_ratio"),
                              get("wall_seconds")));
  }
  return out;
}

std::string JobDetails(const v1::Job& j) {
  std::string out =
      absl::StrFormat("%s  %s  %s  attempts %d\n", j.job_id(), j.spec().name(), JobStateName(j.state()), j.attempts());
  if (!j.pending_reason().empty()) absl::StrAppend(&out, "pending: ", j.pending_reason(), "\n");
  if (j.state() == v1::JOB_STATE_RUNNING && j.progress().rounds() > 0)
    absl::StrAppend(&out, ProgressBar(j.progress()), "\n");
  if (IsFinalState(j.state())) {
    absl::StrAppend(&out, FinalSummary(j));
  } else if (!j.message().empty()) {
    absl::StrAppend(&out, "last: ", j.message(), "\n");
  }
  return out;
}

std::string JobTable(const v1::ListJobsResponse& jobs) {
  std::string out =
      absl::StrFormat("%-14s %-20s %-10s %-8s %s\n", "JOB", "NAME", "STATE", "ATTEMPTS", "PROGRESS / REASON");
  for (const auto& j : jobs.jobs()) {
    std::string extra = j.state() == v1::JOB_STATE_QUEUED ? j.pending_reason()
                        : j.state() == v1::JOB_STATE_RUNNING
                            ? absl::StrFormat("round %d/%d", j.progress().round(), j.progress().rounds())
                            : j.message();
    absl::StrAppend(&out, absl::StrFormat("%-14s %-20s %-10s %-8d %s\n", j.job_id(), j.spec().name().substr(0, 20),
                                          JobStateName(j.state()), j.attempts(), extra));
  }
  return out;
}

std::string GroupMetric(const v1::ListJobsResponse& jobs, const std::string& metric) {
  if (!metric.empty()) return metric;
  for (const char* m : {"energy_distance", "fd", "crps_sum"})
    for (const auto& j : jobs.jobs())
      if (j.progress().metrics().count(m)) return m;
  return "";
}

bool HigherIsBetter(const std::string& metric) {
  for (const char* m : {"confident_fraction", "accuracy", "classifier_accuracy", "goodput_ratio"})
    if (metric == m) return true;
  return false;
}

int BestMember(const v1::ListJobsResponse& jobs, const std::string& metric) {
  int best = -1;
  const bool higher = HigherIsBetter(metric);
  for (int i = 0; i < jobs.jobs_size(); ++i) {
    const v1::Job& j = jobs.jobs(i);
    auto it = j.progress().metrics().find(metric);
    if (j.state() != v1::JOB_STATE_SUCCEEDED || it == j.progress().metrics().end()) continue;
    if (best < 0) {
      best = i;
      continue;
    }
    const double b = jobs.jobs(best).progress().metrics().at(metric);
    if (higher ? it->second > b : it->second < b) best = i;
  }
  return best;
}

std::string GroupTable(const v1::ListJobsResponse& jobs, const std::string& wanted) {
  const std::string metric = GroupMetric(jobs, wanted);
  const int best = BestMember(jobs, metric);
  std::string out = absl::StrFormat("  %-14s %-10s %-40s %s\n", "JOB", "STATE", "OVERRIDES",
                                    metric.empty() ? "METRIC" : metric);
  std::map<std::string, int> states;
  for (int i = 0; i < jobs.jobs_size(); ++i) {
    const v1::Job& j = jobs.jobs(i);
    ++states[JobStateName(j.state())];
    auto it = j.progress().metrics().find(metric);
    const std::string value = it == j.progress().metrics().end()     ? "-"
                              : j.state() == v1::JOB_STATE_RUNNING ? "(running)"
                                                                   : absl::StrFormat("%.4f", it->second);
    absl::StrAppend(&out, absl::StrFormat("%s %-14s %-10s %-40s %s\n", i == best ? "*" : " ", j.job_id(),
                                          JobStateName(j.state()), absl::StrJoin(j.overrides(), " "), value));
  }
  if (best >= 0) {
    const v1::Job& b = jobs.jobs(best);
    absl::StrAppend(&out, absl::StrFormat("best: %s (%s) %s %.4f (%s is better)\n", b.job_id(),
                                          absl::StrJoin(b.overrides(), " "), metric, b.progress().metrics().at(metric),
                                          HigherIsBetter(metric) ? "higher" : "lower"));
  }
  std::vector<std::string> counts;
  for (const auto& [state, n] : states) counts.push_back(absl::StrCat(n, " ", state));
  absl::StrAppend(&out, jobs.jobs_size(), " members: ", absl::StrJoin(counts, ", "), "\n");
  return out;
}

std::string WorkerTable(const v1::ListWorkersResponse& workers) {
  std::string out =
      absl::StrFormat("%-16s %-6s %-16s %-6s %-5s %s\n", "WORKER", "STATE", "HOST", "SLOTS", "FREE", "RANKS");
  for (const auto& w : workers.workers()) {
    std::string ranks;
    for (const auto& r : w.ranks()) absl::StrAppend(&ranks, ranks.empty() ? "" : " ", r.attempt_id(), "#", r.rank());
    absl::StrAppend(&out, absl::StrFormat("%-16s %-6s %-16s %-6d %-5d %s\n", w.worker_id(), w.state(),
                                          w.resources().host(), w.resources().slots(), w.free_slots(), ranks));
  }
  return out;
}

std::string EventLine(const v1::JobEvent& e) {
  return absl::StrCat("#", e.sequence(), " [", e.kind(), "] ", JobStateName(e.state()), ": ", e.message());
}

}  // namespace vsdm::client
