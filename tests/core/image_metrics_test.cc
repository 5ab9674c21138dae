#include "core/image_metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/core/digits_fixture.h"

#include "core/image_data.h"

namespace vsdm::core {
namespace {

torch::Generator Gen(uint64_t seed) { return torch::make_generator<torch::CPUGeneratorImpl>(seed); }

// n draws of N(mu, L L^T) in float64.
torch::Tensor Draw(const torch::Tensor& mu, const torch::Tensor& l, int64_t n, uint64_t seed) {
  torch::Generator g = Gen(seed);
  return mu.unsqueeze(0) + torch::randn({n, mu.size(0)}, g, torch::kFloat64).matmul(l.t());
}

torch::Tensor Cov(const torch::Tensor& x) {
  torch::Tensor c = x - x.mean(0, true);
  return c.t().matmul(c) / static_cast<double>(x.size(0) - 1);
}

// A random lower-triangular factor with a positive diagonal (a non-diagonal covariance).
torch::Tensor RandomFactor(int64_t d, uint64_t seed) {
  torch::Generator g = Gen(seed);
  return torch::tril(torch::randn({d, d}, g, torch::kFloat64) * 0.5) + torch::eye(d, torch::kFloat64);
}

TEST(ImageMetricsTest, FrechetDistanceOfASetWithItselfIsZero) {
  torch::Tensor a = Draw(torch::zeros({16}, torch::kFloat64), RandomFactor(16, 1), 500, 2).to(torch::kFloat32);
  EXPECT_NEAR(FrechetDistance(a, a), 0.0, 1e-8);
}

TEST(ImageMetricsTest, FrechetDistanceMatchesClosedFormForDiagonalGaussians) {
  // |mu1 - mu2|^2 + sum (sqrt(s1) - sqrt(s2))^2 for diagonal covariances s1, s2.
  const torch::Tensor mu1 = torch::tensor({0.0, 1.0, 0.0, -1.0}, torch::kFloat64);
  const torch::Tensor mu2 = torch::tensor({0.5, 1.0, 2.0, -1.0}, torch::kFloat64);
  const torch::Tensor s1 = torch::tensor({1.0, 4.0, 0.25, 1.0}, torch::kFloat64);
  const torch::Tensor s2 = torch::tensor({1.0, 1.0, 1.0, 9.0}, torch::kFloat64);
  const double expected =
      (mu1 - mu2).pow(2).sum().item<double>() + (s1.sqrt() - s2.sqrt()).pow(2).sum().item<double>();  // 8.5
  ASSERT_NEAR(expected, 0.25 + 4.0 + 1.0 + 0.25 + 4.0, 1e-12);
  const torch::Tensor a = Draw(mu1, torch::diag(s1.sqrt()), 40000, 3);
  const torch::Tensor b = Draw(mu2, torch::diag(s2.sqrt()), 40000, 4);
  EXPECT_NEAR(FrechetDistance(a, b), expected, 0.15);
  // Equal covariances: a pure shift of the same set is exactly |shift|^2.
  const torch::Tensor shift = torch::tensor({1.0, -2.0, 0.5, 0.0}, torch::kFloat64);
  EXPECT_NEAR(FrechetDistance(a, a + shift), 5.25, 1e-9);
}

TEST(ImageMetricsTest, FrechetDistanceMatchesAnalytic2x2OnFittedMoments) {
  // For 2x2 SPD A, B: tr sqrt(A B) = sqrt(tr(A B) + 2 sqrt(det A det B)) (A B is similar to the
  // PSD A^1/2 B A^1/2, whose square root has trace sqrt(tr + 2 sqrt(det))).
  const torch::Tensor a = Draw(torch::tensor({0.3, -0.2}, torch::kFloat64), RandomFactor(2, 5), 300, 6);
  const torch::Tensor b = Draw(torch::tensor({-1.0, 0.7}, torch::kFloat64),
                               torch::tensor({{2.0, 0.0}, {1.5, 0.3}}, torch::kFloat64), 400, 7);
  const torch::Tensor ca = Cov(a), cb = Cov(b);
  ASSERT_GT(std::abs(ca[0][1].item<double>()), 0.05);  // really non-diagonal
  ASSERT_GT(std::abs(cb[0][1].item<double>()), 0.5);
  const double tr_sqrt = std::sqrt(ca.matmul(cb).trace().item<double>() +
                                   2.0 * std::sqrt(torch::det(ca).item<double>() * torch::det(cb).item<double>()));
  const double expected = (a.mean(0) - b.mean(0)).pow(2).sum().item<double>() + ca.trace().item<double>() +
                          cb.trace().item<double>() - 2.0 * tr_sqrt;
  EXPECT_NEAR(FrechetDistance(a, b), expected, 1e-10 * expected);
}

TEST(ImageMetricsTest, FrechetDistanceMatchesACholeskyRouteInTwelveDimensions) {
  // tr sqrt(S_a S_b) from the eigenvalues of L^T S_b L (S_a = L L^T; similar to S_a S_b).
  const torch::Tensor a = Draw(torch::zeros({12}, torch::kFloat64), RandomFactor(12, 8), 200, 9);
  const torch::Tensor b = Draw(torch::full({12}, 0.1, torch::kFloat64), RandomFactor(12, 10), 300, 11);
  const torch::Tensor ca = Cov(a), cb = Cov(b);
  const torch::Tensor l = torch::linalg_cholesky(ca);
  const double tr_sqrt = torch::linalg_eigvalsh(l.t().matmul(cb).matmul(l)).sqrt().sum().item<double>();
  const double expected = (a.mean(0) - b.mean(0)).pow(2).sum().item<double>() + ca.trace().item<double>() +
                          cb.trace().item<double>() - 2.0 * tr_sqrt;
  EXPECT_NEAR(FrechetDistance(a, b), expected, 1e-9 * expected);
}

TEST(ImageMetricsTest, FrechetDistanceIsSymmetric) {
  const torch::Tensor a = Draw(torch::zeros({10}, torch::kFloat64), RandomFactor(10, 12), 150, 13);
  const torch::Tensor b = Draw(torch::ones({10}, torch::kFloat64), RandomFactor(10, 14), 250, 15);
  const double ab = FrechetDistance(a, b), ba = FrechetDistance(b, a);
  EXPECT_GT(ab, 1.0);
  EXPECT_NEAR(ab, ba, 1e-10 * ab);
}

TEST(ImageMetricsTest, BoxBlurSpreadsADeltaOverA3x3Patch) {
  torch::Tensor x = torch::zeros({1, 2, 7, 7});
  x[0][0][3][4] = 1.0;
  const torch::Tensor y = BoxBlur3x3(x);
  ASSERT_EQ(y.sizes(), x.sizes());
  torch::Tensor expected = torch::zeros({1, 2, 7, 7});
  expected.index_put_({0, 0, torch::indexing::Slice(2, 5), torch::indexing::Slice(3, 6)}, 1.0 / 9.0);
  EXPECT_TRUE(torch::allclose(y, expected, 0.0, 1e-7));
  EXPECT_EQ(y[0][1].abs().max().item<float>(), 0.0f);  // channels are filtered separately
}

TEST(ImageMetricsTest, BoxBlurKeepsAConstantImageAtTheBorders) {
  // Replicate padding: zero padding would give 4/9 of the value in the corners.
  const torch::Tensor x = torch::full({2, 3, 5, 6}, -0.75);
  EXPECT_TRUE(torch::allclose(BoxBlur3x3(x), x, 0.0, 1e-6));
  // A horizontal ramp stays a ramp inside and replicates at the left and right edges.
  const torch::Tensor ramp = torch::arange(6, torch::kFloat32).repeat({1, 1, 4, 1});
  const torch::Tensor y = BoxBlur3x3(ramp);
  EXPECT_NEAR(y[0][0][0][0].item<float>(), 1.0f / 3.0f, 1e-6);  // (0 + 0 + 1) / 3
  EXPECT_NEAR(y[0][0][2][3].item<float>(), 3.0f, 1e-6);
  EXPECT_NEAR(y[0][0][3][5].item<float>(), 14.0f / 3.0f, 1e-6);  // (4 + 5 + 5) / 3
}

TEST(ImageMetricsTest, GaussianBaselineMatchesTheDataMoments) {
  // 4-pixel "images" with correlated values well inside [-1, 1] (so the clamp does not bite).
  const torch::Tensor mu = torch::tensor({0.1, -0.2, 0.0, 0.3}, torch::kFloat64);
  const torch::Tensor l = RandomFactor(4, 16) * 0.1;
  const torch::Tensor data = Draw(mu, l, 5000, 17).to(torch::kFloat32).reshape({5000, 1, 2, 2});
  torch::Generator g = Gen(18);
  const torch::Tensor draws = GaussianImageBaseline(data, 20000, g);
  ASSERT_EQ(draws.sizes(), (std::vector<int64_t>{20000, 1, 2, 2}));
  ASSERT_EQ(draws.scalar_type(), torch::kFloat32);
  const torch::Tensor x = data.reshape({5000, 4}).to(torch::kFloat64),
                      y = draws.reshape({20000, 4}).to(torch::kFloat64);
  EXPECT_LT((x.mean(0) - y.mean(0)).abs().max().item<double>(), 0.005);
  EXPECT_LT((Cov(x) - Cov(y)).abs().max().item<double>(), 0.0015);  // entries ~0.01..0.03
  EXPECT_GT(Cov(y)[1][0].item<double>(), 0.002);                    // correlations are kept
  // Deterministic in the generator.
  torch::Generator g2 = Gen(18);
  EXPECT_TRUE(torch::equal(GaussianImageBaseline(data, 20000, g2), draws));
}

TEST(ImageMetricsTest, GaussianBaselineClampsAndAllowsConstantPixels) {
  // Pixel 0 is constant -1 (zero variance: needs the jitter); pixel 1 spreads past [-1, 1].
  torch::Generator g = Gen(19);
  torch::Tensor data = torch::full({500, 1, 1, 2}, -1.0);
  data.select(3, 1).copy_(torch::randn({500, 1, 1}, g) * 2.0);
  const torch::Tensor draws = GaussianImageBaseline(data, 1000, g);
  EXPECT_FALSE(torch::isnan(draws).any().item<bool>());
  EXPECT_LE(draws.max().item<float>(), 1.0f);
  EXPECT_GE(draws.min().item<float>(), -1.0f);
  EXPECT_NEAR(draws.select(3, 0).mean().item<float>(), -1.0f, 1e-3);
  EXPECT_GT(draws.select(3, 1).eq(1.0f).to(torch::kFloat32).mean().item<float>(), 0.2f);  // clamped mass
}

// The median over rows of a of the distance to the nearest row of b, by explicit loops.
double BruteMedianNearest(const torch::Tensor& a, const torch::Tensor& b) {
  auto x = a.reshape({a.size(0), -1}).to(torch::kFloat64).contiguous();
  auto y = b.reshape({b.size(0), -1}).to(torch::kFloat64).contiguous();
  auto xa = x.accessor<double, 2>(), ya = y.accessor<double, 2>();
  std::vector<double> nearest;
  for (int64_t i = 0; i < x.size(0); ++i) {
    double best = std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < y.size(0); ++j) {
      double s = 0.0;
      for (int64_t k = 0; k < x.size(1); ++k) s += (xa[i][k] - ya[j][k]) * (xa[i][k] - ya[j][k]);
      best = std::min(best, std::sqrt(s));
    }
    nearest.push_back(best);
  }
  std::sort(nearest.begin(), nearest.end());
  const size_t n = nearest.size();
  return n % 2 == 1 ? nearest[n / 2] : 0.5 * (nearest[n / 2 - 1] + nearest[n / 2]);
}

TEST(ImageMetricsTest, MedianNearestDistanceEqualsBruteForce) {
  torch::Generator g = Gen(20);
  const torch::Tensor b = torch::rand({300, 1, 3, 3}, g) * 2 - 1;
  for (int64_t n : {1, 2, 255, 600, 601}) {  // odd and even, across the 256-row blocks
    const torch::Tensor a = torch::rand({n, 1, 3, 3}, g) * 2 - 1;
    EXPECT_NEAR(MedianNearestDistance(a, b), BruteMedianNearest(a, b), 1e-9) << n;
  }
  // Rows of b itself are at distance 0 (the clamp keeps rounding from giving NaN).
  EXPECT_NEAR(MedianNearestDistance(b.narrow(0, 10, 50), b), 0.0, 1e-6);
}

ImageData LoadDigits() { return LoadVendoredDigits(); }

TEST(ImageMetricsTest, EvaluateImageQualityOrdersTheReferencePoints) {
  const ImageData data = LoadDigits();
  FeatureNetOptions o;
  o.epochs = 8;
  o.batch = 64;
  o.lr = 3e-3;
  auto net = TrainFeatureNet(data, o, nullptr);
  ASSERT_TRUE(net.ok()) << net.status();

  // Samples = 200 training images: the floor's kind of figure, and memorised by definition.
  torch::Generator pick = Gen(21);
  const torch::Tensor train_samples =
      data.train.images.index_select(0, torch::randperm(data.train.size(), pick, torch::kLong).narrow(0, 0, 200));
  torch::Generator g = Gen(22);
  const ImageQuality q = EvaluateImageQuality(*net, train_samples, data, g);
  EXPECT_LT(q.fd_floor, q.fd_gaussian);
  EXPECT_LT(q.fd_floor, q.fd_blur);
  EXPECT_LT(q.fd, q.fd_gaussian);
  EXPECT_LT(q.fd, 2.0 * q.fd_floor);
  EXPECT_NEAR(q.nn_median_samples, 0.0, 1e-6);
  EXPECT_GT(q.nn_median_test, 1.0);
  EXPECT_NEAR(q.memorisation_ratio, 0.0, 1e-6);
  double sum = 0.0;
  for (double h : q.test.histogram) sum += h;
  EXPECT_NEAR(sum, 1.0, 1e-12);
  EXPECT_LT(q.test.tv_from_uniform, 0.1);
  EXPECT_GT(q.samples.confident_fraction, 0.5);

  // Deterministic in the generator.
  torch::Generator g2 = Gen(22);
  const ImageQuality again = EvaluateImageQuality(*net, train_samples, data, g2);
  EXPECT_EQ(again.fd, q.fd);
  EXPECT_EQ(again.fd_floor, q.fd_floor);
  EXPECT_EQ(again.fd_gaussian, q.fd_gaussian);
  EXPECT_EQ(again.fd_blur, q.fd_blur);

  // Every FD is against the reference half (the second half of the first permutation drawn from
  // the generator): that half as the samples is at distance 0.
  torch::Generator g3 = Gen(23);
  const int64_t t = data.test.size();
  const torch::Tensor ref =
      data.test.images.index_select(0, torch::randperm(t, g3, torch::kLong).narrow(0, t / 2, t - t / 2));
  torch::Generator g4 = Gen(23);
  const ImageQuality self = EvaluateImageQuality(*net, ref, data, g4);
  EXPECT_NEAR(self.fd, 0.0, 1e-6);
  EXPECT_GT(self.memorisation_ratio, 0.8);  // held-out images are as far from train as test is
  EXPECT_LT(self.memorisation_ratio, 1.25);
}

}  // namespace
}  // namespace vsdm::core
