#include "core/dsm_trainer.h"

#include <gtest/gtest.h>

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
  DsmPair p = MakeDsmPair(torch::tensor({{1.0, -2.0}}, kF64), torch::tensor({{0.3, -0.7}}, kF64), k.mean,
                          k.chol, linv_t, torch::tensor({std::sqrt(s.Beta(0.5))}, kF64), A);
  auto near = [](const torch::Tensor& a, std::vector<double> b) {
    EXPECT_LT((a.reshape(-1) - torch::tensor(b, kF64)).abs().max().item<double>(), 1e-10) << a;
  };
  near(p.xt, {0.976251816379183, -1.5929375930477054});
  near(p.score, {-0.45127900112604213, 1.1338552473667016});
  near(p.policy_target, {-0.9190569297065229, 0.9358116761639141});
}

TEST(DsmTrainerTest, LossFallsOnAGaussianAndEmaTracksWeights) {
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
    double l = tr.ComputeGradients(batch(), g, tab);
    tr.ApplyGradients();
    if (i < 20) first += l / 20;
    if (i >= 280) last += l / 20;
  }
  EXPECT_LT(last, first);
  EXPECT_EQ(tr.steps(), 300);
  // The EMA differs from the live weights but stays close to them.
  auto p = tr.net()->parameters()[0], e = tr.ema_net()->parameters()[0];
  EXPECT_GT((p - e).abs().max().item<float>(), 0.0f);
  EXPECT_LT((p - e).abs().max().item<float>(), 0.5f);
}

}  // namespace
}  // namespace vsdm::core
