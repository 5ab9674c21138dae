#include "core/image_metrics.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace vsdm::core {
namespace {

constexpr int64_t kNearestBlock = 256;      // rows of `a` per distance block
constexpr int64_t kNetBatch = 1000;         // images per feature-net forward
constexpr int64_t kGaussianFitMax = 10000;  // training images the Gaussian baseline is fitted to

// Unbiased covariance of the rows of x [n, F] (float64).
torch::Tensor Covariance(const torch::Tensor& x) {
  torch::Tensor c = x - x.mean(0, /*keepdim=*/true);
  return c.t().matmul(c) / static_cast<double>(x.size(0) - 1);
}

// Symmetric square root of a symmetric PSD matrix (eigendecomposition, negative eigenvalues -> 0).
torch::Tensor SqrtPsd(const torch::Tensor& m) {
  auto [w, v] = torch::linalg_eigh(0.5 * (m + m.t()));
  return (v * w.clamp_min(0.0).sqrt().unsqueeze(0)).matmul(v.t());
}

// Penultimate features and logits of `images` (eval mode, no grad, batched).
std::pair<torch::Tensor, torch::Tensor> FeaturesAndLogits(FeatureNet& net, const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  const bool was_training = net->is_training();
  net->eval();
  std::vector<torch::Tensor> feats, logits;
  const torch::Tensor x = images.to(torch::kFloat32);
  for (int64_t i = 0; i < x.size(0); i += kNetBatch) {
    torch::Tensor f = net->Features(x.narrow(0, i, std::min(kNetBatch, x.size(0) - i)));
    logits.push_back(net->Head(f));
    feats.push_back(std::move(f));
  }
  net->train(was_training);
  return {torch::cat(feats), torch::cat(logits)};
}

torch::Tensor Features(FeatureNet& net, const torch::Tensor& images) { return FeaturesAndLogits(net, images).first; }

ClassifierFigures FiguresFromLogits(const torch::Tensor& logits) {
  ClassifierFigures out;
  const int64_t n = logits.size(0), k = logits.size(1);
  torch::Tensor p = torch::softmax(logits.to(torch::kFloat64), 1);
  auto [pmax, arg] = p.max(1);
  out.confident_fraction = pmax.gt(0.9).to(torch::kFloat64).mean().item<double>();
  torch::Tensor hist = torch::bincount(arg, /*weights=*/{}, k).to(torch::kFloat64) / static_cast<double>(n);
  out.histogram.resize(k);
  for (int64_t j = 0; j < k; ++j) {
    out.histogram[j] = hist[j].item<double>();
    out.tv_from_uniform += 0.5 * std::abs(out.histogram[j] - 1.0 / static_cast<double>(k));
  }
  return out;
}

torch::Tensor Flat64(const torch::Tensor& images) { return images.reshape({images.size(0), -1}).to(torch::kFloat64); }

}  // namespace

double FrechetDistance(const torch::Tensor& a, const torch::Tensor& b) {
  torch::NoGradGuard no_grad;
  const torch::Tensor x = a.to(torch::kFloat64), y = b.to(torch::kFloat64);
  const torch::Tensor diff = x.mean(0) - y.mean(0);
  const torch::Tensor ca = Covariance(x), cb = Covariance(y);
  const torch::Tensor sa = SqrtPsd(ca);
  torch::Tensor m = sa.matmul(cb).matmul(sa);
  const double tr_sqrt = torch::linalg_eigvalsh(0.5 * (m + m.t())).clamp_min(0.0).sqrt().sum().item<double>();
  const double fd =
      diff.dot(diff).item<double>() + ca.trace().item<double>() + cb.trace().item<double>() - 2.0 * tr_sqrt;
  return std::max(0.0, fd);
}

torch::Tensor BoxBlur3x3(const torch::Tensor& images) {
  namespace F = torch::nn::functional;
  torch::NoGradGuard no_grad;
  torch::Tensor padded = F::pad(images, F::PadFuncOptions({1, 1, 1, 1}).mode(torch::kReplicate));
  return F::avg_pool2d(padded, F::AvgPool2dFuncOptions(3).stride(1));
}

torch::Tensor GaussianImageBaseline(const torch::Tensor& images, int64_t n, torch::Generator& gen) {
  torch::NoGradGuard no_grad;
  const torch::Tensor x = Flat64(images);
  const int64_t d = x.size(1);
  const torch::Tensor mu = x.mean(0);
  const torch::Tensor cov = Covariance(x);
  // A jitter on the diagonal makes constant pixels (zero variance) factorisable; grown until the
  // Cholesky factorisation succeeds.
  const torch::Tensor eye = torch::eye(d, torch::kFloat64);
  double jitter = 1e-6 * std::max(1e-12, cov.trace().item<double>() / static_cast<double>(d));
  torch::Tensor l;
  for (int attempt = 0; attempt < 8; ++attempt, jitter *= 10.0) {
    auto [factor, info] = torch::linalg_cholesky_ex(cov + jitter * eye);
    if (info.item<int64_t>() == 0) {
      l = factor;
      break;
    }
  }
  if (!l.defined()) l = torch::diag(cov.diagonal().clamp_min(0.0).sqrt());  // no correlations, last resort
  const torch::Tensor z = torch::randn({n, d}, gen, torch::TensorOptions().dtype(torch::kFloat64));
  torch::Tensor draws = (mu.unsqueeze(0) + z.matmul(l.t())).clamp(-1.0, 1.0);
  std::vector<int64_t> shape = images.sizes().vec();
  shape[0] = n;
  return draws.to(torch::kFloat32).reshape(shape).contiguous();
}

double MedianNearestDistance(const torch::Tensor& a, const torch::Tensor& b) {
  torch::NoGradGuard no_grad;
  const torch::Tensor x = Flat64(a), y = Flat64(b);
  const torch::Tensor y_t = y.t().contiguous();
  const torch::Tensor y_sq = y.pow(2).sum(1).unsqueeze(0);
  std::vector<torch::Tensor> nearest;
  for (int64_t i = 0; i < x.size(0); i += kNearestBlock) {
    const torch::Tensor xb = x.narrow(0, i, std::min(kNearestBlock, x.size(0) - i));
    torch::Tensor d2 = xb.pow(2).sum(1, /*keepdim=*/true) + y_sq - 2.0 * xb.matmul(y_t);
    nearest.push_back(std::get<0>(d2.min(1)).clamp_min(0.0).sqrt());
  }
  const torch::Tensor sorted = std::get<0>(torch::cat(nearest).sort());
  const int64_t n = sorted.size(0);
  if (n % 2 == 1) return sorted[n / 2].item<double>();
  return 0.5 * (sorted[n / 2 - 1].item<double>() + sorted[n / 2].item<double>());
}

ClassifierFigures ClassifyFigures(FeatureNet& net, const torch::Tensor& images) {
  return FiguresFromLogits(FeaturesAndLogits(net, images).second);
}

ImageQuality EvaluateImageQuality(FeatureNet& net, const torch::Tensor& samples, const ImageData& data,
                                  torch::Generator& gen) {
  torch::NoGradGuard no_grad;
  ImageQuality q;
  const int64_t n = samples.size(0);
  const ImageSet& train = data.train;
  const ImageSet& test = data.test;
  // Note [One reference half]: a seeded permutation splits the test set; the first half is
  // blurred, the second is the reference every Fréchet distance is measured against.
  const torch::Tensor perm = torch::randperm(test.size(), gen, torch::kLong);
  const int64_t half = test.size() / 2;
  const torch::Tensor blur_idx = perm.narrow(0, 0, half);
  const torch::Tensor ref_idx = perm.narrow(0, half, test.size() - half);

  auto [test_feat, test_logits] = FeaturesAndLogits(net, test.images);
  const torch::Tensor ref_feat = test_feat.index_select(0, ref_idx);
  q.test = FiguresFromLogits(test_logits);
  auto [sample_feat, sample_logits] = FeaturesAndLogits(net, samples);
  q.samples = FiguresFromLogits(sample_logits);
  q.fd = FrechetDistance(sample_feat, ref_feat);

  const torch::Tensor train_perm = torch::randperm(train.size(), gen, torch::kLong);
  const torch::Tensor floor_idx = train_perm.narrow(0, 0, std::min(n, train.size()));
  q.fd_floor = FrechetDistance(Features(net, train.images.index_select(0, floor_idx)), ref_feat);
  const torch::Tensor fit_idx = train_perm.narrow(0, 0, std::min(kGaussianFitMax, train.size()));
  const torch::Tensor gaussian = GaussianImageBaseline(train.images.index_select(0, fit_idx), n, gen);
  q.fd_gaussian = FrechetDistance(Features(net, gaussian), ref_feat);
  q.fd_blur = FrechetDistance(Features(net, BoxBlur3x3(test.images.index_select(0, blur_idx))), ref_feat);

  const torch::Tensor nn_test_idx = perm.narrow(0, 0, std::min(n, test.size()));
  q.nn_median_samples = MedianNearestDistance(samples, train.images);
  q.nn_median_test = MedianNearestDistance(test.images.index_select(0, nn_test_idx), train.images);
  q.memorisation_ratio = q.nn_median_test > 0.0 ? q.nn_median_samples / q.nn_median_test : 0.0;
  return q;
}

}  // namespace vsdm::core
