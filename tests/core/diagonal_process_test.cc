// The vector form of a diagonal A (core/diagonal_process.h) against the dense path with
// diagonal d x d matrices (core/diffusion.h, core/sampler.h, core/variational.h), in float64:
// the same kernels, loss, samplers, statistics and updates to 1e-10.
#include "core/diagonal_process.h"

#include <gtest/gtest.h>

#include <sstream>

#include <torch/script.h>

#include "core/dsm_trainer.h"
#include "core/torchscript_export.h"

namespace vsdm::core {
namespace {
const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);
constexpr double kTol = 1e-10;

double MaxDiff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

class DiagonalProcessTest : public ::testing::Test {
 protected:
  // d = 5 with D = 1 - 2a = [1, 0.3, 2.2, -0.5, 0.6]: negative, small and large rates.
  torch::Tensor a_ = torch::tensor({0.0, 0.35, -0.6, 0.75, 0.2}, kF64);
  torch::Tensor m2_ = torch::tensor({1.0, 0.5, 2.0, 0.3, 1.2}, kF64);
  BetaSchedule sched_;
  TimeGrid grid_{0.001, 12};
  KernelTable dense_ = BuildKernelTable(sched_, grid_, a_, torch::diag(m2_), torch::kFloat64);
  DiagonalKernelTable vec_ = BuildDiagonalKernelTable(sched_, grid_, a_, m2_, torch::kFloat64);

  // A nonlinear elementwise score, the same for both paths.
  static torch::Tensor Score(const torch::Tensor& x, int64_t k) {
    return -x * (0.5 + 0.1 * static_cast<double>(k)) + torch::sin(x);
  }
};

TEST_F(DiagonalProcessTest, KernelTablesAgreeWithTheDenseDiagonalMatrices) {
  EXPECT_LT(MaxDiff(dense_.mean.diagonal(0, 1, 2), vec_.mean), kTol);
  EXPECT_LT(MaxDiff(dense_.chol.diagonal(0, 1, 2), vec_.std), kTol);
  EXPECT_LT(MaxDiff(dense_.chol_inv_t.diagonal(0, 1, 2), vec_.inv_std), kTol);
  EXPECT_LT(MaxDiff(dense_.input_scale, vec_.input_scale), kTol);
  EXPECT_LT(MaxDiff(dense_.prior_cov64.diagonal(), vec_.prior_var64), kTol);
  EXPECT_LT(MaxDiff(dense_.D.diagonal(), vec_.dvec), kTol);
  EXPECT_LT(MaxDiff(dense_.beta, vec_.beta), kTol);
  // Only vectors: nothing of size d x d.
  EXPECT_EQ(vec_.mean.sizes(), (std::vector<int64_t>{13, 5}));
  EXPECT_EQ(vec_.a.dim(), 1);
}

TEST_F(DiagonalProcessTest, DsmLossEqualsTheDensePathInBothParameterisations) {
  torch::manual_seed(3);
  ScoreNet net("mlp", 5, 16);
  net->to(torch::kFloat64);
  torch::Tensor x0 = torch::randn({6, 5}, kF64);
  torch::Tensor idx = torch::tensor({0, 3, 12, 7, 7, 1, 5, 9, 2, 11, 4, 6}, torch::kLong);
  torch::Tensor eps = torch::randn({12, 5}, kF64);
  for (Parameterization p : {Parameterization::kPolicy, Parameterization::kEps}) {
    const double want = DsmLoss(net, p, 2, x0, idx, eps, dense_).item<double>();
    const double got = DiagonalDsmLoss(net, p, 2, x0, idx, eps, vec_).item<double>();
    EXPECT_NEAR(got, want, kTol * std::abs(want));
  }
}

TEST_F(DiagonalProcessTest, SamplersEqualTheDensePath) {
  torch::Tensor x_T = torch::randn({7, 5}, kF64);
  for (Solver s : {Solver::kEuler, Solver::kHeun, Solver::kSde}) {
    torch::Generator g1 = at::make_generator<at::CPUGeneratorImpl>(11),
                     g2 = at::make_generator<at::CPUGeneratorImpl>(11);
    SampleResult want = Sample(dense_, Score, x_T, s, g1, true);
    SampleResult got = DiagonalSample(vec_, Score, x_T, s, g2, true);
    EXPECT_LT(MaxDiff(got.x, want.x), kTol) << static_cast<int>(s);
    EXPECT_LT(MaxDiff(got.trajectory, want.trajectory), kTol);
  }
}

TEST_F(DiagonalProcessTest, StatisticsAreTheDiagonalsOfTheDenseStatistics) {
  torch::Tensor x_T = torch::randn({7, 5}, kF64);
  torch::Generator g1 = at::make_generator<at::CPUGeneratorImpl>(5), g2 = at::make_generator<at::CPUGeneratorImpl>(5);
  VariationalStats want = ComputeVariationalStats(dense_, Score, x_T, 3, g1);
  VariationalStats got = DiagonalVariationalStats(vec_, Score, x_T, 3, g2);
  ASSERT_EQ(got.sxx.sizes(), (std::vector<int64_t>{3, 5}));
  EXPECT_LT(MaxDiff(got.sxx, want.sxx.diagonal(0, 1, 2)), kTol * want.sxx.abs().max().item<double>());
  EXPECT_LT(MaxDiff(got.szx, want.szx.diagonal(0, 1, 2)), kTol * want.szx.abs().max().item<double>());
  EXPECT_LT(MaxDiff(got.sbeta, want.sbeta), kTol);
  EXPECT_LT(MaxDiff(got.count, want.count), kTol);
  EXPECT_DOUBLE_EQ(got.dt, want.dt);

  // The objective, its minimiser and every update rule, dense-diagonal vs vector.
  VariationalOptions o;
  o.diagonal = true;
  o.d_min = 0.05;
  auto dense_obj = MakeLinearScoreObjective(o);
  auto vec_obj = MakeDiagonalObjective(o.interact, o.d_min);
  torch::Tensor A = torch::diag(a_);
  EXPECT_LT(MaxDiff(vec_obj->Gradient(got, a_, -1), dense_obj->Gradient(want, A, -1).diagonal()), kTol);
  EXPECT_LT(MaxDiff(vec_obj->Gradient(got, a_, 1), dense_obj->Gradient(want, A, 1).diagonal()), kTol);
  EXPECT_LT(MaxDiff(vec_obj->Minimizer(got), dense_obj->Minimizer(want).diagonal()),
            kTol * (1 + dense_obj->Minimizer(want).abs().max().item<double>()));
  for (const char* rule : {"exact", "sa", "adam"}) {
    o.update = rule;
    o.lr = std::string(rule) == "adam" ? 0.01 : 0.5;
    o.adam_steps = 5;
    VariationalUpdater dense_up(torch::zeros({5, 5}, kF64), o, MakeLinearScoreObjective(o));
    VariationalUpdater vec_up(torch::zeros({5}, kF64), o, MakeDiagonalObjective(o.interact, o.d_min));
    UpdateInfo di = dense_up.Apply(want), vi = vec_up.Apply(got);
    EXPECT_LT(MaxDiff(vec_up.A(), dense_up.A().diagonal()), kTol) << rule;
    EXPECT_EQ(vi.projected, di.projected) << rule;
    EXPECT_NEAR(vi.min_eig_sym_d, di.min_eig_sym_d, kTol) << rule;
  }
}

TEST_F(DiagonalProcessTest, ProjectionKeepsEveryRateAboveTheFloorLikeTheDensePath) {
  torch::Tensor a = torch::tensor({0.1, 0.6, 0.49, -1.0, 0.8}, kF64);  // D = [0.8, -0.2, 0.02, 3, -0.6]
  torch::Tensor A = torch::diag(a);
  double dense_floor = 0, vec_floor = 0;
  const bool dense_bind = ProjectPositiveDefinite(A, 0.05, true, &dense_floor);
  const bool vec_bind = MakeDiagonalObjective(1.0, 0.05)->Project(a, &vec_floor);
  EXPECT_TRUE(vec_bind && dense_bind);
  EXPECT_LT(MaxDiff(a, A.diagonal()), kTol);
  EXPECT_DOUBLE_EQ(vec_floor, dense_floor);
  EXPECT_GE((1.0 - 2.0 * a).min().item<double>(), 0.05 - 1e-15);
}

TEST(DiagonalFamilyTest, ImageSizedProcessHoldsOnlyVectorsAndExportsImages) {
  DiagonalProcessOptions o;
  o.image = {1, 4, 4};
  o.second_moment = torch::full({16}, 0.5, kF64);
  auto family = MakeDiagonalVsdmFamily(16, o);
  torch::Tensor a = family->InitialParam();
  ASSERT_EQ(a.sizes(), (std::vector<int64_t>{16}));
  a.fill_(0.2);
  auto process = family->Make(a, TimeGrid{0.001, 20});
  for (const auto& [name, value] : process->Describe()) EXPECT_EQ(value.dim(), 1) << name;
  torch::manual_seed(0);
  ScoreNet net("mlp", 16, 32);
  torch::Generator g = at::make_generator<at::CPUGeneratorImpl>(1);
  SampleResult r = process->Sample(net, process->SamplePrior(3, true, g), Solver::kHeun, g, false);
  EXPECT_EQ(r.x.sizes(), (std::vector<int64_t>{3, 16}));

  std::string path = ::testing::TempDir() + "/diag_model.pt";
  absl::Status exported = process->Export(path, net, "vsdm");
  ASSERT_TRUE(exported.ok()) << exported;
  torch::jit::Module m = torch::jit::load(path);
  torch::Tensor x = torch::randn({4, 1, 4, 4});
  torch::Tensor t = torch::full({4}, process->grid().At(20), torch::kFloat32);
  torch::Tensor s = m.forward({x, t}).toTensor();
  EXPECT_EQ(s.sizes(), x.sizes());
  // At a grid time the export computes the model's own score.
  DiagonalKernelTable tab = BuildDiagonalKernelTable(BetaSchedule{}, TimeGrid{0.001, 20}, a, o.second_moment);
  DiagonalScoreModel model(net, Parameterization::kEps, tab);
  EXPECT_LT(MaxDiff(s.reshape({4, 16}), model.ScoreAt(x.reshape({4, 16}), 20)), 1e-4);
  torch::Tensor img = m.get_method("sample")({int64_t{5}, int64_t{10}}).toTensor();
  EXPECT_EQ(img.sizes(), (std::vector<int64_t>{5, 1, 4, 4}));
  EXPECT_GE(img.min().item<double>(), 0.0);
  EXPECT_LE(img.max().item<double>(), 1.0);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace vsdm::core
