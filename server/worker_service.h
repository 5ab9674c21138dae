// vsdm.v1.WorkerService over gRPC's callback API: register, heartbeat (lease renewal, new
// assignments, abort orders), progress reports and attempt completion, each a thin adapter over
// JobManager.
#pragma once

#include <functional>
#include <string>

#include "server/rpc_util.h"
#include "vsdm/v1/service.grpc.pb.h"

namespace vsdm::server {

// Every call is authorized first (role worker; Note [Workers speak for themselves] in
// job_manager.h for what a worker may say).
class WorkerServiceImpl final : public v1::WorkerService::CallbackService {
 public:
  explicit WorkerServiceImpl(const ServiceDeps& deps) : d_(deps) {}

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
  grpc::ServerUnaryReactor* FetchCheckpoint(grpc::CallbackServerContext* ctx, const v1::FetchCheckpointRequest* req,
                                            v1::FetchCheckpointResponse* resp) override;
  grpc::ServerUnaryReactor* AppendLog(grpc::CallbackServerContext* ctx, const v1::AppendLogRequest* req,
                                      v1::AppendLogResponse* resp) override;

 private:
  // What each handler does on the handler pool: authorize (role worker), run `body` with the
  // caller and its session credential (the x-vsdm-worker-credential metadata, "" when absent),
  // audit (`audit_ok`: successful calls too; failed ones always), finish.
  using Body = std::function<absl::Status(const Caller& caller, const std::string& credential)>;
  // `on`: the pool it runs on (default the handler pool).
  grpc::ServerUnaryReactor* Call(grpc::CallbackServerContext* ctx, const char* method, std::string audit_target,
                                 bool audit_ok, Body body, HandlerPool* on = nullptr);

  ServiceDeps d_;
};

}  // namespace vsdm::server
