#include "server/worker_service.h"

#include "server/rpc_util.h"

namespace vsdm::server {

grpc::ServerUnaryReactor* WorkerServiceImpl::Register(grpc::CallbackServerContext* ctx, const v1::RegisterRequest* req,
                                                      v1::RegisterResponse* resp) {
  const auto t0 = RpcClock::now();
  auto r = manager_.Register(*req);
  if (r.ok()) *resp = std::move(*r);
  return FinishUnary(ctx, metrics_, "Register", t0, r.status());
}

grpc::ServerUnaryReactor* WorkerServiceImpl::Heartbeat(grpc::CallbackServerContext* ctx,
                                                       const v1::HeartbeatRequest* req, v1::HeartbeatResponse* resp) {
  const auto t0 = RpcClock::now();
  auto r = manager_.Heartbeat(*req);
  if (r.ok()) *resp = std::move(*r);
  return FinishUnary(ctx, metrics_, "Heartbeat", t0, r.status());
}

grpc::ServerUnaryReactor* WorkerServiceImpl::Report(grpc::CallbackServerContext* ctx, const v1::ReportRequest* req,
                                                    v1::ReportResponse*) {
  const auto t0 = RpcClock::now();
  return FinishUnary(ctx, metrics_, "Report", t0, manager_.Report(*req));
}

grpc::ServerUnaryReactor* WorkerServiceImpl::Complete(grpc::CallbackServerContext* ctx, const v1::CompleteRequest* req,
                                                      v1::CompleteResponse*) {
  const auto t0 = RpcClock::now();
  return FinishUnary(ctx, metrics_, "Complete", t0, manager_.Complete(*req));
}

grpc::ServerUnaryReactor* WorkerServiceImpl::UploadArtifact(grpc::CallbackServerContext* ctx,
                                                            const v1::UploadArtifactRequest* req,
                                                            v1::UploadArtifactResponse*) {
  const auto t0 = RpcClock::now();
  auto job = manager_.CurrentJobOf(req->attempt_id());
  absl::Status s = job.status();
  if (job.ok()) s = artifacts_.AppendChunk(*job, req->path(), req->offset(), req->data(), req->last());
  return FinishUnary(ctx, metrics_, "UploadArtifact", t0, s);
}

}  // namespace vsdm::server
