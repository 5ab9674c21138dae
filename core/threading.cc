#include "core/threading.h"

#include <dlfcn.h>

#include <torch/torch.h>

#include "absl/strings/str_format.h"

namespace vsdm::core {

std::string ConfigureThreads(int threads) {
  using SetThreads = void (*)(int);
  auto set_blas = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (set_blas != nullptr) {
    set_blas(threads);
    torch::set_num_threads(1);
    return absl::StrFormat("%d OpenBLAS threads, 1 torch thread", threads);
  }
  torch::set_num_threads(threads);
  return absl::StrFormat("%d torch threads (no OpenBLAS found)", threads);
}

}  // namespace vsdm::core
