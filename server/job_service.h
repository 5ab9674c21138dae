// vsdm.v1.JobService over gRPC's callback API: a thin adapter (convert, call JobManager, convert
// back). WatchJob and GetArtifact stream with write reactors.
#pragma once

#include <string>

#include "server/rpc_util.h"
#include "vsdm/v1/service.grpc.pb.h"

namespace vsdm::server {

// The submit checks of SubmitJob and SubmitSweep: PERMISSION_DENIED for a user's `spec` priority
// above the ceiling (`field` names it in the message).
absl::Status CheckPriority(const ServiceDeps& d, const Caller& caller, const v1::JobSpec& spec, const std::string& field);

// Every call is authorized first: roles user (its own jobs; others' are NOT_FOUND) and admin
// (every job, the worker list); a worker's token is PERMISSION_DENIED here.
class JobServiceImpl final : public v1::JobService::CallbackService {
 public:
  explicit JobServiceImpl(const ServiceDeps& deps) : d_(deps) {}

  grpc::ServerUnaryReactor* SubmitJob(grpc::CallbackServerContext* ctx, const v1::SubmitJobRequest* req,
                                      v1::Job* resp) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* ctx, const v1::GetJobRequest* req,
                                   v1::Job* resp) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* ctx, const v1::ListJobsRequest* req,
                                     v1::ListJobsResponse* resp) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* ctx, const v1::CancelJobRequest* req,
                                      v1::Job* resp) override;
  grpc::ServerWriteReactor<v1::JobEvent>* WatchJob(grpc::CallbackServerContext* ctx,
                                                   const v1::WatchJobRequest* req) override;
  grpc::ServerWriteReactor<v1::ArtifactChunk>* GetArtifact(grpc::CallbackServerContext* ctx,
                                                           const v1::GetArtifactRequest* req) override;
  grpc::ServerUnaryReactor* ListWorkers(grpc::CallbackServerContext* ctx, const v1::ListWorkersRequest* req,
                                        v1::ListWorkersResponse* resp) override;
  grpc::ServerUnaryReactor* SubmitSweep(grpc::CallbackServerContext* ctx, const v1::SubmitSweepRequest* req,
                                        v1::SubmitSweepResponse* resp) override;
  grpc::ServerUnaryReactor* GetLogs(grpc::CallbackServerContext* ctx, const v1::GetLogsRequest* req,
                                    v1::GetLogsResponse* resp) override;

 private:
  ServiceDeps d_;
};

}  // namespace vsdm::server
