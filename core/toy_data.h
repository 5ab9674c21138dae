// Two-dimensional toy generators of spec §6 (fresh points on every call, from the caller's
// generator, so every rank's stream is seeded and reproducible).
#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/status/statusor.h"

namespace vsdm::core {

class ToyDataset {
 public:
  // `name`: spiral | checkerboard | gaussian | moons | eight_gaussians; `scale`: per-axis
  // factors (one value scales both axes). INVALID_ARGUMENT for an unknown name.
  static absl::StatusOr<ToyDataset> Create(const std::string& name, std::vector<double> scale);

  // n fresh points, [n, 2] float32.
  torch::Tensor Sample(int64_t n, torch::Generator& gen) const;
  int64_t dim() const { return 2; }
  const std::string& name() const { return name_; }

 private:
  ToyDataset(std::string name, std::vector<double> scale) : name_(std::move(name)), scale_(std::move(scale)) {}
  torch::Tensor SampleUnscaled(int64_t n, torch::Generator& gen) const;

  std::string name_;
  std::vector<double> scale_;  // size 2
};

}  // namespace vsdm::core
