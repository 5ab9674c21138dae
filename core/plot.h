// PNG pictures of 2-D results (cairo): data, samples, and ODE trajectories side by side, with
// a caption of the headline metrics, so a person can judge a run at a glance.
#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/status/status.h"

namespace vsdm::core {

struct ScatterPlot {
  std::string title;                 // top line
  std::vector<std::string> caption;  // lines under the title (metrics)
  torch::Tensor data;                // [n, 2] reference points
  torch::Tensor samples;             // [m, 2] generated points
  torch::Tensor trajectories;        // [steps+1, k, 2] a few ODE paths (prior -> sample); optional
};

// Writes a PNG with three panels (data | samples | trajectories). INTERNAL on I/O failure.
absl::Status WriteScatterPng(const std::string& path, const ScatterPlot& plot);

}  // namespace vsdm::core
