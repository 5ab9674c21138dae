// The one adapter for the LibTorch API differences the training math meets outside c10d
// (c10d's are in worker/train/comm.cc): autocast, whose C++ switches were renamed in 2.4, and
// random generators on a device. Everything here compiles against Debian's CPU LibTorch 1.13
// and a CUDA LibTorch 2.x; CUDA is reached only through device-generic calls, so a CPU build
// links no CUDA symbol.
#pragma once

#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "absl/status/statusor.h"

namespace vsdm::core {

// train.precision: the dtype of the score network's matmuls and activations under autocast.
// Master weights, the EMA, the optimiser state and the loss reduction stay float32 either way.
enum class Precision { kFp32, kBf16 };
// "fp32" | "bf16" (validated by the job spec; anything else is INVALID_ARGUMENT naming it).
absl::StatusOr<Precision> ParsePrecision(const std::string& s);
const char* PrecisionName(Precision p);

// Autocast to bfloat16 for `device`'s type while alive (a no-op for kFp32). Nests: the cast
// weights' cache is dropped when the outermost guard ends. Not for use across threads.
class AutocastGuard {
 public:
  AutocastGuard(const torch::Device& device, Precision precision);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false;
  bool cuda_ = false;
  bool was_enabled_ = false;
  at::ScalarType was_dtype_ = at::kFloat;
};

// A fresh generator for `device` seeded with `seed` (CPU: the Mersenne twister vsdm has always
// used, so CPU draws are unchanged; CUDA: a clone of the device's Philox generator, so draws for
// device tensors are made on the device).
torch::Generator MakeDeviceGenerator(const torch::Device& device, uint64_t seed);

// "cpu" | "cuda" | "cuda:N" as a device; CUDA without a visible device is FAILED_PRECONDITION.
absl::StatusOr<torch::Device> ParseDevice(const std::string& s);

}  // namespace vsdm::core
