// vsdm.v1.WorkerService over gRPC's callback API: register, heartbeat (lease renewal, new
// assignments, abort orders), progress reports and attempt completion, each a thin adapter over
// JobManager.
#pragma once

#include "server/artifact_store.h"
#include "server/coordinator_metrics.h"
#include "server/job_manager.h"
#include "vsdm/v1/service.grpc.pb.h"

namespace vsdm::server {

// `manager`, `artifacts` and `metrics` must outlive the service.
class WorkerServiceImpl final : public v1::WorkerService::CallbackService {
 public:
  WorkerServiceImpl(JobManager& manager, ArtifactStore& artifacts, CoordinatorMetrics& metrics)
      : manager_(manager), artifacts_(artifacts), metrics_(metrics) {}

  grpc::ServerUnaryReactor* Register(grpc::CallbackServerContext* ctx, const v1::RegisterRequest* req,
                                     v1::RegisterResponse* resp) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* ctx, const v1::HeartbeatRequest* req,
                                      v1::HeartbeatResponse* resp) override;
  grpc::ServerUnaryReactor* Report(grpc::CallbackServerContext* ctx, const v1::ReportRequest* req,
                                   v1::ReportResponse* resp) override;
  grpc::ServerUnaryReactor* Complete(grpc::CallbackServerContext* ctx, const v1::CompleteRequest* req,
                                     v1::CompleteResponse* resp) override;
  grpc::ServerUnaryReactor* UploadArtifact(grpc::CallbackServerContext* ctx, const v1::UploadArtifactRequest* req,
                                           v1::UploadArtifactResponse* resp) override;

 private:
  JobManager& manager_;
  ArtifactStore& artifacts_;
  CoordinatorMetrics& metrics_;
};

}  // namespace vsdm::server
