#include "core/dsm_trainer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "core/beta_schedule.h"
#include "core/ou_kernel.h"

namespace vsdm::core {
namespace {
const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

// spec/vectors §2: A_sym, t = 0.5, x0 = (1, -2), eps = (0.3, -0.7).
TEST(DsmPairTest, MatchesVectorExample) {
  BetaSchedule s;
  torch::Tensor A = torch::tensor({0.15, 0.05, 0.05, -0.35}, kF64).reshape({2, 2});
  KernelMoments k = OuKernelFull(torch::eye(2, kF64) - 2 * A, torch::tensor({s.Integral(0.5)}, kF64));
  torch::Tensor linv_t = torch::linalg_solve_triangular(k.chol.transpose(1, 2), torch::eye(2, kF64).unsqueeze(0), true);
  DsmPair p = MakeDsmPair(torch::tensor({{1.0, -2.0}}, kF64), torch::tensor({{0.3, -0.7}}, kF64), k.mean, k.chol,
                          linv_t, torch::tensor({std::sqrt(s.Beta(0.5))}, kF64), A);
  auto near = [](const torch::Tensor& a, std::vector<double> b) {
    EXPECT_LT((a.reshape(-1) - torch::tensor(b, kF64)).abs().max().item<double>(), 1e-10) << a;
  };
  near(p.xt, {0.976251816379183, -1.5929375930477054});
  near(p.score, {-0.45127900112604213, 1.1338552473667016});
  near(p.policy_target, {-0.9190569297065229, 0.9358116761639141});
}

TEST(DsmTrainerTest, LossFallsOnAGaussian) {
  BetaSchedule s;
  KernelTable tab = BuildKernelTable(s, {0.001, 50}, torch::zeros({2, 2}, kF64), torch::Tensor());
  torch::manual_seed(0);
  DsmTrainerOptions o;
  o.lr = 3e-3;
  DsmTrainer tr(ScoreNet("mlp", 2, 64), o);
  torch::Generator g = at::make_generator<at::CPUGeneratorImpl>(1);
  auto batch = [&] { return torch::randn({512, 2}, g) * 0.5 + 1.0; };
  double first = 0, last = 0;
  for (int i = 0; i < 300; ++i) {
    double l = tr.ComputeGradients(batch(), g, tab).item<double>();
    tr.ApplyGradients();
    if (i < 20) first += l / 20;
    if (i >= 280) last += l / 20;
  }
  EXPECT_LT(last, first);
  EXPECT_EQ(tr.steps(), 300);
}

std::vector<torch::Tensor> Copies(ScoreNet& net) {
  std::vector<torch::Tensor> out;
  for (const auto& p : net->parameters()) out.push_back(p.detach().clone());
  return out;
}

// After step n the EMA is d_n * (EMA before) + (1 - d_n) * (weights after the step), with the
// warm-up d_n = min(ema, (1 + n) / (10 + n)) of DsmTrainerOptions::ema, and it starts as a copy
// of the initial weights.
void ExpectEmaSteps(double ema) {
  BetaSchedule s;
  KernelTable tab = BuildKernelTable(s, {0.001, 50}, torch::zeros({2, 2}, kF64), torch::Tensor());
  torch::manual_seed(0);
  DsmTrainerOptions o;
  o.lr = 3e-2;  // a step large enough that the weights move visibly
  o.ema = ema;
  DsmTrainer tr(ScoreNet("mlp", 2, 64), o);
  torch::Generator g = at::make_generator<at::CPUGeneratorImpl>(1);
  std::vector<torch::Tensor> prev = Copies(tr.ema_net());
  const std::vector<torch::Tensor> init = Copies(tr.net());
  ASSERT_EQ(prev.size(), init.size());
  for (size_t i = 0; i < init.size(); ++i) ASSERT_TRUE(torch::equal(prev[i], init[i])) << i;
  for (int64_t n = 1; n <= 3; ++n) {
    tr.ComputeGradients(torch::randn({256, 2}, g) * 0.5 + 1.0, g, tab);
    tr.ApplyGradients();
    ASSERT_EQ(tr.steps(), n);
    const double d = std::min(ema, (1.0 + n) / (10.0 + n));
    const std::vector<torch::Tensor> w = Copies(tr.net()), e = Copies(tr.ema_net());
    ASSERT_EQ(e.size(), w.size());
    double moved = 0;
    for (size_t i = 0; i < w.size(); ++i) {
      const torch::Tensor want = d * prev[i] + (1.0 - d) * w[i];
      EXPECT_TRUE(torch::allclose(e[i], want, /*rtol=*/1e-5, /*atol=*/1e-6))
          << "step " << n << ", parameter " << i << ": max |ema - want| = " << (e[i] - want).abs().max().item<double>();
      moved = std::max(moved, (w[i] - prev[i]).abs().max().item<double>());
    }
    EXPECT_GT(moved, 1e-3) << "the weights did not move at step " << n;  // else the check is void
    prev = e;
  }
}

TEST(DsmTrainerTest, EmaIsTheWarmedUpAverageOfInitAndWeights) {
  ExpectEmaSteps(0.99);  // the warm-up decay 2/11, 3/12, 4/13 applies
}

TEST(DsmTrainerTest, EmaUsesTheConfiguredDecayBelowTheWarmUp) {
  ExpectEmaSteps(0.1);  // min(0.1, warm-up) = 0.1 from the first step
}

}  // namespace
}  // namespace vsdm::core
