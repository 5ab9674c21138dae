#include "common/grpc_status.h"

#include <string>

namespace vsdm {

grpc::Status ToGrpcStatus(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  const auto code = static_cast<absl::StatusCode>(s.error_code());
  // A status with no message (UNIMPLEMENTED from a server without the service) still says what.
  return absl::Status(code, s.error_message().empty() ? absl::StatusCodeToString(code) : s.error_message());
}

}  // namespace vsdm
