// With the exact score of a Gaussian target, every sampler recovers its mean and covariance.
#include "core/sampler.h"

#include <gtest/gtest.h>

#include "core/ou_kernel.h"

namespace vsdm::core {
namespace {
const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

class GaussianTargetTest : public ::testing::TestWithParam<Solver> {};

TEST_P(GaussianTargetTest, RecoversMeanAndCovariance) {
  BetaSchedule s;
  TimeGrid grid{0.001, 200};
  torch::Tensor A = torch::tensor({-0.3, 0.1, 0.1, 0.2}, kF64).reshape({2, 2});
  KernelTable tab = BuildKernelTable(s, grid, A, torch::Tensor());
  // Target: the `gaussian` toy law N([-8, 2], [[1, 1], [1, 5]]).
  torch::Tensor mu = torch::tensor({-8.0, 2.0}, kF64);
  torch::Tensor C0 = torch::tensor({1.0, 1.0, 1.0, 5.0}, kF64).reshape({2, 2});
  std::vector<double> bs;
  for (int64_t k = 0; k <= grid.steps; ++k) bs.push_back(s.Integral(grid.At(k)));
  KernelMoments km = OuKernelFull(torch::eye(2, kF64) - 2 * A, torch::tensor(bs, kF64));
  torch::Tensor mean = torch::matmul(km.mean, mu).to(torch::kFloat32);
  torch::Tensor cov = torch::matmul(torch::matmul(km.mean, C0), km.mean.transpose(1, 2)) + km.cov;
  torch::Tensor prec = torch::linalg_inv(cov).to(torch::kFloat32);
  ScoreFn score = [&](const torch::Tensor& x, int64_t k) { return -torch::matmul(x - mean[k], prec[k].t()); };

  torch::Generator g = at::make_generator<at::CPUGeneratorImpl>(11);
  const int64_t n = 40000;
  torch::Tensor Lt = torch::linalg_cholesky(cov[-1]).to(torch::kFloat32);
  torch::Tensor xT = torch::matmul(torch::randn({n, 2}, g), Lt.t()) + mean[-1];
  SampleResult r = Sample(tab, score, xT, GetParam(), g, /*keep_trajectory=*/true);
  EXPECT_EQ(r.trajectory.size(0), grid.steps + 1);
  torch::Tensor x = r.x.to(torch::kFloat64);
  torch::Tensor m = x.mean(0);
  torch::Tensor xc = x - m;
  torch::Tensor c = torch::matmul(xc.t(), xc) / (n - 1);
  // Tolerances: Monte Carlo (n = 40000: mean s.e. ~0.011, cov s.e. ~3%) plus O(h) bias of the
  // 200-step schemes; stated per quantity.
  EXPECT_LT((m - mu).abs().max().item<double>(), 0.06) << m;
  EXPECT_LT(((c - C0).abs() / C0.abs().clamp_min(1.0)).max().item<double>(), 0.08) << c;
}

INSTANTIATE_TEST_SUITE_P(AllSolvers, GaussianTargetTest,
                         ::testing::Values(Solver::kHeun, Solver::kEuler, Solver::kSde));

TEST(SamplerTest, PriorHasSigmaT) {
  BetaSchedule s;
  torch::Tensor A = torch::tensor({-0.3, 0.0, 0.0, 0.2}, kF64).reshape({2, 2});
  KernelTable tab = BuildKernelTable(s, {0.001, 10}, A, torch::Tensor());
  torch::Generator g = at::make_generator<at::CPUGeneratorImpl>(5);
  torch::Tensor x = SamplePrior(tab, 100000, true, g).to(torch::kFloat64);
  torch::Tensor c = torch::matmul(x.t(), x) / x.size(0);
  EXPECT_LT((c - tab.prior_cov64).abs().max().item<double>(), 0.03);
  torch::Tensor z = SamplePrior(tab, 100000, false, g).to(torch::kFloat64);
  EXPECT_LT((torch::matmul(z.t(), z) / z.size(0) - torch::eye(2, kF64)).abs().max().item<double>(), 0.03);
}

}  // namespace
}  // namespace vsdm::core
