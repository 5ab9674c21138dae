#include "server/coordinator_metrics.h"

#include <absl/status/status.h>

#include <cctype>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace vsdm::server {
namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

const prometheus::Histogram::BucketBoundaries kLatency = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                          0.1,    0.25,  0.5,    1,     2.5,  5};
const prometheus::Histogram::BucketBoundaries kWait = {1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600};

}  // namespace

CoordinatorMetrics::CoordinatorMetrics(std::shared_ptr<prometheus::Registry> registry)
    : registry_(std::move(registry)) {
  prometheus::BuildGauge()
      .Name("vsdm_build_info")
      .Help("Build of this process")
      .Register(*registry_)
      .Add({{"version", VSDM_VERSION}, {"component", "coordinator"}})
      .Set(1);
  BuildJobMetrics();
  BuildSchedulingMetrics();
  store_writable_ = &prometheus::BuildGauge()
                         .Name("vsdm_store_writable")
                         .Help("1 while the job store can write, 0 while writes fail (health is NOT_SERVING)")
                         .Register(*registry_)
                         .Add({});
  store_writable_->Set(1);
  auto& calls = prometheus::BuildGauge()
                    .Name("vsdm_handler_calls")
                    .Help("gRPC calls on the coordinator's handler pools, by pool and state (queued, running)")
                    .Register(*registry_);
  for (const char* pool : {"handlers", "heartbeats"})
    handler_calls_[pool] = {&calls.Add({{"pool", pool}, {"state", "queued"}}),
                            &calls.Add({{"pool", pool}, {"state", "running"}})};
  rpc_total_ =
      &prometheus::BuildCounter().Name("vsdm_rpc_total").Help("RPCs by method and status code").Register(*registry_);
  rpc_seconds_ = &prometheus::BuildHistogram()
                      .Name("vsdm_rpc_duration_seconds")
                      .Help("RPC handling time by method")
                      .Register(*registry_);
}

void CoordinatorMetrics::BuildJobMetrics() {
  auto& jobs = prometheus::BuildGauge().Name("vsdm_jobs").Help("Jobs by state").Register(*registry_);
  for (v1::JobState s : {v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING, v1::JOB_STATE_SUCCEEDED, v1::JOB_STATE_FAILED,
                         v1::JOB_STATE_CANCELLED})
    jobs_[s] = &jobs.Add({{"state", Lower(v1::JobState_Name(s).substr(10))}});
  auto& workers =
      prometheus::BuildGauge().Name("vsdm_workers").Help("Registered workers by state").Register(*registry_);
  workers_alive_ = &workers.Add({{"state", "alive"}});
  workers_lost_ = &workers.Add({{"state", "lost"}});
  restarts_ = &prometheus::BuildCounter()
                   .Name("vsdm_job_restarts_total")
                   .Help("Attempts requeued after a failure, by cause (lease_lost, rank_failed, recovery)")
                   .Register(*registry_);
  for (const char* c : {"lease_lost", "rank_failed", "recovery"}) restarts_->Add({{"cause", c}});
  duration_ = &prometheus::BuildHistogram()
                   .Name("vsdm_job_duration_seconds")
                   .Help("Submit to final state, by outcome")
                   .Register(*registry_);
  heartbeat_age_ = &prometheus::BuildGauge()
                        .Name("vsdm_worker_heartbeat_age_seconds")
                        .Help("Time since each alive worker's last heartbeat")
                        .Register(*registry_);
  recovery_ = &prometheus::BuildHistogram()
                   .Name("vsdm_recovery_duration_seconds")
                   .Help("Recovery of a failed attempt by phase: detect, reschedule, resume (Note [Recovery phases])")
                   .Register(*registry_);
  for (const char* ph : {"detect", "reschedule", "resume"}) recovery_->Add({{"phase", ph}}, kWait);
  goodput_ = &prometheus::BuildGauge()
                  .Name("vsdm_job_goodput_ratio")
                  .Help("Running jobs: useful training time / wall time since submit")
                  .Register(*registry_);
  auto& submits =
      prometheus::BuildCounter().Name("vsdm_submits_total").Help("SubmitJob calls by result").Register(*registry_);
  submits_accepted_ = &submits.Add({{"result", "accepted"}});
  submits_refused_ = &submits.Add({{"result", "refused"}});
}

void CoordinatorMetrics::BuildSchedulingMetrics() {
  std::vector<std::string> kinds;
  for (PendingKind k : kAllPendingKinds) kinds.push_back(PendingKindName(k));
  pending_ = &prometheus::BuildGauge()
                  .Name("vsdm_jobs_pending")
                  .Help(absl::StrCat("Queued jobs by why they wait (", absl::StrJoin(kinds, ", "), ")"))
                  .Register(*registry_);
  for (PendingKind k : kAllPendingKinds) pending_by_kind_[k] = &pending_->Add({{"reason", PendingKindName(k)}});
  queue_wait_ = &prometheus::BuildHistogram()
                     .Name("vsdm_queue_wait_seconds")
                     .Help("Time from entering the queue to an attempt starting")
                     .Register(*registry_)
                     .Add({}, kWait);
  pass_ = &prometheus::BuildHistogram()
               .Name("vsdm_scheduling_pass_seconds")
               .Help("Wall time of one scheduling pass (queue snapshot, plan, durable starts)")
               .Register(*registry_)
               .Add({}, kLatency);
  last_pass_ = &prometheus::BuildGauge()
                    .Name("vsdm_scheduling_pass_last_seconds")
                    .Help("Wall time of the latest scheduling pass")
                    .Register(*registry_)
                    .Add({});
  heartbeats_deferred_ = &prometheus::BuildCounter()
                              .Name("vsdm_heartbeats_deferred_total")
                              .Help("Heartbeats answered with only the lease renewed: the coordinator's state was "
                                    "locked longer than the wait (a slow disk under a commit)")
                              .Register(*registry_)
                              .Add({});
}

void CoordinatorMetrics::Update(const JobManagerStats& s) {
  for (auto& [state, g] : jobs_) {
    auto it = s.jobs_by_state.find(state);
    g->Set(it == s.jobs_by_state.end() ? 0 : it->second);
  }
  workers_alive_->Set(s.workers_alive);
  workers_lost_->Set(s.workers_lost);
  for (const auto& [cause, n] : s.restarts_by_cause) {
    double& seen = restarts_seen_[cause];
    if (n > seen) restarts_->Add({{"cause", cause}}).Increment(static_cast<double>(n) - seen);
    seen = std::max(seen, static_cast<double>(n));
  }
  for (auto& [kind, g] : pending_by_kind_) {
    auto it = s.pending_by_kind.find(kind);
    g->Set(it == s.pending_by_kind.end() ? 0 : it->second);
  }
  for (const auto& [outcome, secs] : s.finished) duration_->Add({{"outcome", outcome}}, kWait).Observe(secs);
  for (const auto& [phase, secs] : s.recovery) recovery_->Add({{"phase", phase}}, kWait).Observe(secs);
  for (auto it = heartbeat_gauges_.begin(); it != heartbeat_gauges_.end();) {
    if (s.heartbeat_age_seconds.count(it->first)) {
      ++it;
    } else {
      heartbeat_age_->Remove(it->second);  // lost or gone: its series goes
      it = heartbeat_gauges_.erase(it);
    }
  }
  // Job-labelled series exist only while the job runs.
  for (auto it = goodput_gauges_.begin(); it != goodput_gauges_.end();) {
    if (s.goodput.count(it->first)) {
      ++it;
    } else {
      goodput_->Remove(it->second);
      it = goodput_gauges_.erase(it);
    }
  }
  for (const auto& [id, g] : s.goodput) {
    auto& gg = goodput_gauges_[id];
    if (gg == nullptr) gg = &goodput_->Add({{"job_id", id}});
    gg->Set(g);
  }
  for (const auto& [id, age] : s.heartbeat_age_seconds) {
    auto& g = heartbeat_gauges_[id];
    if (g == nullptr) g = &heartbeat_age_->Add({{"worker", id}});
    g->Set(age);
  }
  for (double w : s.queue_wait_seconds) queue_wait_->Observe(w);
  pass_->Observe(s.last_pass_seconds);
  last_pass_->Set(s.last_pass_seconds);
  if (const double n = static_cast<double>(s.heartbeats_deferred); n > heartbeats_deferred_seen_)
    heartbeats_deferred_->Increment(n - std::exchange(heartbeats_deferred_seen_, n));
}

void CoordinatorMetrics::SetStoreWritable(bool writable) { store_writable_->Set(writable ? 1 : 0); }

void CoordinatorMetrics::SetHandlerCalls(const std::string& pool, int queued, int busy) {
  auto it = handler_calls_.find(pool);
  if (it == handler_calls_.end()) return;
  it->second.first->Set(queued);
  it->second.second->Set(busy);
}

void CoordinatorMetrics::RecordSubmit(bool accepted) { (accepted ? submits_accepted_ : submits_refused_)->Increment(); }

void CoordinatorMetrics::RecordRpc(const std::string& method, int code, double seconds) {
  prometheus::Counter* c;
  prometheus::Histogram* h;
  {
    absl::MutexLock lock(&mu_);
    auto& cc = rpc_counters_[{method, code}];
    if (cc == nullptr)
      cc = &rpc_total_->Add(
          {{"method", method}, {"code", absl::StatusCodeToString(static_cast<absl::StatusCode>(code))}});
    auto& hh = rpc_histograms_[method];
    if (hh == nullptr) hh = &rpc_seconds_->Add({{"method", method}}, kLatency);
    c = cc;
    h = hh;
  }
  c->Increment();
  h->Observe(seconds);
}

}  // namespace vsdm::server
