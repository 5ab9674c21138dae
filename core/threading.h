// CPU thread configuration for LibTorch on top of an external BLAS.
//
// Note [BLAS threads vs torch threads]: Debian's LibTorch calls the system BLAS
// (libblas.so.3 -> OpenBLAS) for every linear layer. OpenBLAS (pthread build) runs its own
// thread pool; torch's OpenMP intra-op pool runs another. With both at N threads on N cores
// they oversubscribe and spin against each other: measured here (2 cores, toy_resnet width
// 128, batch 1024) 16 DSM steps/s with both at 2, 57 with BLAS at 1 and torch at 2, 75 with
// BLAS at 2 and torch at 1. So by default the BLAS owns the cores and torch's pool is 1.
#pragma once

#include <string>

namespace vsdm::core {

// Gives `threads` threads to the BLAS (when it is OpenBLAS) and 1 to torch's intra-op pool;
// without OpenBLAS, gives `threads` to torch. Returns a one-line description.
std::string ConfigureThreads(int threads);

}  // namespace vsdm::core
