#include "server/job_service.h"

#include <chrono>
#include <deque>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"
#include "proto/job_state.h"
#include "server/log_book.h"
#include "server/rpc_util.h"

namespace vsdm::server {
namespace fs = std::filesystem;
namespace {

// Streams a job's events: the stored ones after the request's sequence, then live ones, and
// ends after the event that puts the job in a final state. Events arrive from JobManager on
// other threads; `Shared` outlives the reactor so a late callback finds it gone, not freed. The
// subscription is made on the handler pool (it takes the manager's mutex: Note [Handlers off
// the reactor]); a call cancelled before that ran subscribes nothing.
class WatchReactor : public grpc::ServerWriteReactor<v1::JobEvent> {
 public:
  WatchReactor(JobManager& manager, HandlerPool& pool, const v1::WatchJobRequest& req, const JobScope& scope)
      : manager_(manager), shared_(std::make_shared<Shared>()) {
    absl::MutexLock lock(&shared_->mu);
    shared_->reactor = this;
    if (!pool.Run([m = &manager_, shared = shared_, req, scope] { Subscribe(*m, shared, req, scope); }))
      shared_->FinishLocked(ToGrpcStatus(pool.BusyError()));
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&shared_->mu);
    shared_->writing = false;
    if (!ok) {
      shared_->FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
      return;
    }
    shared_->NextLocked();
  }
  void OnCancel() override {
    absl::MutexLock lock(&shared_->mu);
    shared_->FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }
  void OnDone() override {
    int64_t sub = -1;
    {
      absl::MutexLock lock(&shared_->mu);
      shared_->reactor = nullptr;
      std::swap(sub, shared_->sub);
    }
    if (sub >= 0) manager_.Unwatch(sub);
    delete this;
  }

 private:
  struct Shared;
  // Held across the subscription so a live event cannot overtake the replay.
  static void Subscribe(JobManager& manager, const std::shared_ptr<Shared>& shared, const v1::WatchJobRequest& req,
                        const JobScope& scope) {
    absl::MutexLock lock(&shared->mu);
    if (shared->reactor == nullptr || shared->finished) return;  // cancelled before this ran
    std::vector<v1::JobEvent> replay;
    std::weak_ptr<Shared> weak = shared;
    auto sub = manager.Watch(
        req.job_id(), req.after_sequence(),
        [weak](const v1::JobEvent& e) {
          if (auto s = weak.lock()) s->Push(e);
        },
        &replay, scope);
    if (!sub.ok()) {
      shared->FinishLocked(ToGrpcStatus(sub.status()));
      return;
    }
    shared->sub = *sub;
    // A job that has already ended: replay and close.
    auto job = manager.Get(req.job_id());
    for (auto& e : replay) shared->queue.push_back(std::move(e));
    if (job.ok() && IsFinalState(job->state()) && replay.empty()) shared->end_after_queue = true;
    shared->NextLocked();
  }

  struct Shared {
    absl::Mutex mu;
    WatchReactor* reactor ABSL_GUARDED_BY(mu) = nullptr;
    int64_t sub ABSL_GUARDED_BY(mu) = -1;  // the manager's subscription, once made
    std::deque<v1::JobEvent> queue ABSL_GUARDED_BY(mu);
    v1::JobEvent current ABSL_GUARDED_BY(mu);
    bool writing ABSL_GUARDED_BY(mu) = false;
    bool finished ABSL_GUARDED_BY(mu) = false;
    bool end_after_queue ABSL_GUARDED_BY(mu) = false;

    // A watcher that stops reading is not buffered for without bound: past kMaxQueued events its
    // progress events are dropped, and a state change ends the stream (RESOURCE_EXHAUSTED; watch
    // again with after_sequence to resume without loss).
    static constexpr size_t kMaxQueued = 1024;
    void Push(const v1::JobEvent& e) {
      absl::MutexLock lock(&mu);
      if (reactor == nullptr || finished) return;
      if (queue.size() >= kMaxQueued) {
        if (e.kind() != "progress")
          FinishLocked(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                    "this watcher fell 1024 events behind; watch again with after_sequence"));
        return;
      }
      queue.push_back(e);
      NextLocked();
    }
    void NextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      if (writing || finished || reactor == nullptr) return;
      if (queue.empty()) {
        if (end_after_queue) FinishLocked(grpc::Status::OK);
        return;
      }
      current = std::move(queue.front());
      queue.pop_front();
      if (IsFinalState(current.state()) && current.kind() != "progress") end_after_queue = true;
      writing = true;
      reactor->StartWrite(&current);
    }
    void FinishLocked(const grpc::Status& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      if (finished || reactor == nullptr) return;
      finished = true;
      reactor->Finish(s);
    }
  };

  JobManager& manager_;
  std::shared_ptr<Shared> shared_;
};

// Streams one artifact file in 64 KiB chunks, total_bytes in the first. The file is read from
// its open descriptor, so one replaced or removed meanwhile still streams whole; a read that
// fails or comes up short ends the stream with that error (INTERNAL), never OK with fewer bytes
// than total_bytes. Opening and every read run on the handler pool (Note [Handlers off the
// reactor]): one step at a time, each either starting a write or finishing the call.
class ArtifactReactor : public grpc::ServerWriteReactor<v1::ArtifactChunk> {
 public:
  // `open` (run on the pool) returns the file to stream or the error that ends the call.
  ArtifactReactor(HandlerPool& pool, std::function<absl::StatusOr<ArtifactFile>()> open) : pool_(pool) {
    Post([this, open = std::move(open)] {
      absl::StatusOr<ArtifactFile> file = open();
      if (!file.ok()) return Finish(ToGrpcStatus(file.status()));
      file_.emplace(std::move(*file));
      chunk_.set_total_bytes(file_->size());
      Next();
    });
  }
  void OnWriteDone(bool ok) override {
    if (!ok) return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
    Post([this] { Next(); });
  }
  void OnDone() override { delete this; }

 private:
  static constexpr int64_t kChunkBytes = 64 * 1024;
  void Post(std::function<void()> step) {
    if (!pool_.Run(std::move(step))) Finish(ToGrpcStatus(pool_.BusyError()));
  }
  void Next() {
    if (offset_ >= file_->size() && sent_any_) return Finish(grpc::Status::OK);
    absl::StatusOr<std::string> data = file_->Read(offset_, kChunkBytes);
    if (!data.ok()) return Finish(ToGrpcStatus(data.status()));
    offset_ += static_cast<int64_t>(data->size());
    if (sent_any_) chunk_.clear_total_bytes();
    chunk_.set_data(std::move(*data));
    sent_any_ = true;  // an empty file is one empty chunk with total_bytes 0
    StartWrite(&chunk_);
  }
  HandlerPool& pool_;
  std::optional<ArtifactFile> file_;
  int64_t offset_ = 0;
  bool sent_any_ = false;
  v1::ArtifactChunk chunk_;
};

template <typename T>
class ErrorReactor : public grpc::ServerWriteReactor<T> {
 public:
  explicit ErrorReactor(const absl::Status& s) { this->Finish(ToGrpcStatus(s)); }
  void OnDone() override { delete this; }
};

}  // namespace

namespace {

// The jobs `c` may see: all for an admin (or with auth off), else its own.
JobScope ScopeOf(const Caller& c) {
  if (!c.authenticated || c.role == Role::kAdmin) return {};
  return {c.principal};
}

}  // namespace

absl::Status CheckPriority(const ServiceDeps& d, const Caller& caller, const v1::JobSpec& spec,
                           const std::string& field) {
  if (!caller.authenticated || caller.role == Role::kAdmin || spec.priority() <= d.priority_ceiling)
    return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(field, ": ", spec.priority(), " is above ", d.priority_ceiling,
                                                  ", the most a user may ask (admins only)"));
}

grpc::ServerUnaryReactor* JobServiceImpl::SubmitJob(grpc::CallbackServerContext* ctx, const v1::SubmitJobRequest* req,
                                                    v1::Job* resp) {
  return OffloadUnary(ctx, d_, "SubmitJob", [this, ctx, req, resp] {
    const absl::StatusOr<Caller> caller = d_.auth.Authorize(*ctx, Plane::kJobs);
    absl::Status status = caller.status();
    if (status.ok()) status = CheckPriority(d_, *caller, req->spec(), "priority");
    std::string job_id;
    if (status.ok()) {
      // The owner is who called; the spec's owner field counts only with auth off.
      const std::string owner = caller->authenticated ? caller->principal : req->spec().owner();
      auto j = d_.manager.Submit(req->spec(), req->request_id(), owner);
      status = j.status();
      if (j.ok()) {
        job_id = j->job_id();
        *resp = std::move(*j);
      }
    }
    d_.metrics.RecordSubmit(status.ok());
    d_.audit.Record(caller, "SubmitJob", job_id, status);
    return status;
  });
}

grpc::ServerUnaryReactor* JobServiceImpl::GetJob(grpc::CallbackServerContext* ctx, const v1::GetJobRequest* req,
                                                 v1::Job* resp) {
  return OffloadUnary(ctx, d_, "GetJob", [this, ctx, req, resp] {
    const absl::StatusOr<Caller> caller = d_.auth.Authorize(*ctx, Plane::kJobs);
    if (!caller.ok()) return caller.status();
    auto j = d_.manager.Get(req->job_id(), ScopeOf(*caller));
    if (j.ok()) *resp = std::move(*j);
    return j.status();
  });
}

grpc::ServerUnaryReactor* JobServiceImpl::ListJobs(grpc::CallbackServerContext* ctx, const v1::ListJobsRequest* req,
                                                   v1::ListJobsResponse* resp) {
  return OffloadUnary(ctx, d_, "ListJobs", [this, ctx, req, resp] {
    const absl::StatusOr<Caller> caller = d_.auth.Authorize(*ctx, Plane::kJobs);
    if (!caller.ok()) return caller.status();
    auto r = d_.manager.List(*req, ScopeOf(*caller));
    if (r.ok()) *resp = std::move(*r);
    return r.status();
  });
}

grpc::ServerUnaryReactor* JobServiceImpl::CancelJob(grpc::CallbackServerContext* ctx, const v1::CancelJobRequest* req,
                                                    v1::Job* resp) {
  return OffloadUnary(ctx, d_, "CancelJob", [this, ctx, req, resp] {
    const absl::StatusOr<Caller> caller = d_.auth.Authorize(*ctx, Plane::kJobs);
    absl::Status status = caller.status();
    if (status.ok()) {
      auto j = d_.manager.Cancel(req->job_id(), ScopeOf(*caller));
      status = j.status();
      if (j.ok()) *resp = std::move(*j);
    }
    d_.audit.Record(caller, "CancelJob", req->job_id(), status);
    return status;
  });
}

grpc::ServerUnaryReactor* JobServiceImpl::ListWorkers(grpc::CallbackServerContext* ctx, const v1::ListWorkersRequest*,
                                                      v1::ListWorkersResponse* resp) {
  return OffloadUnary(ctx, d_, "ListWorkers", [this, ctx, resp] {
    const absl::StatusOr<Caller> caller = d_.auth.Authorize(*ctx, Plane::kJobs);
    if (!caller.ok()) return caller.status();
    if (caller->authenticated && caller->role != Role::kAdmin)
      return absl::PermissionDeniedError("the worker list is for admins (it names every node and its address)");
    *resp = d_.manager.Workers();
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* JobServiceImpl::SubmitSweep(grpc::CallbackServerContext* ctx,
                                                      const v1::SubmitSweepRequest* req, v1::SubmitSweepResponse* resp) {
  return OffloadUnary(ctx, d_, "SubmitSweep", [this, ctx, req, resp] {
    const absl::StatusOr<Caller> caller = d_.auth.Authorize(*ctx, Plane::kJobs);
    absl::Status status = caller.status();
    for (int i = 0; status.ok() && i < req->members_size(); ++i)
      status = CheckPriority(d_, *caller, req->members(i).spec(), absl::StrCat("members[", i, "].spec.priority"));
    if (status.ok()) {
      const std::string owner = caller->authenticated ? caller->principal : "";
      auto r = d_.manager.SubmitSweep(*req, owner);
      status = r.status();
      if (r.ok()) *resp = std::move(*r);
    }
    for (int i = 0; i < req->members_size(); ++i) d_.metrics.RecordSubmit(status.ok());
    d_.audit.Record(caller, "SubmitSweep", resp->group_id(), status);
    return status;
  });
}

grpc::ServerUnaryReactor* JobServiceImpl::GetLogs(grpc::CallbackServerContext* ctx, const v1::GetLogsRequest* req,
                                                  v1::GetLogsResponse* resp) {
  return OffloadUnary(ctx, d_, "GetLogs", [this, ctx, req, resp] {
    const absl::StatusOr<Caller> caller = d_.auth.Authorize(*ctx, Plane::kJobs);
    if (!caller.ok()) return caller.status();
    if (d_.logs == nullptr) return absl::UnimplementedError("this coordinator keeps no rank logs");
    if (req->attempt() < 0) return absl::InvalidArgumentError(absl::StrCat("attempt: must be >= 0, got ", req->attempt()));
    // Access follows the job's: another owner's job is NOT_FOUND.
    auto job = d_.manager.Get(req->job_id(), ScopeOf(*caller));
    if (!job.ok()) return job.status();
    std::map<int, int64_t> after;
    for (int i = 0; i < req->after_size(); ++i) {
      const v1::LogCursor& c = req->after(i);
      if (c.offset() < 0)
        return absl::InvalidArgumentError(absl::StrCat("after[", i, "].offset: must be >= 0, got ", c.offset()));
      after[c.rank()] = c.offset();
    }
    d_.logs->Read(req->job_id(), req->attempt(),
                  req->has_rank() ? std::optional<int>(req->rank()) : std::nullopt, after, resp);
    resp->set_state(job->state());
    return absl::OkStatus();
  });
}

grpc::ServerWriteReactor<v1::JobEvent>* JobServiceImpl::WatchJob(grpc::CallbackServerContext* ctx,
                                                                 const v1::WatchJobRequest* req) {
  const absl::StatusOr<Caller> caller = d_.auth.Authorize(*ctx, Plane::kJobs);
  d_.metrics.RecordRpc("WatchJob", static_cast<int>(caller.status().code()), 0.0);
  if (!caller.ok()) return new ErrorReactor<v1::JobEvent>(caller.status());
  return new WatchReactor(d_.manager, d_.pool, *req, ScopeOf(*caller));
}

grpc::ServerWriteReactor<v1::ArtifactChunk>* JobServiceImpl::GetArtifact(grpc::CallbackServerContext* ctx,
                                                                         const v1::GetArtifactRequest* req) {
  return new ArtifactReactor(d_.pool, [this, ctx, req]() -> absl::StatusOr<ArtifactFile> {
    auto opened = [&]() -> absl::StatusOr<ArtifactFile> {
      const absl::StatusOr<Caller> caller = d_.auth.Authorize(*ctx, Plane::kJobs);
      if (!caller.ok()) return caller.status();
      auto job = d_.manager.Get(req->job_id(), ScopeOf(*caller));
      if (!job.ok()) return job.status();
      if (absl::Status s = ArtifactStore::CheckPath(req->path()); !s.ok()) return s;
      // Only complete files of the job's current state: the result once it has succeeded, the
      // checkpoints (each complete, renamed into place) in any state (review H5).
      if (job->state() != v1::JOB_STATE_SUCCEEDED && !ArtifactStore::IsCheckpoint(req->path()))
        return absl::FailedPreconditionError(absl::StrCat(req->job_id(), " is ", JobStateName(job->state()),
                                                          ": its artifacts are served once it has succeeded (before "
                                                          "that, only its checkpoint/ files)"));
      return d_.artifacts.Open(req->job_id(), req->path());
    };
    absl::StatusOr<ArtifactFile> file = opened();
    d_.metrics.RecordRpc("GetArtifact", static_cast<int>(file.status().code()), 0.0);
    return file;
  });
}

}  // namespace vsdm::server
