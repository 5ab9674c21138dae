#include "client/commands.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/call_unary.h"
#include "client/job_format.h"
#include "common/job_spec.h"
#include "common/retry.h"
#include "common/status_macros.h"
#include "common/train_protocol.h"
#include "proto/job_spec_proto.h"
#include "proto/job_state.h"

namespace vsdm::client {
namespace {

namespace fs = std::filesystem;

// The payload WithExitCode puts on a status.
constexpr char kExitCodePayload[] = "type.googleapis.com/vsdm.vsdmctl.ExitCode";

// Deadlines of the calls.
constexpr absl::Duration kSubmitTimeout = absl::Seconds(30);
constexpr absl::Duration kCallTimeout = absl::Seconds(10);
constexpr absl::Duration kArtifactTimeout = absl::Seconds(60);

// What the agent of rank 0 uploads for a succeeded job.

absl::StatusOr<v1::Job> GetJob(v1::JobService::StubInterface& stub, const std::string& job_id) {
  v1::GetJobRequest req;
  req.set_job_id(job_id);
  v1::Job job;
  VSDM_RETURN_IF_ERROR(CallUnary(absl::StrCat("get ", job_id), kCallTimeout,
                                 [&](grpc::ClientContext* ctx) { return stub.GetJob(ctx, req, &job); }));
  return job;
}

// The state of a progress bar across the events of one stream.
struct BarState {
  int64_t last_round = -1;
  bool open = false;  // a tty bar line is on screen without its newline
};

void PrintEvent(const v1::JobEvent& e, const WatchArgs& args, BarState& bar, std::ostream& out) {
  const bool tty = args.follow.tty;
  if (args.json) {
    out << ToJson(e) << std::endl;
  } else if (e.kind() == "progress") {
    if (e.progress().round() != bar.last_round || tty) {
      out << (tty ? "\r" : "") << ProgressBar(e.progress()) << (tty ? "" : "\n") << std::flush;
      bar.open = tty;
      bar.last_round = e.progress().round();
    }
  } else {
    if (bar.open) out << "\n";
    bar.open = false;
    out << "[" << e.kind() << "] " << e.message() << std::endl;
  }
}

// One WatchJob stream from `*after`; advances `*after` past the non-progress events seen and
// `*tries` back to 0 on any event. The stream's status.
grpc::Status FollowStream(const WatchArgs& args, v1::JobService::StubInterface& stub, int64_t* after, int* tries,
                          std::ostream& out) {
  grpc::ClientContext ctx;
  v1::WatchJobRequest req;
  req.set_job_id(args.job_id);
  req.set_after_sequence(*after);
  std::unique_ptr<grpc::ClientReaderInterface<v1::JobEvent>> reader = stub.WatchJob(&ctx, req);
  v1::JobEvent e;
  BarState bar;
  while (reader->Read(&e)) {
    *tries = 0;
    PrintEvent(e, args, bar, out);
    if (e.kind() != "progress") *after = e.sequence();
  }
  if (bar.open) out << "\n";
  return reader->Finish();
}

absl::StatusOr<v1::JobState> ParseStateFilter(const std::string& state) {
  std::string upper = "JOB_STATE_";
  for (char c : state) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  v1::JobState st;
  if (!v1::JobState_Parse(upper, &st)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--state: must be queued|running|succeeded|failed|cancelled, got ", state));
  }
  return st;
}

// A hidden temp file beside `final_path`, removed when destroyed unless Commit moved it there.
class TempFile {
 public:
  static absl::StatusOr<std::unique_ptr<TempFile>> Create(const std::string& final_path) {
    static std::atomic<uint64_t> counter{0};
    const fs::path p(final_path);
    const std::string tmp = (p.parent_path() / absl::StrCat(".", p.filename().string(), ".part-", ::getpid(), "-",
                                                            absl::ToUnixNanos(absl::Now()), "-", counter++))
                                .string();
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
    if (fd < 0) return Errno("create", tmp);
    return std::unique_ptr<TempFile>(new TempFile(fd, tmp));
  }
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(path_.c_str());
  }
  absl::Status Write(absl::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::write(fd_, data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Errno("write", path_);
      data.remove_prefix(static_cast<size_t>(n));
    }
    return absl::OkStatus();
  }
  // Makes the bytes durable and moves them to `final_path`.
  absl::Status Commit(const std::string& final_path) {
    if (::fsync(fd_) != 0) return Errno("fsync", path_);
    const int fd = std::exchange(fd_, -1);
    if (::close(fd) != 0 && errno != EINTR) return Errno("close", path_);
    if (::rename(path_.c_str(), final_path.c_str()) != 0) return Errno("rename to", final_path);
    committed_ = true;
    const int dir = ::open(fs::path(final_path).parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {  // best effort: the file itself is whole either way
      ::fsync(dir);
      ::close(dir);
    }
    return absl::OkStatus();
  }

 private:
  TempFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  static absl::Status Errno(absl::string_view what, const std::string& path) {
    const int err = errno == 0 ? EIO : errno;
    std::string msg = absl::StrCat(what, " ", path, ": ", std::strerror(err));
    if (err == ENOSPC || err == EDQUOT || err == EFBIG) return absl::ResourceExhaustedError(std::move(msg));
    return absl::InternalError(std::move(msg));
  }
  int fd_;
  const std::string path_;
  bool committed_ = false;
};

// Artifact `name` of the job into `path`: its size, NOT_FOUND when the job has none of that
// name. The bytes go to a temp file that takes the name only once the stream ended OK with
// exactly the total_bytes of its first chunk; a short or failed download leaves nothing under
// `path` (a file there before stays as it was) and says how many bytes came of how many.
absl::StatusOr<int64_t> Download(v1::JobService::StubInterface& stub, const std::string& job_id, const char* name,
                                 const std::string& path) {
  VSDM_ASSIGN_OR_RETURN(std::unique_ptr<TempFile> tmp, TempFile::Create(path));
  grpc::ClientContext ctx;
  SetDeadline(ctx, kArtifactTimeout);
  v1::GetArtifactRequest req;
  req.set_job_id(job_id);
  req.set_path(name);
  auto reader = stub.GetArtifact(&ctx, req);
  v1::ArtifactChunk chunk;
  int64_t total = -1, got = 0;
  absl::Status written;
  for (bool first = true; written.ok() && reader->Read(&chunk); first = false) {
    if (first) total = chunk.total_bytes();
    got += static_cast<int64_t>(chunk.data().size());
    written = tmp->Write(chunk.data());
  }
  if (!written.ok()) ctx.TryCancel();  // no use receiving the rest
  const grpc::Status s = reader->Finish();
  VSDM_RETURN_IF_ERROR(written);
  if (s.error_code() == grpc::StatusCode::NOT_FOUND) return absl::NotFoundError(name);
  VSDM_RETURN_IF_ERROR(StatusOfCall(absl::StrCat("artifact ", name), s));
  if (total < 0 || got != total) {
    return absl::DataLossError(absl::StrCat("artifact ", name, ": received ", got, " of ",
                                            total < 0 ? std::string("an unknown number of") : absl::StrCat(total),
                                            " bytes; ", path, " not written"));
  }
  VSDM_RETURN_IF_ERROR(tmp->Commit(path));
  return got;
}

}  // namespace

int ExitCode(const absl::Status& status) {
  if (status.ok()) return kExitOk;
  if (auto p = status.GetPayload(kExitCodePayload)) {
    int code = kExitRefused;
    if (absl::SimpleAtoi(std::string(*p), &code)) return code;
  }
  return IsRetryable(status) ? kExitUnavailable : kExitRefused;
}

absl::Status WithExitCode(absl::Status status, int exit_code) {
  status.SetPayload(kExitCodePayload, absl::Cord(absl::StrCat(exit_code)));
  return status;
}

int ReportFailure(const absl::Status& status, std::ostream& err) {
  if (!status.message().empty()) err << "vsdmctl: " << status.message() << "\n";
  const bool explicit_code = status.GetPayload(kExitCodePayload).has_value();
  if (!explicit_code && IsRetryable(status))
    err << "vsdmctl: is the coordinator running? (vsdmctl local up, or --coordinator)\n";
  return ExitCode(status);
}

absl::Status RunSubmit(const SubmitArgs& args, v1::JobService::StubInterface& stub, std::ostream& out) {
  if (!args.sweeps.empty()) return RunSubmitSweep(args, stub, out);
  auto spec = LoadJobSpecFile(args.file, args.overrides);
  if (!spec.ok()) {  // always exit 2: the input is refused, whatever the code
    return WithExitCode(absl::Status(spec.status().code(), absl::StrCat(args.file, ": ", spec.status().message())),
                        kExitRefused);
  }
  v1::SubmitJobRequest req;
  *req.mutable_spec() = JobSpecToProto(*spec);
  req.set_request_id(args.request_id);
  v1::Job job;
  VSDM_RETURN_IF_ERROR(CallUnary(absl::StrCat("submit ", args.file), kSubmitTimeout,
                                 [&](grpc::ClientContext* ctx) { return stub.SubmitJob(ctx, req, &job); }));
  if (args.json && !args.wait) {
    out << ToJson(job) << "\n";
    return absl::OkStatus();
  }
  out << job.job_id() << " submitted (" << JobStateName(job.state()) << ")" << std::endl;
  if (!args.wait) return absl::OkStatus();
  return RunWatch(WatchArgs{job.job_id(), args.json, args.follow}, stub, out);
}

absl::Status RunGet(const JobArgs& args, v1::JobService::StubInterface& stub, std::ostream& out) {
  VSDM_ASSIGN_OR_RETURN(const v1::Job job, GetJob(stub, args.job_id));
  out << (args.json ? ToJson(job) + "\n" : JobDetails(job));
  return absl::OkStatus();
}

absl::StatusOr<v1::ListJobsResponse> ListAllJobs(v1::JobService::StubInterface& stub, v1::ListJobsRequest req,
                                                 absl::string_view what) {
  v1::ListJobsResponse all;
  for (;;) {
    v1::ListJobsResponse resp;
    VSDM_RETURN_IF_ERROR(
        CallUnary(what, kCallTimeout, [&](grpc::ClientContext* ctx) { return stub.ListJobs(ctx, req, &resp); }));
    for (auto& j : *resp.mutable_jobs()) *all.add_jobs() = std::move(j);
    if (resp.next_page_token().empty()) return all;
    req.set_page_token(resp.next_page_token());
  }
}

absl::Status RunList(const ListArgs& args, v1::JobService::StubInterface& stub, std::ostream& out) {
  if (!args.group.empty()) return RunListGroup(args, stub, out);
  v1::ListJobsRequest req;
  if (!args.state.empty()) {
    VSDM_ASSIGN_OR_RETURN(const v1::JobState st, ParseStateFilter(args.state));
    req.set_state(st);
  }
  req.set_page_size(100);
  VSDM_ASSIGN_OR_RETURN(const v1::ListJobsResponse all, ListAllJobs(stub, req, "list"));
  out << (args.json ? ToJson(all) + "\n" : JobTable(all));
  return absl::OkStatus();
}

absl::Status RunWatch(const WatchArgs& args, v1::JobService::StubInterface& stub, std::ostream& out) {
  int64_t after = 0;
  for (int tries = 0;; ++tries) {
    const grpc::Status s = FollowStream(args, stub, &after, &tries, out);
    if (s.ok()) break;
    const absl::Status failed = StatusOfCall(absl::StrCat("watch ", args.job_id), s);
    if (!IsRetryable(failed) || tries >= args.follow.reconnect_tries) return failed;
    absl::SleepFor(args.follow.reconnect_delay);  // the coordinator may be restarting
  }
  VSDM_ASSIGN_OR_RETURN(const v1::Job job, GetJob(stub, args.job_id));
  if (!args.json) out << FinalSummary(job);
  if (job.state() == v1::JOB_STATE_SUCCEEDED) return absl::OkStatus();
  return WithExitCode(absl::AbortedError(""), kExitJobNotSucceeded);
}

absl::Status RunCancel(const JobArgs& args, v1::JobService::StubInterface& stub, std::ostream& out) {
  if (!args.group.empty()) return RunCancelGroup(args, stub, out);
  if (args.job_id.empty()) return absl::InvalidArgumentError("cancel: give a JOB or --group G");
  v1::CancelJobRequest req;
  req.set_job_id(args.job_id);
  v1::Job job;
  VSDM_RETURN_IF_ERROR(CallUnary(absl::StrCat("cancel ", args.job_id), kCallTimeout,
                                 [&](grpc::ClientContext* ctx) { return stub.CancelJob(ctx, req, &job); }));
  out << job.job_id() << " " << JobStateName(job.state()) << "\n";
  return absl::OkStatus();
}

absl::Status RunArtifacts(const ArtifactsArgs& args, v1::JobService::StubInterface& stub, std::ostream& out) {
  std::error_code ec;
  fs::create_directories(args.out_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("create ", args.out_dir, ": ", ec.message()));
  int got = 0;
  for (const char* name : train_protocol::kArtifacts) {  // what the agent uploads
    const std::string path = (fs::path(args.out_dir) / name).string();
    auto size = Download(stub, args.job_id, name, path);
    if (absl::IsNotFound(size.status())) continue;
    if (absl::IsFailedPrecondition(size.status()))  // not succeeded (yet): nothing to take
      return WithExitCode(size.status(), kExitJobNotSucceeded);
    if (!size.ok()) return size.status();
    out << path << "  (" << *size << " bytes)\n";
    ++got;
  }
  if (got > 0) return absl::OkStatus();
  return WithExitCode(absl::NotFoundError(absl::StrCat(args.job_id, " has no artifacts (yet)")), kExitJobNotSucceeded);
}

absl::Status RunWorkers(const WorkersArgs& args, v1::JobService::StubInterface& stub, std::ostream& out) {
  v1::ListWorkersResponse resp;
  VSDM_RETURN_IF_ERROR(CallUnary("workers", kCallTimeout, [&](grpc::ClientContext* ctx) {
    return stub.ListWorkers(ctx, v1::ListWorkersRequest(), &resp);
  }));
  out << (args.json ? ToJson(resp) + "\n" : WorkerTable(resp));
  return absl::OkStatus();
}

absl::Status RunHealth(grpc::health::v1::Health::StubInterface& stub, std::ostream& out) {
  grpc::health::v1::HealthCheckResponse resp;
  VSDM_RETURN_IF_ERROR(CallUnary("health", kCallTimeout, [&](grpc::ClientContext* ctx) {
    return stub.Check(ctx, grpc::health::v1::HealthCheckRequest(), &resp);
  }));
  const std::string name = grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status());
  if (resp.status() != grpc::health::v1::HealthCheckResponse::SERVING)
    return WithExitCode(absl::UnavailableError(absl::StrCat("health: ", name)), kExitJobNotSucceeded);
  out << name << "\n";
  return absl::OkStatus();
}

absl::Status RunLocalUp(const LocalClusterOptions& options, std::ostream& out) {
  auto addr = LocalClusterUp(options);
  if (!addr.ok()) {
    const absl::Status s = addr.status();
    return WithExitCode(absl::Status(s.code(), absl::StrCat("local up: ", s.message())),
                        absl::IsFailedPrecondition(s) ? kExitRefused : kExitUnavailable);
  }
  out << "local cluster up: coordinator " << *addr << ", " << options.workers << " agents x " << options.slots
      << " slots; state and logs in " << options.state_dir << "\n";
  return absl::OkStatus();
}

absl::Status RunLocalDown(const std::string& state_dir, std::ostream& out) {
  const absl::Status s = LocalClusterDown(state_dir);
  out << "local cluster down (" << state_dir << ")\n";
  if (s.ok()) return s;
  return WithExitCode(absl::Status(s.code(), absl::StrCat("local down: ", s.message())), kExitJobNotSucceeded);
}

}  // namespace vsdm::client
