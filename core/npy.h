// Reading and writing NumPy .npy files (format 1.0, little-endian float32/float64, C order).
#pragma once

#include <string>

#include <torch/torch.h>

#include "absl/status/statusor.h"

namespace vsdm::core {

// The .npy bytes of a float32 or float64 tensor (any shape).
std::string EncodeNpy(const torch::Tensor& t);
// Writes `t` atomically to `path`.
absl::Status WriteNpy(const std::string& path, const torch::Tensor& t);
// Reads a float32/float64 C-order .npy file (format 1.0, 2.0 or 3.0); INVALID_ARGUMENT "<path>:
// <what is wrong>" for anything else (another dtype, Fortran order, a malformed header or shape,
// data shorter than the shape), NOT_FOUND when the file cannot be read.
absl::StatusOr<torch::Tensor> ReadNpy(const std::string& path);

}  // namespace vsdm::core
