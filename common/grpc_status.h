// The one pair of conversions between absl::Status and grpc::Status (same canonical codes).
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace vsdm {

grpc::Status ToGrpcStatus(const absl::Status& s);
absl::Status FromGrpcStatus(const grpc::Status& s);

}  // namespace vsdm
