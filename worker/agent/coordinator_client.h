// The agent's view of the coordinator's WorkerService: the seam between the agent's logic and
// gRPC (GrpcCoordinatorClient here; tests may put a fake behind it). Every call carries a
// deadline; an unreachable coordinator is UNAVAILABLE or DEADLINE_EXCEEDED.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/grpc_client.h"
#include "vsdm/v1/service.grpc.pb.h"

namespace vsdm::worker {

class CoordinatorClient {
 public:
  virtual ~CoordinatorClient() = default;
  virtual absl::StatusOr<v1::RegisterResponse> Register(const v1::RegisterRequest& r) = 0;
  virtual absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& r) = 0;
  virtual absl::Status Report(const v1::ReportRequest& r) = 0;
  virtual absl::Status Complete(const v1::CompleteRequest& r) = 0;
  virtual absl::Status UploadArtifact(const v1::UploadArtifactRequest& r) = 0;
  virtual absl::StatusOr<v1::FetchCheckpointResponse> FetchCheckpoint(const v1::FetchCheckpointRequest& r) = 0;
  virtual absl::Status AppendLog(const v1::AppendLogRequest& r) = 0;
};

// The bearer token and TLS come from `security`; the session credential the last successful
// Register returned goes with every later call (`x-vsdm-worker-credential`).
class GrpcCoordinatorClient : public CoordinatorClient {
 public:
  // INVALID_ARGUMENT naming the TLS flag whose file cannot be read.
  static absl::StatusOr<std::unique_ptr<GrpcCoordinatorClient>> Create(const std::string& address,
                                                                       absl::Duration deadline,
                                                                       const ClientSecurity& security = {});
  absl::StatusOr<v1::RegisterResponse> Register(const v1::RegisterRequest& r) override;
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& r) override;
  absl::Status Report(const v1::ReportRequest& r) override;
  absl::Status Complete(const v1::CompleteRequest& r) override;
  absl::Status UploadArtifact(const v1::UploadArtifactRequest& r) override;
  absl::StatusOr<v1::FetchCheckpointResponse> FetchCheckpoint(const v1::FetchCheckpointRequest& r) override;
  absl::Status AppendLog(const v1::AppendLogRequest& r) override;

 private:
  GrpcCoordinatorClient(std::shared_ptr<grpc::Channel> channel, absl::Duration deadline);
  template <typename Req, typename Resp, typename Method>
  absl::StatusOr<Resp> Call(Method m, const Req& req);

  std::unique_ptr<v1::WorkerService::Stub> stub_;
  absl::Duration deadline_;
  absl::Mutex mu_;
  std::string credential_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vsdm::worker
