#include "worker/agent/coordinator_client.h"

#include <grpcpp/grpcpp.h>

#include "common/grpc_status.h"

namespace vsdm::worker {
namespace {

template <typename Req, typename Resp, typename Method>
absl::StatusOr<Resp> Call(v1::WorkerService::Stub& stub, absl::Duration deadline, Method m, const Req& req) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  Resp resp;
  grpc::Status s = (stub.*m)(&ctx, req, &resp);
  if (!s.ok()) return FromGrpcStatus(s);
  return resp;
}

}  // namespace

GrpcCoordinatorClient::GrpcCoordinatorClient(const std::string& address, absl::Duration deadline)
    : stub_(v1::WorkerService::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()))),
      deadline_(deadline) {}

absl::StatusOr<v1::RegisterResponse> GrpcCoordinatorClient::Register(const v1::RegisterRequest& r) {
  return Call<v1::RegisterRequest, v1::RegisterResponse>(*stub_, deadline_, &v1::WorkerService::Stub::Register, r);
}
absl::StatusOr<v1::HeartbeatResponse> GrpcCoordinatorClient::Heartbeat(const v1::HeartbeatRequest& r) {
  return Call<v1::HeartbeatRequest, v1::HeartbeatResponse>(*stub_, deadline_, &v1::WorkerService::Stub::Heartbeat, r);
}
absl::Status GrpcCoordinatorClient::Report(const v1::ReportRequest& r) {
  return Call<v1::ReportRequest, v1::ReportResponse>(*stub_, deadline_, &v1::WorkerService::Stub::Report, r).status();
}
absl::Status GrpcCoordinatorClient::Complete(const v1::CompleteRequest& r) {
  return Call<v1::CompleteRequest, v1::CompleteResponse>(*stub_, deadline_, &v1::WorkerService::Stub::Complete, r)
      .status();
}
absl::Status GrpcCoordinatorClient::UploadArtifact(const v1::UploadArtifactRequest& r) {
  return Call<v1::UploadArtifactRequest, v1::UploadArtifactResponse>(*stub_, deadline_,
                                                                     &v1::WorkerService::Stub::UploadArtifact, r)
      .status();
}

}  // namespace vsdm::worker
