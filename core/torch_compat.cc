#include "core/torch_compat.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

// LibTorch 2.4 renamed the per-device autocast switches (set_autocast_enabled(device_type, on),
// set_autocast_dtype(device_type, dtype)) and deprecated the old ones, which -Werror refuses.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define VSDM_AUTOCAST_BY_DEVICE_TYPE 1
#endif

namespace vsdm::core {
namespace {

bool AutocastEnabled(bool cuda) {
#ifdef VSDM_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::is_autocast_enabled(cuda ? at::kCUDA : at::kCPU);
#else
  return cuda ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}

at::ScalarType AutocastDtype(bool cuda) {
#ifdef VSDM_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::get_autocast_dtype(cuda ? at::kCUDA : at::kCPU);
#else
  return cuda ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
#endif
}

void SetAutocast(bool cuda, bool enabled, at::ScalarType dtype) {
#ifdef VSDM_AUTOCAST_BY_DEVICE_TYPE
  const at::DeviceType type = cuda ? at::kCUDA : at::kCPU;
  at::autocast::set_autocast_dtype(type, dtype);
  at::autocast::set_autocast_enabled(type, enabled);
#else
  if (cuda) {
    at::autocast::set_autocast_gpu_dtype(dtype);
    at::autocast::set_enabled(enabled);
  } else {
    at::autocast::set_autocast_cpu_dtype(dtype);
    at::autocast::set_cpu_enabled(enabled);
  }
#endif
}

}  // namespace

absl::StatusOr<Precision> ParsePrecision(const std::string& s) {
  if (s == "fp32") return Precision::kFp32;
  if (s == "bf16") return Precision::kBf16;
  return absl::InvalidArgumentError(absl::StrCat("train.precision: must be one of fp32 | bf16, got \"", s, "\""));
}

const char* PrecisionName(Precision p) { return p == Precision::kBf16 ? "bf16" : "fp32"; }

AutocastGuard::AutocastGuard(const torch::Device& device, Precision precision) {
  if (precision != Precision::kBf16) return;
  active_ = true;
  cuda_ = device.is_cuda();
  was_enabled_ = AutocastEnabled(cuda_);
  was_dtype_ = AutocastDtype(cuda_);
  SetAutocast(cuda_, true, at::kBFloat16);
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  // The weights cast for this region are cached until the outermost region ends.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  SetAutocast(cuda_, was_enabled_, was_dtype_);
}

torch::Generator MakeDeviceGenerator(const torch::Device& device, uint64_t seed) {
  if (!device.is_cuda()) return at::make_generator<at::CPUGeneratorImpl>(seed);
  // Device-generic: the CUDA hooks answer on a CUDA build and throw on a CPU one.
  torch::Generator g = at::globalContext().defaultGenerator(device).clone();
  g.set_current_seed(seed);
  return g;
}

absl::StatusOr<torch::Device> ParseDevice(const std::string& s) {
  if (s == "cpu") return torch::Device(torch::kCPU);
  if (s != "cuda" && !absl::StartsWith(s, "cuda:"))
    return absl::InvalidArgumentError(absl::StrCat("resources.device: must be cpu | cuda, got \"", s, "\""));
  if (!torch::cuda::is_available())
    return absl::FailedPreconditionError("resources.device: cuda requested but no CUDA device is visible");
  int index = 0;
  if (s.size() > 5 &&
      (!absl::SimpleAtoi(s.substr(5), &index) || index < 0 || index >= static_cast<int>(torch::cuda::device_count())))
    return absl::InvalidArgumentError(absl::StrCat("resources.device: no such device \"", s, "\""));
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

}  // namespace vsdm::core
