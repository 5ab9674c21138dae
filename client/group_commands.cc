// Note [Sweeps] (service.proto), vsdmctl's side: --sweep expands the grid here, every member is
// loaded through the same path as `submit -f --set` (so a bad value is refused before anything
// is sent, naming the member's override), and the group goes up in one SubmitSweep.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "client/call_unary.h"
#include "client/commands.h"
#include "client/job_format.h"
#include "common/job_spec.h"
#include "common/retry.h"
#include "common/status_macros.h"
#include "proto/job_spec_proto.h"
#include "proto/job_state.h"

namespace vsdm::client {
namespace {

constexpr absl::Duration kSubmitTimeout = absl::Seconds(30);
constexpr absl::Duration kCallTimeout = absl::Seconds(10);
constexpr size_t kMaxMembers = 256;

absl::StatusOr<v1::ListJobsResponse> ListGroup(v1::JobService::StubInterface& stub, const std::string& group) {
  v1::ListJobsRequest req;
  req.set_group_id(group);
  req.set_page_size(500);
  VSDM_ASSIGN_OR_RETURN(v1::ListJobsResponse all, ListAllJobs(stub, req, absl::StrCat("list --group ", group)));
  // Members in submission order (ids are handed out in order), not newest first.
  std::sort(all.mutable_jobs()->begin(), all.mutable_jobs()->end(),
            [](const v1::Job& a, const v1::Job& b) { return a.job_id() < b.job_id(); });
  if (all.jobs().empty())
    return absl::NotFoundError(absl::StrCat("group ", group, ": no such sweep (or none of it is yours)"));
  return all;
}

// --wait: one line each time a member ends, then the group table.
absl::Status WaitForGroup(const std::string& group, v1::JobService::StubInterface& stub, std::ostream& out) {
  int done_shown = 0;
  for (int failures = 0;;) {
    absl::StatusOr<v1::ListJobsResponse> jobs = ListGroup(stub, group);
    if (!jobs.ok()) {
      if (!IsRetryable(jobs.status()) || ++failures > 60) return jobs.status();
      absl::SleepFor(absl::Seconds(1));
      continue;
    }
    failures = 0;
    const int done = static_cast<int>(std::count_if(jobs->jobs().begin(), jobs->jobs().end(),
                                                    [](const v1::Job& j) { return IsFinalState(j.state()); }));
    if (done != done_shown) out << group << ": " << done << "/" << jobs->jobs_size() << " members done" << std::endl;
    done_shown = done;
    if (done == jobs->jobs_size()) {
      out << GroupTable(*jobs, "");
      const bool all_ok = std::all_of(jobs->jobs().begin(), jobs->jobs().end(),
                                      [](const v1::Job& j) { return j.state() == v1::JOB_STATE_SUCCEEDED; });
      return all_ok ? absl::OkStatus() : WithExitCode(absl::AbortedError(""), kExitJobNotSucceeded);
    }
    absl::SleepFor(absl::Seconds(2));
  }
}

}  // namespace

absl::StatusOr<std::vector<std::vector<std::string>>> ExpandSweep(const std::vector<std::string>& sweeps) {
  std::vector<std::vector<std::string>> members = {{}};
  for (const std::string& axis : sweeps) {
    const size_t eq = axis.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == axis.size())
      return absl::InvalidArgumentError(absl::StrCat("--sweep ", axis, ": must be field=value1,value2,..."));
    const std::string key = axis.substr(0, eq);
    const std::vector<std::string> values = absl::StrSplit(axis.substr(eq + 1), ',');
    if (std::any_of(values.begin(), values.end(), [](const std::string& v) { return v.empty(); }))
      return absl::InvalidArgumentError(absl::StrCat("--sweep ", axis, ": an empty value"));
    if (members.size() * values.size() > kMaxMembers)
      return absl::InvalidArgumentError(absl::StrCat("--sweep: more than ", kMaxMembers, " members"));
    std::vector<std::vector<std::string>> next;
    for (const auto& m : members)
      for (const std::string& v : values) {
        next.push_back(m);
        next.back().push_back(absl::StrCat(key, "=", v));
      }
    members = std::move(next);
  }
  return members;
}

absl::Status RunSubmitSweep(const SubmitArgs& args, v1::JobService::StubInterface& stub, std::ostream& out) {
  auto members = ExpandSweep(args.sweeps);
  if (!members.ok()) return WithExitCode(members.status(), kExitRefused);
  v1::SubmitSweepRequest req;
  req.set_request_id(args.request_id);
  for (const std::vector<std::string>& overrides : *members) {
    std::vector<std::string> all = args.overrides;  // --set first, the member's values over them
    all.insert(all.end(), overrides.begin(), overrides.end());
    auto spec = LoadJobSpecFile(args.file, all);
    if (!spec.ok())
      return WithExitCode(
          absl::Status(spec.status().code(),
                       absl::StrCat(args.file, " (", absl::StrJoin(overrides, " "), "): ", spec.status().message())),
          kExitRefused);
    v1::SweepMember* m = req.add_members();
    *m->mutable_spec() = JobSpecToProto(*spec);
    for (const std::string& o : overrides) m->add_overrides(o);
  }
  v1::SubmitSweepResponse resp;
  VSDM_RETURN_IF_ERROR(CallUnary(absl::StrCat("submit --sweep ", args.file), kSubmitTimeout,
                                 [&](grpc::ClientContext* ctx) { return stub.SubmitSweep(ctx, req, &resp); }));
  if (args.json && !args.wait) {
    out << ToJson(resp) << "\n";
    return absl::OkStatus();
  }
  out << resp.group_id() << " submitted: " << resp.jobs_size() << " jobs" << std::endl;
  for (const v1::Job& j : resp.jobs()) out << "  " << j.job_id() << "  " << absl::StrJoin(j.overrides(), " ") << "\n";
  out << std::flush;
  if (!args.wait) return absl::OkStatus();
  return WaitForGroup(resp.group_id(), stub, out);
}

absl::Status RunListGroup(const ListArgs& args, v1::JobService::StubInterface& stub, std::ostream& out) {
  VSDM_ASSIGN_OR_RETURN(const v1::ListJobsResponse jobs, ListGroup(stub, args.group));
  out << (args.json ? ToJson(jobs) + "\n" : GroupTable(jobs, args.metric));
  return absl::OkStatus();
}

absl::Status RunCancelGroup(const JobArgs& args, v1::JobService::StubInterface& stub, std::ostream& out) {
  VSDM_ASSIGN_OR_RETURN(const v1::ListJobsResponse jobs, ListGroup(stub, args.group));
  int cancelled = 0;
  for (const v1::Job& j : jobs.jobs()) {
    if (IsFinalState(j.state())) continue;
    v1::CancelJobRequest req;
    req.set_job_id(j.job_id());
    v1::Job after;
    const absl::Status s = CallUnary(absl::StrCat("cancel ", j.job_id()), kCallTimeout,
                                     [&](grpc::ClientContext* ctx) { return stub.CancelJob(ctx, req, &after); });
    if (absl::IsFailedPrecondition(s)) continue;  // it ended meanwhile
    VSDM_RETURN_IF_ERROR(s);
    out << after.job_id() << " " << JobStateName(after.state()) << "\n";
    ++cancelled;
  }
  out << args.group << ": " << cancelled << " of " << jobs.jobs_size() << " members cancelled\n";
  return absl::OkStatus();
}

}  // namespace vsdm::client
