// The one way vsdmctl makes a call: a ClientContext with a deadline, the call, and its
// grpc::Status turned into an absl::Status whose message says what was being done.
#pragma once

#include <grpcpp/client_context.h>
#include <grpcpp/support/status.h>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace vsdm::client {

// Sets `ctx`'s deadline to `timeout` from now.
void SetDeadline(grpc::ClientContext& ctx, absl::Duration timeout);

// OK for OK; otherwise the same canonical code with the message "<what>: <server message>".
absl::Status StatusOfCall(absl::string_view what, const grpc::Status& status);

// One unary call: `call` on a fresh ClientContext whose deadline is `timeout` from now;
// StatusOfCall(what, its status).
absl::Status CallUnary(absl::string_view what, absl::Duration timeout,
                       absl::FunctionRef<grpc::Status(grpc::ClientContext*)> call);

}  // namespace vsdm::client
