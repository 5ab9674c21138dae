// The postcondition every image loader of core/image_data.h promises on success, checked by the
// IDX, NPY and PNG fuzz targets: [N, C, H, W] float32 in [-1, 1], contiguous, C in {1, 3}, N > 0,
// and labels (when present) [N] int64.
#pragma once

#include <torch/torch.h>

#include "core/image_data.h"
#include "fuzz/fuzz_util.h"

namespace vsdm::fuzz {

inline void InitTorchForFuzzing() {
  torch::set_num_threads(1);  // no intra-op pool: one input at a time, deterministic, no pool "leaks"
}

inline void CheckImageSet(const core::ImageSet& set) {
  Require(set.images.defined() && set.images.dim() == 4, "images are not [N, C, H, W]");
  Require(set.images.scalar_type() == torch::kFloat32 && set.images.is_contiguous(), "images not contiguous float32");
  Require(set.size() > 0 && (set.channels() == 1 || set.channels() == 3), "no images, or C not in {1, 3}");
  Require(set.images.min().item<float>() >= -1.0f && set.images.max().item<float>() <= 1.0f, "pixels outside [-1, 1]");
  if (set.has_labels()) {
    Require(set.labels.dim() == 1 && set.labels.size(0) == set.size() && set.labels.scalar_type() == torch::kInt64,
            "labels are not [N] int64");
  }
}

}  // namespace vsdm::fuzz
