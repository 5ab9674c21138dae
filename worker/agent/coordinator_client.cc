#include "worker/agent/coordinator_client.h"

#include <grpcpp/grpcpp.h>

#include "common/grpc_status.h"

namespace vsdm::worker {

absl::StatusOr<std::unique_ptr<GrpcCoordinatorClient>> GrpcCoordinatorClient::Create(const std::string& address,
                                                                                     absl::Duration deadline,
                                                                                     const ClientSecurity& security) {
  auto channel = MakeChannel(address, security);
  if (!channel.ok()) return channel.status();
  return std::unique_ptr<GrpcCoordinatorClient>(new GrpcCoordinatorClient(*channel, deadline));
}

GrpcCoordinatorClient::GrpcCoordinatorClient(std::shared_ptr<grpc::Channel> channel, absl::Duration deadline)
    : stub_(v1::WorkerService::NewStub(std::move(channel))), deadline_(deadline) {}

template <typename Req, typename Resp, typename Method>
absl::StatusOr<Resp> GrpcCoordinatorClient::Call(Method m, const Req& req) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + deadline_));
  {
    absl::MutexLock lock(&mu_);
    if (!credential_.empty()) ctx.AddMetadata("x-vsdm-worker-credential", credential_);
  }
  Resp resp;
  grpc::Status s = ((*stub_).*m)(&ctx, req, &resp);
  if (!s.ok()) return FromGrpcStatus(s);
  return resp;
}

absl::StatusOr<v1::RegisterResponse> GrpcCoordinatorClient::Register(const v1::RegisterRequest& r) {
  auto resp = Call<v1::RegisterRequest, v1::RegisterResponse>(&v1::WorkerService::Stub::Register, r);
  if (resp.ok()) {
    absl::MutexLock lock(&mu_);
    credential_ = resp->worker_credential();
  }
  return resp;
}
absl::StatusOr<v1::HeartbeatResponse> GrpcCoordinatorClient::Heartbeat(const v1::HeartbeatRequest& r) {
  return Call<v1::HeartbeatRequest, v1::HeartbeatResponse>(&v1::WorkerService::Stub::Heartbeat, r);
}
absl::Status GrpcCoordinatorClient::Report(const v1::ReportRequest& r) {
  return Call<v1::ReportRequest, v1::ReportResponse>(&v1::WorkerService::Stub::Report, r).status();
}
absl::Status GrpcCoordinatorClient::Complete(const v1::CompleteRequest& r) {
  return Call<v1::CompleteRequest, v1::CompleteResponse>(&v1::WorkerService::Stub::Complete, r).status();
}
absl::Status GrpcCoordinatorClient::UploadArtifact(const v1::UploadArtifactRequest& r) {
  return Call<v1::UploadArtifactRequest, v1::UploadArtifactResponse>(&v1::WorkerService::Stub::UploadArtifact, r)
      .status();
}

absl::StatusOr<v1::FetchCheckpointResponse> GrpcCoordinatorClient::FetchCheckpoint(
    const v1::FetchCheckpointRequest& r) {
  return Call<v1::FetchCheckpointRequest, v1::FetchCheckpointResponse>(&v1::WorkerService::Stub::FetchCheckpoint, r);
}

absl::Status GrpcCoordinatorClient::AppendLog(const v1::AppendLogRequest& r) {
  return Call<v1::AppendLogRequest, v1::AppendLogResponse>(&v1::WorkerService::Stub::AppendLog, r).status();
}

}  // namespace vsdm::worker
