#include "server/worker_service.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/train_protocol.h"

namespace vsdm::server {
namespace {

bool IsCheckpointPath(const std::string& path) {
  const std::string dir = absl::StrCat(train_protocol::kCheckpointDir, "/");
  return absl::StartsWith(path, dir) && train_protocol::CheckpointRound(path.substr(dir.size())).has_value();
}

}  // namespace

// Authorize, call, audit (`audit_ok`: also successful calls), finish.
#define VSDM_WORKER_CALL(method, job, audit_ok, body)                                        \
  const auto t0 = RpcClock::now();                                                            \
  const absl::StatusOr<Caller> caller = d_.auth.Authorize(*ctx, Plane::kWorkers);             \
  absl::Status status = caller.status();                                                      \
  if (status.ok()) {                                                                          \
    const std::string credential = MetadataValue(*ctx, kWorkerCredentialKey);                 \
    body                                                                                      \
  }                                                                                           \
  if ((audit_ok) || !status.ok()) d_.audit.Record(caller, method, job, status);               \
  return FinishUnary(ctx, d_.metrics, method, t0, status)

grpc::ServerUnaryReactor* WorkerServiceImpl::Register(grpc::CallbackServerContext* ctx, const v1::RegisterRequest* req,
                                                      v1::RegisterResponse* resp) {
  VSDM_WORKER_CALL("Register", req->worker_id(), true, {
    (void)credential;
    auto r = d_.manager.Register(*req, caller->principal);
    status = r.status();
    if (r.ok()) *resp = std::move(*r);
  });
}

grpc::ServerUnaryReactor* WorkerServiceImpl::Heartbeat(grpc::CallbackServerContext* ctx,
                                                       const v1::HeartbeatRequest* req, v1::HeartbeatResponse* resp) {
  VSDM_WORKER_CALL("Heartbeat", req->worker_id(), false, {
    auto r = d_.manager.Heartbeat(*req, credential);
    status = r.status();
    if (r.ok()) *resp = std::move(*r);
  });
}

grpc::ServerUnaryReactor* WorkerServiceImpl::Report(grpc::CallbackServerContext* ctx, const v1::ReportRequest* req,
                                                    v1::ReportResponse*) {
  VSDM_WORKER_CALL("Report", req->attempt_id(), false, { status = d_.manager.Report(*req, credential); });
}

grpc::ServerUnaryReactor* WorkerServiceImpl::Complete(grpc::CallbackServerContext* ctx, const v1::CompleteRequest* req,
                                                      v1::CompleteResponse*) {
  VSDM_WORKER_CALL("Complete", req->attempt_id(), true, { status = d_.manager.Complete(*req, credential); });
}

grpc::ServerUnaryReactor* WorkerServiceImpl::UploadArtifact(grpc::CallbackServerContext* ctx,
                                                            const v1::UploadArtifactRequest* req,
                                                            v1::UploadArtifactResponse*) {
  VSDM_WORKER_CALL("UploadArtifact", req->attempt_id(), req->last(), {
    auto job = d_.manager.UploadTarget(*req, credential);
    status = job.status();
    if (job.ok()) status = d_.artifacts.AppendChunk(*job, req->path(), req->offset(), req->data(), req->last(),
                                                       req->attempt_id());
    // A completed checkpoint replaces the older ones (the newest two are kept).
    if (status.ok() && req->last() && IsCheckpointPath(req->path())) d_.artifacts.PruneCheckpoints(*job, 2);
  });
}

grpc::ServerUnaryReactor* WorkerServiceImpl::FetchCheckpoint(grpc::CallbackServerContext* ctx,
                                                             const v1::FetchCheckpointRequest* req,
                                                             v1::FetchCheckpointResponse* resp) {
  constexpr int64_t kPage = 1 << 20;
  VSDM_WORKER_CALL("FetchCheckpoint", req->attempt_id(), false, {
    auto job = d_.manager.CheckpointSource(*req, credential);
    status = job.status();
    if (job.ok()) {
      auto page = d_.artifacts.ReadCheckpoint(*job, req->after_round(), req->round(), req->offset(), kPage);
      status = page.status();
      if (page.ok()) *resp = std::move(*page);
    }
  });
}

#undef VSDM_WORKER_CALL

}  // namespace vsdm::server
