// Image-quality figures of an image job, all float64: the Fréchet distance of the feature net's
// penultimate features (with its floor and two baselines), the classifier's confident fraction
// and class histogram, and a memorisation check (nearest training image).
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "core/feature_net.h"
#include "core/image_data.h"

namespace vsdm::core {

// Fréchet distance between Gaussians fitted to feature sets a [n, F] and b [m, F]:
// |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2) (symmetric square roots by
// eigendecomposition, negative eigenvalues clamped to 0). float64; the result is clamped at 0
// (rounding). REQUIRES: a and b have >= 2 rows and the same number of columns.
double FrechetDistance(const torch::Tensor& a, const torch::Tensor& b);

// 3x3 box filter per channel with replicate padding; images [N, C, H, W] (any range).
torch::Tensor BoxBlur3x3(const torch::Tensor& images);

// n draws from N(mean, full covariance) of `images` [N, C, H, W] (flattened), clamped to
// [-1, 1]: the "Gaussian" baseline. [n, C, H, W] float32. The covariance gets a small diagonal
// jitter (grown until its Cholesky factorisation succeeds) so constant pixels are allowed.
// REQUIRES: >= 2 images.
torch::Tensor GaussianImageBaseline(const torch::Tensor& images, int64_t n, torch::Generator& gen);

// Median over rows of a [n, d] of the Euclidean distance to the nearest row of b [m, d]
// (blocked; O(block * m) memory besides a float64 copy of b). float64. For an even n the median
// is the mean of the two middle values. REQUIRES: n >= 1, m >= 1.
double MedianNearestDistance(const torch::Tensor& a, const torch::Tensor& b);

struct ClassifierFigures {
  double confident_fraction = 0.0;  // share with max softmax > 0.9
  std::vector<double> histogram;    // share per argmax class (sums to 1)
  double tv_from_uniform = 0.0;     // 1/2 sum |h_k - 1/K|
};
// Of `images` [N, C, H, W] in [-1, 1] (eval mode, no grad, batched; the net's mode is restored).
// REQUIRES: N >= 1.
ClassifierFigures ClassifyFigures(FeatureNet& net, const torch::Tensor& images);

// Note [One reference half]: a seeded permutation splits the test split in two halves. The first
// half, box-blurred, gives fd_blur; the second half is the reference of every Fréchet distance
// below (fd, fd_floor, fd_gaussian, fd_blur), so the four are comparable.
struct ImageQuality {
  double fd = 0.0;                  // samples vs the reference half of test
  double fd_floor = 0.0;            // n random train images vs the reference half (n = number of samples)
  double fd_gaussian = 0.0;         // n Gaussian-baseline draws (fitted to <= 10,000 train images) vs it
  double fd_blur = 0.0;             // the blurred first half of test vs the reference half
  ClassifierFigures samples, test;  // test: the whole test split
  double nn_median_samples = 0.0;   // median distance, sample -> nearest training image
  double nn_median_test = 0.0;      // median distance, test image -> nearest training image (n test images)
  double memorisation_ratio = 0.0;  // nn_median_samples / nn_median_test (>= 0.8 is healthy)
};

// All figures for `samples` [n, C, H, W] in [-1, 1] against `data` (its test split; train for
// the floor, the baselines and the nearest-neighbour check). Deterministic in `gen`.
// REQUIRES: n >= 2, data.test has >= 4 images, data.train >= 2, shapes match the net's.
ImageQuality EvaluateImageQuality(FeatureNet& net, const torch::Tensor& samples, const ImageData& data,
                                  torch::Generator& gen);

}  // namespace vsdm::core
