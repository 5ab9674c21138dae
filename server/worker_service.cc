#include "server/worker_service.h"

#include "absl/strings/str_cat.h"
#include "server/attempt_id.h"
#include "server/log_book.h"

namespace vsdm::server {

grpc::ServerUnaryReactor* WorkerServiceImpl::Call(grpc::CallbackServerContext* ctx, const char* method,
                                                  std::string audit_target, bool audit_ok, Body body,
                                                  HandlerPool* on) {
  return OffloadUnary(ctx, d_, method,
                      [this, ctx, method, target = std::move(audit_target), audit_ok, body = std::move(body)] {
                        const absl::StatusOr<Caller> caller = d_.auth.Authorize(*ctx, Plane::kWorkers);
                        absl::Status status = caller.status();
                        if (status.ok()) status = body(*caller, MetadataValue(*ctx, kWorkerCredentialKey));
                        if (audit_ok || !status.ok()) d_.audit.Record(caller, method, target, status);
                        return status;
                      },
                      on);
}

grpc::ServerUnaryReactor* WorkerServiceImpl::Register(grpc::CallbackServerContext* ctx, const v1::RegisterRequest* req,
                                                      v1::RegisterResponse* resp) {
  return Call(ctx, "Register", req->worker_id(), true, [this, req, resp](const Caller& caller, const std::string&) {
    auto r = d_.manager.Register(*req, caller.principal);
    if (r.ok()) *resp = std::move(*r);
    return r.status();
  });
}

grpc::ServerUnaryReactor* WorkerServiceImpl::Heartbeat(grpc::CallbackServerContext* ctx,
                                                       const v1::HeartbeatRequest* req, v1::HeartbeatResponse* resp) {
  return Call(ctx, "Heartbeat", req->worker_id(), false,
              [this, req, resp](const Caller&, const std::string& credential) {
                auto r = d_.manager.Heartbeat(*req, credential);
                if (r.ok()) *resp = std::move(*r);
                return r.status();
              },
              &d_.heartbeat_pool);
}

grpc::ServerUnaryReactor* WorkerServiceImpl::Report(grpc::CallbackServerContext* ctx, const v1::ReportRequest* req,
                                                    v1::ReportResponse*) {
  return Call(ctx, "Report", req->attempt_id(), false, [this, req](const Caller&, const std::string& credential) {
    return d_.manager.Report(*req, credential);
  });
}

grpc::ServerUnaryReactor* WorkerServiceImpl::Complete(grpc::CallbackServerContext* ctx, const v1::CompleteRequest* req,
                                                      v1::CompleteResponse*) {
  return Call(ctx, "Complete", req->attempt_id(), true, [this, req](const Caller&, const std::string& credential) {
    return d_.manager.Complete(*req, credential);
  });
}

grpc::ServerUnaryReactor* WorkerServiceImpl::UploadArtifact(grpc::CallbackServerContext* ctx,
                                                            const v1::UploadArtifactRequest* req,
                                                            v1::UploadArtifactResponse*) {
  return Call(ctx, "UploadArtifact", req->attempt_id(), req->last(),
              [this, req](const Caller&, const std::string& credential) {
                auto job = d_.manager.UploadTarget(*req, credential);
                absl::Status status = job.status();
                if (job.ok())
                  status = d_.artifacts.AppendChunk(*job, req->path(), req->offset(), req->data(), req->last(),
                                                    req->attempt_id());
                // A completed checkpoint replaces the older ones (the newest two are kept).
                if (status.ok() && req->last() && ArtifactStore::IsCheckpoint(req->path()))
                  d_.artifacts.PruneCheckpoints(*job, 2);
                return status;
              });
}

grpc::ServerUnaryReactor* WorkerServiceImpl::FetchCheckpoint(grpc::CallbackServerContext* ctx,
                                                             const v1::FetchCheckpointRequest* req,
                                                             v1::FetchCheckpointResponse* resp) {
  constexpr int64_t kPage = 1 << 20;
  return Call(ctx, "FetchCheckpoint", req->attempt_id(), false,
              [this, req, resp](const Caller&, const std::string& credential) {
                auto job = d_.manager.CheckpointSource(*req, credential);
                if (!job.ok()) return job.status();
                auto page = d_.artifacts.ReadCheckpoint(*job, req->after_round(), req->round(), req->offset(), kPage);
                if (page.ok()) *resp = std::move(*page);
                return page.status();
              });
}

grpc::ServerUnaryReactor* WorkerServiceImpl::AppendLog(grpc::CallbackServerContext* ctx, const v1::AppendLogRequest* req,
                                                       v1::AppendLogResponse*) {
  constexpr size_t kMaxAppend = 64 << 10;
  return Call(ctx, "AppendLog", req->attempt_id(), false, [this, req](const Caller&, const std::string& credential) {
    if (d_.logs == nullptr) return absl::UnimplementedError("this coordinator keeps no rank logs");
    if (req->data().size() > kMaxAppend)
      return absl::InvalidArgumentError(absl::StrCat("data: at most ", kMaxAppend, " bytes, got ", req->data().size()));
    if (req->data().empty()) return absl::InvalidArgumentError("data: empty (send only new bytes)");
    constexpr int64_t kMaxOffset = int64_t{1} << 50;
    if (req->offset() < 0 || req->offset() > kMaxOffset)
      return absl::InvalidArgumentError(absl::StrCat("offset: must be in [0, 2^50], got ", req->offset()));
    const std::optional<AttemptRef> ref = ParseAttemptId(req->attempt_id());
    if (!ref) return absl::InvalidArgumentError("attempt_id: not an attempt id");
    // LogTarget authorizes (the caller's rank of a running attempt); the attempt id names the job.
    if (absl::Status s = d_.manager.LogTarget(*req, credential).status(); !s.ok()) return s;
    d_.logs->Append(ref->job_id, ref->attempt, req->rank(), req->offset(), req->data());
    return absl::OkStatus();
  });
}

}  // namespace vsdm::server
