// The subcommands of vsdmctl, one function each, written against JobService::StubInterface so
// tests can drive them with the generated MockJobServiceStub. vsdmctl.cc only parses flags into
// the Args structs below and calls these; printing of errors and the exit code are ExitCode and
// ReportFailure, the one place that maps a Status to what the user sees.
// Threading: none of these are thread-safe against the same `out`; each call is independent.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/local_cluster.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "vsdm/v1/service.grpc.pb.h"

namespace vsdm::client {

// Exit codes of vsdmctl.
inline constexpr int kExitOk = 0;
inline constexpr int kExitJobNotSucceeded = 1;  // the job failed or was cancelled; nothing to fetch
inline constexpr int kExitRefused = 2;          // bad usage or input refused (the message names it)
inline constexpr int kExitUnavailable = 3;      // the coordinator is unreachable

// OK -> 0; a status made by WithExitCode -> its code; retryable (UNAVAILABLE,
// DEADLINE_EXCEEDED, see common/retry.h) -> 3; anything else -> 2.
int ExitCode(const absl::Status& status);

// `status` carrying an explicit exit code (e.g. 1 for "the job did not succeed"), which wins
// over the code mapping of ExitCode and suppresses the "is the coordinator running?" hint.
absl::Status WithExitCode(absl::Status status, int exit_code);

// Prints "vsdmctl: <message>" to `err` (nothing for an empty message) and, when the coordinator
// was unreachable, a hint to start it; returns ExitCode(status). REQUIRES: !status.ok().
int ReportFailure(const absl::Status& status, std::ostream& err);

// How `watch` (and `submit --wait`) follows a job's event stream.
struct FollowOptions {
  bool tty = false;                                   // redraw the progress bar in place (\r) instead of a line a round
  int reconnect_tries = 60;                           // retryable stream failures in a row before giving up
  absl::Duration reconnect_delay = absl::Seconds(1);  // between reconnects (the coordinator may restart)
};

struct SubmitArgs {
  std::string file;                    // -f: the job spec YAML
  std::vector<std::string> overrides;  // --set key=value, applied in order over the file
  std::string request_id;              // --request-id; "" = no idempotency key
  // --sweep key=v1,v2 (repeatable): submit the grid of every combination as one group (Note
  // [Sweeps] in service.proto); the first key varies slowest.
  std::vector<std::string> sweeps;
  bool wait = false;                   // --wait: follow the job to the end (exit 1 unless it succeeds)
  bool json = false;                   // -o json
  FollowOptions follow;                // for --wait
};

struct JobArgs {  // get, cancel
  std::string job_id;
  bool json = false;  // -o json (get only; cancel prints one line either way)
  std::string group = "";  // cancel --group: every member of the sweep not yet final
};

struct ListArgs {
  std::string state;  // --state queued|running|succeeded|failed|cancelled; "" = any
  bool json = false;
  std::string group = "";   // --group: the members of one sweep, with their overrides and the metric
  std::string metric = "";  // --metric: the figure of metrics.json to compare members by ("" = the headline)
};

struct WatchArgs {
  std::string job_id;
  bool json = false;  // one JSON event per line, no progress bar
  FollowOptions follow;
};

struct LogsArgs {
  std::string job_id;
  bool json = false;  // one JSON object a line: {"attempt", "rank", "line"}
  int rank = -1;      // --rank; -1 = every rank
  int attempt = 0;    // --attempt; 0 = the newest (and, following, each newer one as it starts)
  bool follow = false;  // -f: until the job has ended
  bool events = false;  // --events: the job's event log instead of its ranks' output
  absl::Duration poll = absl::Milliseconds(500);  // between GetLogs while following
  int reconnect_tries = 60;                       // retryable failures in a row while following
  // The state dir of the local cluster when the coordinator addressed is that cluster's
  // ("" = it is not), to say where the ranks' logs are on this machine.
  std::string local_state_dir;
};

struct ArtifactsArgs {
  std::string job_id;
  std::string out_dir;  // created if missing; each file appears only whole (size checked)
};

struct WorkersArgs {
  bool json = false;
};

// Loads the spec (with the overrides), submits it and prints the job (or follows it with
// --wait). INVALID_ARGUMENT/NOT_FOUND from the spec file name it; the server's errors are
// prefixed "submit <file>".
absl::Status RunSubmit(const SubmitArgs& args, v1::JobService::StubInterface& stub, std::ostream& out);
absl::Status RunGet(const JobArgs& args, v1::JobService::StubInterface& stub, std::ostream& out);
// Every page of `req` (from its first), newest first, in one response; errors prefixed `what`.
absl::StatusOr<v1::ListJobsResponse> ListAllJobs(v1::JobService::StubInterface& stub, v1::ListJobsRequest req,
                                                 absl::string_view what);
// Every page (100 jobs a request), newest first. INVALID_ARGUMENT for an unknown --state.
absl::Status RunList(const ListArgs& args, v1::JobService::StubInterface& stub, std::ostream& out);
// Streams events (reconnecting on retryable failures) until the job is final, then prints its
// outcome. WithExitCode(1) when it did not succeed.
absl::Status RunWatch(const WatchArgs& args, v1::JobService::StubInterface& stub, std::ostream& out);
absl::Status RunCancel(const JobArgs& args, v1::JobService::StubInterface& stub, std::ostream& out);

// Note [Sweeps]: the grid of `sweeps` ("key=v1,v2,...") as the overrides of each member, in
// order (the first key slowest). INVALID_ARGUMENT naming the bad --sweep; at most 256 members.
absl::StatusOr<std::vector<std::vector<std::string>>> ExpandSweep(const std::vector<std::string>& sweeps);
// submit --sweep: every member loaded and checked here, then one SubmitSweep; prints the group
// and its members (with --wait: waits for them all, prints the group table; exit 1 unless all
// succeeded).
absl::Status RunSubmitSweep(const SubmitArgs& args, v1::JobService::StubInterface& stub, std::ostream& out);
// list --group: GroupTable of the members.
absl::Status RunListGroup(const ListArgs& args, v1::JobService::StubInterface& stub, std::ostream& out);
// cancel --group: cancels every member not yet final; prints each.
absl::Status RunCancelGroup(const JobArgs& args, v1::JobService::StubInterface& stub, std::ostream& out);
// Note [Live rank logs]: the output of the job's ranks that the coordinator keeps, each line as
// "[rank R] ..." (the variational rank: "[var R] ..."); with `follow`, new lines as they come
// until the job has ended, "--- attempt N ---" when a newer attempt starts. With `events`: the
// stored events (progress left out), then where the full logs are on the agents.
absl::Status RunLogs(const LogsArgs& args, v1::JobService::StubInterface& stub, std::ostream& out);
// Downloads the known artifact files that exist. WithExitCode(1) when there is none; DATA_LOSS
// naming the file and both sizes when one arrives short (nothing is left under its name).
absl::Status RunArtifacts(const ArtifactsArgs& args, v1::JobService::StubInterface& stub, std::ostream& out);
absl::Status RunWorkers(const WorkersArgs& args, v1::JobService::StubInterface& stub, std::ostream& out);
// The standard gRPC health check of the coordinator (for container HEALTHCHECKs and probes):
// prints SERVING and returns OK, or fails (exit 1 when it answers but is not serving, 3 when it
// cannot be reached). Needs no token: health is open.
absl::Status RunHealth(grpc::health::v1::Health::StubInterface& stub, std::ostream& out);

// `local up`: starts the cluster and prints where it is. Failures other than
// FAILED_PRECONDITION (already up, binaries missing: exit 2) exit 3, without the hint.
absl::Status RunLocalUp(const LocalClusterOptions& options, std::ostream& out);
// `local down`: stops it; prints the state dir either way. Exit 1 if it could not.
absl::Status RunLocalDown(const std::string& state_dir, std::ostream& out);

}  // namespace vsdm::client
