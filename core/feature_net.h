// The project's own feature network for image quality (there are no Inception weights offline):
// a small CNN classifier trained by this code on a dataset's training split. Its penultimate
// features give a Fréchet distance; its softmax gives the confident fraction and the class
// histogram. Training is deterministic in the seed (one thread count aside), so
// `vsdm-featnet --dataset fashion_mnist --out FILE` reproduces the weights.
#pragma once

#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "core/image_data.h"

namespace vsdm::core {

class FeatureNetImpl : public torch::nn::Module {
 public:
  FeatureNetImpl(int64_t channels, int64_t height, int64_t width, int64_t classes);
  // Penultimate features of images x [N, C, H, W] in [-1, 1]: [N, feature_dim()].
  torch::Tensor Features(const torch::Tensor& x);
  // Class logits: [N, classes].
  torch::Tensor forward(const torch::Tensor& x);

  int64_t channels() const { return channels_; }
  int64_t height() const { return height_; }
  int64_t width() const { return width_; }
  int64_t classes() const { return classes_; }
  int64_t feature_dim() const;

 private:
  int64_t channels_, height_, width_, classes_;
  // (the layers)
};
TORCH_MODULE(FeatureNet);

struct FeatureNetOptions {
  int64_t epochs = 3;
  int64_t batch = 128;
  double lr = 2e-3;
  int64_t seed = 0;
};

struct FeatureNetReport {
  double test_accuracy = 0.0;  // on data.test
  double train_seconds = 0.0;
  int64_t epochs = 0;
};

// Trains a classifier on data.train (REQUIRES labels) and measures it on data.test.
// INVALID_ARGUMENT when the data has no labels.
absl::StatusOr<FeatureNet> TrainFeatureNet(const ImageData& data, const FeatureNetOptions& options,
                                           FeatureNetReport* report);

// Saves / loads weights with their shape and the report (test accuracy, dataset name).
// LoadFeatureNet: INVALID_ARGUMENT naming the file when it is not a feature net or its shape
// differs from (channels, height, width, classes).
absl::Status SaveFeatureNet(const std::string& path, FeatureNet& net, const FeatureNetReport& report,
                            const std::string& dataset);
absl::StatusOr<FeatureNet> LoadFeatureNet(const std::string& path, int64_t channels, int64_t height, int64_t width,
                                          int64_t classes, FeatureNetReport* report);

}  // namespace vsdm::core
