// Shared by the gRPC services: finishing a unary callback RPC with a Status and recording it.
#pragma once

#include <chrono>
#include <functional>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "common/grpc_status.h"
#include "server/artifact_store.h"
#include "server/audit_log.h"
#include "server/auth.h"
#include "server/coordinator_metrics.h"
#include "server/handler_pool.h"
#include "server/job_manager.h"
#include "server/log_book.h"

namespace vsdm::server {

using RpcClock = std::chrono::steady_clock;

// What both services stand on; every member must outlive them.
struct ServiceDeps {
  JobManager& manager;
  ArtifactStore& artifacts;
  CoordinatorMetrics& metrics;
  const Authenticator& auth;
  AuditLog& audit;
  HandlerPool& pool;            // where every handler runs (Note [Handlers off the reactor]) ...
  HandlerPool& heartbeat_pool;  // ... but heartbeats: blocked handlers never hold up a lease renewal
  int64_t priority_ceiling = 100;  // a `user` may not submit above it (PERMISSION_DENIED naming priority)
  LogBook* logs = nullptr;         // the ranks' live logs (Note [Live rank logs]); null = GetLogs/AppendLog UNIMPLEMENTED
};

// The metadata key of a worker's session credential (RegisterResponse.worker_credential).
inline constexpr char kWorkerCredentialKey[] = "x-vsdm-worker-credential";

// The value of `key` in `ctx`'s client metadata, "" when absent.
inline std::string MetadataValue(const grpc::CallbackServerContext& ctx, const char* key) {
  auto it = ctx.client_metadata().find(key);
  return it == ctx.client_metadata().end() ? std::string() : std::string(it->second.data(), it->second.size());
}

// Runs `body` (which returns the call's status, having filled the response) on `d.pool` (or `on`)
// and finishes `ctx`'s call from that thread, recorded in `d.metrics` (method, code, and the time
// since the call arrived, the wait for a pool thread included). When the pool's queue is full the
// call ends at once RESOURCE_EXHAUSTED and `body` never runs. `body` may use the call's request,
// response and context: they live until the call is finished.
inline grpc::ServerUnaryReactor* OffloadUnary(grpc::CallbackServerContext* ctx, const ServiceDeps& d,
                                              const char* method, std::function<absl::Status()> body,
                                              HandlerPool* on = nullptr /* d.pool */) {
  const auto t0 = RpcClock::now();
  CoordinatorMetrics& metrics = d.metrics;
  HandlerPool& pool = on != nullptr ? *on : d.pool;
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();  // once per call (placement new)
  auto finish = [reactor, &metrics, method, t0](const absl::Status& s) {
    metrics.RecordRpc(method, static_cast<int>(s.code()), std::chrono::duration<double>(RpcClock::now() - t0).count());
    reactor->Finish(ToGrpcStatus(s));
  };
  if (!pool.Run([finish, body = std::move(body)] { finish(body()); })) finish(pool.BusyError());
  return reactor;
}

}  // namespace vsdm::server
