// Note [Live rank logs] (service.proto), vsdmctl's side: GetLogs with a cursor per rank, the
// bytes cut into lines per rank (a partial last line waits for its newline), polled while
// following.
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/call_unary.h"
#include "client/commands.h"
#include "client/job_format.h"
#include "common/retry.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "proto/job_state.h"

namespace vsdm::client {
namespace {

constexpr absl::Duration kCallTimeout = absl::Seconds(10);
// The stored events of `logs --events` arrive at once; a running job's stream then waits for
// news, which this deadline cuts off.
constexpr absl::Duration kEventsTimeout = absl::Seconds(2);

// Where the whole rank logs are (the agents' disks).
void FullLogsHint(const LogsArgs& args, std::ostream& out) {
  out << "ranks' logs: <agent work dir>/jobs/" << args.job_id << "/logs/";
  if (!args.local_state_dir.empty()) {
    out << " (local cluster: " << args.local_state_dir << "/work/jobs/" << args.job_id << "/logs/)";
  }
  out << "\n";
}

absl::Status PrintEvents(const LogsArgs& args, v1::JobService::StubInterface& stub, std::ostream& out) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, kEventsTimeout);
  v1::WatchJobRequest req;
  req.set_job_id(args.job_id);
  auto reader = stub.WatchJob(&ctx, req);
  v1::JobEvent e;
  while (reader->Read(&e)) {
    if (e.kind() == "progress") continue;
    out << (args.json ? ToJson(e) : EventLine(e)) << "\n";
  }
  const grpc::Status s = reader->Finish();
  if (s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
    VSDM_RETURN_IF_ERROR(StatusOfCall(absl::StrCat("logs ", args.job_id), s));
  }
  if (!args.json) FullLogsHint(args, out);
  return absl::OkStatus();
}

// Lines of one attempt's ranks as their bytes arrive.
class LogPrinter {
 public:
  LogPrinter(const LogsArgs& args, int trainers, std::ostream& out) : args_(args), trainers_(trainers), out_(out) {}

  // Takes one GetLogs answer; true when the next read should come at once. A newer attempt seen
  // while reading one with cursors: first the rest of the old one (asked by number: its ranks'
  // last lines, such as why it failed), then the new one from its start.
  bool Take(const v1::GetLogsResponse& resp) {
    if (draining_) {
      Chunks(resp);
      if (!resp.chunks().empty()) return true;
      draining_ = false;
      Flush();
      cursors_.clear();  // the next read is of the newest attempt, from its start
      return true;
    }
    if (resp.attempt() != 0 && resp.attempt() != attempt_) {
      if (!cursors_.empty()) {  // read with the old attempt's cursors
        draining_ = true;
        return true;
      }
      Flush();
      if (attempt_ != 0 || args_.follow) Marker(resp.attempt());
      attempt_ = resp.attempt();
    }
    Chunks(resp);
    return !resp.chunks().empty();
  }
  void Chunks(const v1::GetLogsResponse& resp) {
    for (const v1::LogChunk& c : resp.chunks()) {
      std::string& buf = partial_[c.rank()];
      if (c.skipped() > 0) {  // what came before the gap is a line of its own
        if (!buf.empty()) Line(c.rank(), buf);
        buf.clear();
        Line(c.rank(), absl::StrCat("[... ", c.skipped(), " bytes skipped ...]"));
      }
      buf += c.data();
      size_t start = 0;
      for (size_t nl; (nl = buf.find('\n', start)) != std::string::npos; start = nl + 1)
        Line(c.rank(), buf.substr(start, nl - start));
      buf.erase(0, start);
      cursors_[c.rank()] = c.offset() + static_cast<int64_t>(c.data().size());
    }
    out_ << std::flush;
  }
  // Partial last lines, as they are (the rank has ended or the reader stops).
  void Flush() {
    for (auto& [rank, buf] : partial_)
      if (!buf.empty()) Line(rank, buf);
    partial_.clear();
    out_ << std::flush;
  }
  void FillRequest(v1::GetLogsRequest* req) const {
    req->set_attempt(args_.attempt != 0 ? args_.attempt : attempt_);
    req->clear_after();
    for (const auto& [rank, offset] : cursors_) {
      v1::LogCursor* c = req->add_after();
      c->set_rank(rank);
      c->set_offset(offset);
    }
  }
  // Following the newest attempt: ask for attempt 0 (the newest) so a newer one is seen.
  void FollowNewest(v1::GetLogsRequest* req) const {
    if (args_.attempt == 0 && !draining_) req->set_attempt(0);
  }
  int lines() const { return lines_; }  // printed so far

 private:
  void Marker(int attempt) {
    if (args_.json) return;
    out_ << "--- attempt " << attempt << " ---\n";
  }
  void Line(int rank, const std::string& text) {
    ++lines_;
    if (args_.json) {
      out_ << nlohmann::json{{"attempt", attempt_}, {"rank", rank}, {"line", text}}.dump(
                  -1, ' ', false, nlohmann::json::error_handler_t::replace)
           << "\n";
      return;
    }
    out_ << "[" << (rank == trainers_ ? "var " : "rank ") << rank << "] " << text << "\n";
  }
  const LogsArgs& args_;
  const int trainers_;
  std::ostream& out_;
  int attempt_ = 0;
  bool draining_ = false;  // reading the rest of attempt_ before the newer one
  int lines_ = 0;
  std::map<int, int64_t> cursors_;
  std::map<int, std::string> partial_;
};

}  // namespace

absl::Status RunLogs(const LogsArgs& args, v1::JobService::StubInterface& stub, std::ostream& out) {
  if (args.events) return PrintEvents(args, stub, out);
  v1::GetJobRequest get;
  get.set_job_id(args.job_id);
  v1::Job job;
  VSDM_RETURN_IF_ERROR(CallUnary(absl::StrCat("logs ", args.job_id), kCallTimeout,
                                 [&](grpc::ClientContext* ctx) { return stub.GetJob(ctx, get, &job); }));
  LogPrinter printer(args, job.trainers() > 0 ? job.trainers() : static_cast<int>(job.spec().resources().trainers()),
                     out);
  v1::GetLogsRequest req;
  req.set_job_id(args.job_id);
  if (args.rank >= 0) req.set_rank(args.rank);
  for (int failures = 0;;) {
    printer.FillRequest(&req);
    if (args.follow) printer.FollowNewest(&req);
    v1::GetLogsResponse resp;
    const absl::Status s = CallUnary(absl::StrCat("logs ", args.job_id), kCallTimeout,
                                     [&](grpc::ClientContext* ctx) { return stub.GetLogs(ctx, req, &resp); });
    if (!s.ok()) {
      if (!args.follow || !IsRetryable(s) || ++failures > args.reconnect_tries) return s;
      absl::SleepFor(absl::Seconds(1));  // the coordinator may be restarting
      continue;
    }
    failures = 0;
    const bool got = printer.Take(resp);
    if (got) continue;  // there may be more at once
    if (!args.follow || IsFinalState(resp.state())) break;
    absl::SleepFor(args.poll);
  }
  printer.Flush();
  if (printer.lines() == 0 && !args.json) {
    out << "no rank output of " << args.job_id << " is kept by the coordinator (yet); ";
    FullLogsHint(args, out);
  }
  return absl::OkStatus();
}

}  // namespace vsdm::client
