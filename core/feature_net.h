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
  // Class logits from penultimate features f [N, feature_dim()]: forward(x) == Head(Features(x)).
  // (Dropout is applied by TrainFeatureNet between the two, with its own generator.)
  torch::Tensor Head(const torch::Tensor& features);

  int64_t channels() const { return channels_; }
  int64_t height() const { return height_; }
  int64_t width() const { return width_; }
  int64_t classes() const { return classes_; }
  int64_t feature_dim() const;

 private:
  int64_t channels_, height_, width_, classes_;
  // conv3x3(C->32) ReLU maxpool2, conv3x3(32->64) ReLU maxpool2, adaptive avg pool to 7x7,
  // Linear(3136->128) ReLU = features; Linear(128->classes) = logits. No batch norm, so eval
  // and train mode compute the same features.
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  torch::nn::Linear fc_{nullptr}, head_{nullptr};
};
TORCH_MODULE(FeatureNet);

// Defaults: >= 90% test accuracy on Fashion-MNIST (60k train, 10k test) in about 4 minutes on a
// 2-core CPU (measured: worker/train/featnet_main.cc).
struct FeatureNetOptions {
  int64_t epochs = 3;
  int64_t batch = 128;
  double lr = 2e-3;            // AdamW peak learning rate, cosine-decayed to 0 over all steps
  int64_t seed = 0;            // initial weights, shuffling, augmentation and dropout
  double weight_decay = 1e-4;  // AdamW decoupled weight decay
  double dropout = 0.2;        // on the features, before the head (training only)
  int64_t max_shift = 0;       // augmentation: random shifts of up to this many pixels (0: none)
  bool progress = false;       // one line per epoch to stderr
};

struct FeatureNetReport {
  double test_accuracy = 0.0;  // on data.test
  double train_seconds = 0.0;
  int64_t epochs = 0;
  std::string dataset;  // data.name (TrainFeatureNet) or the name saved in the file (LoadFeatureNet)
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
