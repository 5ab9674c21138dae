// The forecasting process's conditional prior (variational.prior: conditional): the regression
// recovers a planted linear map and its noise, and the sampler starts from N(M_T mu(c), Sigma_T +
// M_T Sigma_r M_T^T) for the condition it is given, where the plain prior starts at mean 0.
#include "core/forecast_process.h"

#include <gtest/gtest.h>

#include "core/diffusion.h"
#include "core/score_net.h"

namespace vsdm::core {
namespace {
constexpr int64_t kH = 2, kD = 2, kC = 3, kF = 2;
const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

// Packed windows [n, H*D + C*D + F] whose target is 0.8 x the context's last step + 0.5 x its
// mean - 0.3 x the first covariate + 0.2 (+0.1 more on the second horizon row), plus N(0, 0.1^2) noise.
torch::Tensor PlantedWindows(int64_t n, torch::Tensor* noiseless) {
  torch::manual_seed(3);
  torch::Tensor cond = torch::randn({n, kC * kD + kF}, kF64);
  torch::Tensor ctx = cond.slice(1, 0, kC * kD).reshape({n, kC, kD});
  torch::Tensor row =
      0.8 * ctx.select(1, kC - 1) + 0.5 * ctx.mean(1) - 0.3 * cond.select(1, kC * kD).unsqueeze(1) + 0.2;
  *noiseless = torch::stack({row, row + 0.1}, 1).reshape({n, kH * kD});
  torch::Tensor target = *noiseless + 0.1 * torch::randn({n, kH * kD}, kF64);
  return torch::cat({target, cond}, 1).to(torch::kFloat32);
}

ForecastProcessOptions Options() {
  ForecastProcessOptions o;
  o.schedule = {0.1, 10.0, 1.0};
  o.horizon = kH;
  o.context = kC;
  o.series = kD;
  o.covariates = kF;
  return o;
}

TEST(ForecastProcessTest, TheConditionalPriorRecoversAPlantedLinearMap) {
  torch::Tensor noiseless;
  torch::Tensor w = PlantedWindows(20000, &noiseless);
  ForecastProcessOptions o = Options();
  FitConditionalPrior(w, o);
  ASSERT_EQ(o.prior_weight.sizes(), (std::vector<int64_t>{2 * kD + kF + 1, kH * kD}));
  torch::Tensor fit = torch::matmul(PriorFeatures(w.slice(1, kH * kD).to(torch::kFloat64), kC, kD), o.prior_weight);
  EXPECT_LT((fit - noiseless).abs().max().item<double>(), 0.02);
  // The residual covariance is the planted noise's, 0.01 I.
  EXPECT_NEAR(o.residual_cov[0][0].item<double>(), 0.01, 0.0015);
  EXPECT_NEAR(o.residual_cov[1][1].item<double>(), 0.01, 0.0015);
  EXPECT_NEAR(o.residual_cov[0][1].item<double>(), 0.0, 0.0015);
}

TEST(ForecastProcessTest, TheSamplerStartsAtTheConditionsPriorMean) {
  torch::Tensor noiseless;
  torch::Tensor w = PlantedWindows(4000, &noiseless);
  ForecastProcessOptions plain_o = Options();
  plain_o.train_condition = w.slice(1, kH * kD).contiguous();
  ForecastProcessOptions cond_o = plain_o;
  FitConditionalPrior(w, cond_o);
  const TimeGrid grid{1e-3, 2};
  torch::Tensor A = torch::tensor({0.3, 0.05, -0.02, 0.2}, kF64).reshape({kD, kD});
  const KernelTable tab = BuildKernelTable(plain_o.schedule, grid, A, torch::Tensor());
  const torch::Tensor m_t = tab.mean[tab.size() - 1].to(torch::kFloat64);
  auto plain = MakeForecastFamily(plain_o)->Make(A, grid);
  auto conditional = MakeForecastFamily(cond_o)->Make(A, grid);

  // Sigma_T + M_T Sigma_r M_T^T, to float64 rounding.
  torch::Tensor p0 = plain->Describe()[2].second, p1 = conditional->Describe()[2].second;
  torch::Tensor want = p0 + torch::matmul(torch::matmul(m_t, cond_o.residual_cov), m_t.t());
  EXPECT_LT((p1 - want).abs().max().item<double>(), 1e-10);
  // metrics.json keeps Sigma_T and Sigma_r beside the start covariance: only the conditional one has them
  const auto described = conditional->Describe();
  ASSERT_EQ(described.size(), 5u);
  EXPECT_EQ(described[3].first, "terminal_cov");
  EXPECT_LT((described[3].second - p0).abs().max().item<double>(), 1e-12);
  EXPECT_EQ(described[4].first, "prior_residual_cov");
  EXPECT_LT((described[4].second - cond_o.residual_cov).abs().max().item<double>(), 1e-12);
  EXPECT_EQ(plain->Describe().size(), 3u);

  ScoreNetOptions no;
  no.arch = "forecast";
  no.dim = (kH + kC) * kD + kF;
  no.out_dim = kH * kD;
  no.hidden = 16;
  no.forecast = {kH, kC, kD, kF, 4, 0.0};
  ScoreNet net(no);
  const int64_t n = 20000;
  torch::Tensor c = w.slice(1, kH * kD).slice(0, 7, 8).repeat({n, 1});
  torch::Tensor mu = torch::matmul(PriorFeatures(c.slice(0, 0, 1).to(torch::kFloat64), kC, kD), cond_o.prior_weight);
  torch::Tensor want_mean = torch::matmul(mu.reshape({kH, kD}), m_t.t()).reshape({kH * kD});
  ASSERT_GT(want_mean.abs().max().item<double>(), 0.1);  // the test can tell a shift from none
  auto start = [&](const Process& p) {
    torch::Generator gen = at::make_generator<at::CPUGeneratorImpl>(11);
    torch::Tensor prior = WithCondition(p.SamplePrior(n, true, gen), c);
    return p.Sample(net, prior, Solver::kEuler, gen, true).trajectory[0].to(torch::kFloat64);  // the state at T
  };
  torch::Tensor x1 = start(*conditional), x0 = start(*plain);
  EXPECT_LT((x1.mean(0) - want_mean).abs().max().item<double>(), 0.03);
  EXPECT_LT(x0.mean(0).abs().max().item<double>(), 0.03);
  // Each horizon row's covariance is the conditional prior's.
  torch::Tensor r = (x1 - x1.mean(0)).reshape({n, kH, kD}).select(1, 1);
  EXPECT_LT((torch::matmul(r.t(), r) / (n - 1) - p1).abs().max().item<double>(), 0.04);
}

}  // namespace
}  // namespace vsdm::core
