// Image datasets from disk (spec: problem.dataset): the Debian Fashion-MNIST files, the vendored
// 8x8 sklearn digits, and a user's own images (IDX, .npy, a folder of PNG files). Every loader
// refuses a bad file before anything is written, naming the file and what is wrong. Pixels are
// held as float32 in [-1, 1] (training's range); artifacts map them back with ToUnitRange.
#pragma once

#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "absl/status/statusor.h"

namespace vsdm::core {

// A set of images with optional labels.
struct ImageSet {
  torch::Tensor images;  // [N, C, H, W] float32 in [-1, 1], contiguous
  torch::Tensor labels;  // [N] int64 in [0, classes), or undefined when the source has none
  std::string source;    // the file or folder it was read from (for messages and metrics.json)

  int64_t size() const { return images.defined() ? images.size(0) : 0; }
  int64_t channels() const { return images.size(1); }
  int64_t height() const { return images.size(2); }
  int64_t width() const { return images.size(3); }
  int64_t dim() const { return channels() * height() * width(); }
  bool has_labels() const { return labels.defined(); }
  // Rows `idx` ([k] int64) of images and labels.
  ImageSet Select(const torch::Tensor& idx) const;
};

// The training and held-out test split of one dataset. `test` never enters training.
struct ImageData {
  ImageSet train;
  ImageSet test;
  std::string name;          // "fashion_mnist", "digits", or "images:<path>"
  int64_t classes = 0;       // number of label classes (0 when unlabelled)
  std::string split;         // how `test` was made: "official" or "seeded <fraction>"
};

// Where the loaders find the built-in sets. Filled by main() from flags/environment.
struct ImageDataPaths {
  std::string fashion_mnist_dir = "/usr/share/datasets/fashion-mnist";  // Debian dataset-fashion-mnist
  std::string data_dir;  // the repository's data/ (holds images/digits8x8.csv.gz)
};

// True for the image values of problem.dataset: fashion_mnist, digits, images:<path>.
bool IsImageDataset(const std::string& dataset);

// Loads `dataset` (one of the IsImageDataset values). Sources without an official split (digits,
// images:<path>) hold out a seeded `test_fraction` of the images (same seed: same split).
// `train_limit` > 0 keeps only the first `train_limit` training images (after the split; for
// quick tests). Errors are INVALID_ARGUMENT "problem.dataset: <file>: <what is wrong>"
// (NOT_FOUND-like problems, e.g. a missing file, are INVALID_ARGUMENT too: the spec is wrong).
absl::StatusOr<ImageData> LoadImageData(const std::string& dataset, const ImageDataPaths& paths, double test_fraction,
                                        uint64_t seed, int64_t train_limit = 0);

// One file or folder: IDX images (`.gz` or not; magic 0x00000803, uint8), `.npy` ([N,H,W],
// [N,C,H,W] or [N,H,W,C] with C in {1, 3}; uint8, or float32/float64 in [0, 1]), or a directory of
// `.png` files (8-bit grey or RGB(A) -> 1 or 3 channels; all the same size). For IDX images a
// sibling labels file (the name with "images-idx3" replaced by "labels-idx1") is read when present.
absl::StatusOr<ImageSet> ReadImages(const std::string& path);
// IDX labels (magic 0x00000801, uint8), `.gz` or not: [N] int64.
absl::StatusOr<torch::Tensor> ReadIdxLabels(const std::string& path);
// The sklearn digits CSV (`.gz` or not): 64 pixels 0..16 then the label, per line.
absl::StatusOr<ImageSet> ReadDigitsCsv(const std::string& path);

// [-1, 1] -> [0, 1], clamped.
torch::Tensor ToUnitRange(const torch::Tensor& images);

}  // namespace vsdm::core
