#include "core/threading.h"

#include <dlfcn.h>
#include <malloc.h>

#include <limits>

#include <torch/torch.h>

#include "absl/strings/str_format.h"

namespace vsdm::core {

std::string ConfigureAllocator() {
  // M_MMAP_MAX 0: every block from the heap; M_TRIM_THRESHOLD: never give the top of the heap back.
  const bool ok = mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max()) == 1;
  return ok ? "heap kept (no mmap per tensor)" : "glibc malloc defaults (mallopt refused)";
}

ThreadMode ParseThreadMode(const std::string& s) {
  if (s == "torch") return ThreadMode::kTorch;
  if (s == "both") return ThreadMode::kBoth;
  return ThreadMode::kBlas;
}

ThreadMode DefaultThreadMode(Precision p) { return p == Precision::kBf16 ? ThreadMode::kTorch : ThreadMode::kBlas; }

std::string ConfigureThreads(int threads, ThreadMode mode) {
  using SetThreads = void (*)(int);
  auto set_blas = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (set_blas != nullptr) {
    const int blas = mode == ThreadMode::kTorch ? 1 : threads;
    const int own = mode == ThreadMode::kBlas ? 1 : threads;
    set_blas(blas);
    torch::set_num_threads(own);
    return absl::StrFormat("%d OpenBLAS thread%s, %d torch thread%s", blas, blas == 1 ? "" : "s", own,
                           own == 1 ? "" : "s");
  }
  torch::set_num_threads(threads);
  return absl::StrFormat("%d torch threads (no OpenBLAS found)", threads);
}

}  // namespace vsdm::core
