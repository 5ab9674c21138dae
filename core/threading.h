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

#include "core/torch_compat.h"

namespace vsdm::core {

// Who gets the threads: the BLAS (float32 matmuls) with 1 torch thread, torch's pool (oneDNN
// runs the bfloat16 matmuls, and every elementwise op) with 1 BLAS thread, or both.
enum class ThreadMode { kBlas, kTorch, kBoth };
ThreadMode ParseThreadMode(const std::string& s);  // "blas" | "torch" | "both" (else kBlas)
// The split the runtime uses for a precision (Note [BLAS threads vs torch threads]).
ThreadMode DefaultThreadMode(Precision p);

// Gives `threads` threads to the BLAS (when it is OpenBLAS) and 1 to torch's intra-op pool (kBlas),
// or the other way round (kTorch), or `threads` to both (kBoth); without OpenBLAS, gives `threads`
// to torch. Returns a one-line description.
std::string ConfigureThreads(int threads, ThreadMode mode = ThreadMode::kBlas);

// Note [Large tensors and the allocator]: LibTorch's CPU allocator is malloc. glibc serves blocks
// over its mmap threshold (at most 32 MiB) with mmap and returns them with munmap on free, so
// every activation of a step at the reference batch (40 000 x 256 float32 = 41 MB) is mapped,
// faulted in page by page and unmapped again, every step. Measured here (vsdm_bench --step-only,
// toy_resnet 256, 2 cores): 2.42 s/step with glibc's defaults, 1.19 s/step with mmap off and
// the heap never trimmed; the reference Python step goes from 2.38 to 1.42 s with the same
// setting (MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...). So a training process keeps its
// freed blocks: its resident size stays at its peak (which it reaches every step anyway).
// Returns a one-line description; call it before the first tensor.
std::string ConfigureAllocator();

}  // namespace vsdm::core
