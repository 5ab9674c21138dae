// The picture of an image job (cairo PNG): a grid of generated samples beside real test images,
// a strip of probability-flow paths (x_t at several t), and the learned per-pixel D = I - 2A drawn
// as an image, with a caption of the headline figures.
#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/status/status.h"

namespace vsdm::core {

struct ImageReport {
  std::string title;                 // top line
  std::vector<std::string> caption;  // lines under the title (metrics)
  torch::Tensor samples;             // [n, C, H, W] in [0, 1] (n <= 100 drawn as a 10-column grid)
  torch::Tensor real;                // [m, C, H, W] in [0, 1] (real test images, same grid)
  torch::Tensor paths;               // [P, k, C, H, W] in [0, 1]: k paths at P times, or undefined
  std::vector<double> path_times;    // P labels for the strip (t values)
  torch::Tensor d_image;             // [C, H, W] per-pixel D (any range; colour-mapped with a scale bar), or undefined
};

// Writes the PNG. INVALID_ARGUMENT on a bad shape, INTERNAL on I/O failure.
absl::Status WriteImageReportPng(const std::string& path, const ImageReport& report);

}  // namespace vsdm::core
