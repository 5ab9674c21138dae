// Shared by the gRPC services: finishing a unary callback RPC with a Status and recording it.
#pragma once

#include <chrono>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "common/grpc_status.h"
#include "server/coordinator_metrics.h"

namespace vsdm::server {

using RpcClock = std::chrono::steady_clock;

// Finishes `ctx`'s unary call with `s` and records it (method, code, time since `t0`).
inline grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* ctx, CoordinatorMetrics& m,
                                             const char* method, RpcClock::time_point t0, const absl::Status& s) {
  m.RecordRpc(method, static_cast<int>(s.code()), std::chrono::duration<double>(RpcClock::now() - t0).count());
  auto* r = ctx->DefaultReactor();
  r->Finish(ToGrpcStatus(s));
  return r;
}

}  // namespace vsdm::server
