#include "client/call_unary.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"

namespace vsdm::client {

void SetDeadline(grpc::ClientContext& ctx, absl::Duration timeout) {
  ctx.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
}

absl::Status StatusOfCall(absl::string_view what, const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  const absl::Status s = FromGrpcStatus(status);
  return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
}

absl::Status CallUnary(absl::string_view what, absl::Duration timeout,
                       absl::FunctionRef<grpc::Status(grpc::ClientContext*)> call) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, timeout);
  return StatusOfCall(what, call(&ctx));
}

}  // namespace vsdm::client
