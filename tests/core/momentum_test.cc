// VSMD (spec §5): kernels against official-code-notes §8.4 and our own float64 derivations,
// the critical-damping transform, the prior's x-v correlation, the velocity-score target and
// the variational objective on c.
#include "core/momentum.h"

#include <cmath>

#include <gtest/gtest.h>

#include "core/process.h"

namespace vsdm::core {
namespace {

const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

torch::Tensor Mat(std::initializer_list<double> v) {
  return torch::tensor(std::vector<double>(v), kF64).reshape({2, 2});
}
double MaxAbs(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

// official-code-notes §8.4 / vectors/testvec-output.txt (beta 10, gamma 2, u 1).
struct Vector {
  double c, t;
  torch::Tensor mean, cov, chol;
};
std::vector<Vector> SpecVectors() {
  return {
      {0.0, 0.1, Mat({0.9097959895689501, 0.3032653298563167, -0.30326532985631666, 0.3032653298563168}),
       Mat({0.0803013970713942, 0.18393972058572122, 0.18393972058572117, 0.816060279414279}),
       Mat({0.28337501137431687, 0.0, 0.6491035313722521, 0.6282713466125531})},
      {0.0, 0.5, Mat({0.2872974951836456, 0.205212496559747, -0.20521249655974683, -0.12312749793584822}),
       Mat({0.8753479805169242, 0.0842243374885642, 0.08422433748857462, 0.9427274505077682}),
       Mat({0.9356003316143727, 0.0, 0.09002170546823775, 0.9667592994392958})},
      {0.0, 1.0, Mat({0.04042768199451273, 0.033689734995427295, -0.03368973499542727, -0.026951787996341833}),
       Mat({0.9972306042845084, 0.0022699964881051356, 0.002269996488154395, 0.9981386028797107}),
       Mat({0.9986143421183717, 0.0, 0.0022731462912289305, 0.9990662819281058})},
      {0.01, 0.1, Mat({0.9128133273347799, 0.306313197092208, -0.29418319448735664, 0.3124394610340522}),
       Mat({0.08144951785160397, 0.18765554942569984, 0.1876555494256996, 0.8288463146474798}),
       Mat({0.2853936191501204, 0.0, 0.6575323932767767, 0.6296804478774881})},
      {0.01, 0.5, Mat({0.29771287342282843, 0.21573396624842625, -0.20719090118498865, -0.12512570042408722}),
       Mat({0.9208205447083028, 0.09308228838655605, 0.0930822883865498, 0.9588218818471029}),
       Mat({0.9595939478280919, 0.0, 0.09700174599603163, 0.9743780288578064})},
      {0.01, 1.0, Mat({0.0439348401184537, 0.03723291535462174, -0.03575849190657873, -0.02904167397660494}),
       Mat({1.0590170091983127, 0.002772579971626265, 0.0027725799715773614, 1.0181889676227498}),
       Mat({1.029085520837949, 0.0, 0.002694217259338898, 1.0090499040266092})},
      {0.1, 0.1, Mat({0.938448064449895, 0.3351600230178198, -0.21450241473140458, 0.40219202762138373}),
       Mat({0.09262225795212936, 0.22466448205861075, 0.22466448205861075, 0.9579361733238059}),
       Mat({0.3043390509811867, 0.0, 0.7382045824691056, 0.6426431107118626})},
      {0.1, 0.5, Mat({0.406005849709838, 0.33833820809153176, -0.21653645317858033, -0.1353352832366128}),
       Mat({1.4880794813407352, 0.2289454861091749, 0.22894548610917842, 1.1355272569454078}),
       Mat({1.2198686328210653, 0.0, 0.18768044357343597, 1.0489534346411598})},
      {0.1, 1.0, Mat({0.09157819444367075, 0.09157819444366867, -0.05861004444394941, -0.05494691666620518}),
       Mat({1.9262617817492713, 0.01677313139423937, 0.016773131394403257, 1.2395167928771627}),
       Mat({1.3878983326415777, 0.0, 0.012085273827283204, 1.1132702901962679})},
  };
}

TEST(MomentumTest, CriticalDampingTransform) {
  MomentumOptions o;
  torch::Tensor c = torch::tensor({0.0, 0.01, 0.1}, kF64);
  torch::Tensor a = CriticalDampingA(c, o);
  EXPECT_NEAR(a[0].item<double>(), 0.0, 1e-15);
  EXPECT_NEAR(a[1].item<double>(), 0.0099, 1e-15);
  EXPECT_NEAR(a[2].item<double>(), 0.09, 1e-15);
  // da/dc against central differences.
  const double h = 1e-6;
  torch::Tensor fd = (CriticalDampingA(c + h, o) - CriticalDampingA(c - h, o)) / (2 * h);
  EXPECT_LT(MaxAbs(fd, CriticalDampingADerivative(c, o)), 1e-9);
  // u = 1 leaves a double eigenvalue mu = -beta gamma (1 - 2c)/4; u < 1 a complex pair.
  torch::Tensor F = MomentumDriftMatrix(c, o);
  for (int i = 0; i < 3; ++i) {
    const double tr = F[i].trace().item<double>(), det = torch::linalg_det(F[i]).item<double>();
    EXPECT_NEAR(tr * tr - 4 * det, 0.0, 1e-12);
    EXPECT_NEAR(tr / 2, CriticalEigenvalue(c, o)[i].item<double>(), 1e-13);
  }
  MomentumOptions under = o;
  under.damping = 0.9;
  torch::Tensor Fu = MomentumDriftMatrix(c, under);
  const double tr = Fu[1].trace().item<double>(), det = torch::linalg_det(Fu[1]).item<double>();
  EXPECT_LT(tr * tr - 4 * det, -1.0);
}

TEST(MomentumTest, KernelMatchesSpecVectors) {
  MomentumOptions o;
  for (const Vector& v : SpecVectors()) {
    MomentumKernel k = ComputeMomentumKernel(torch::tensor({v.c}, kF64), torch::tensor({v.t}, kF64), o);
    SCOPED_TRACE(::testing::Message() << "c=" << v.c << " t=" << v.t);
    EXPECT_LT(MaxAbs(k.mean[0][0], v.mean), 1e-10);
    // The vectors' Sigma carries ~1e-13 of asymmetry from the expm; ours is symmetrised.
    EXPECT_LT(MaxAbs(k.cov[0][0], 0.5 * (v.cov + v.cov.t())), 1e-10);
    EXPECT_LT(MaxAbs(k.chol[0][0], v.chol), 1e-10);
  }
}

TEST(MomentumTest, ClosedFormAtCriticalDampingEqualsMatrixExponential) {
  MomentumOptions o;
  torch::Tensor c = torch::tensor({-0.5, 0.0, 0.01, 0.1, 0.3, 0.45}, kF64);
  torch::Tensor t = torch::tensor({0.001, 0.1, 0.37, 0.5, 1.0}, kF64);
  torch::Tensor closed = CriticalMeanClosedForm(c, t, o);
  torch::Tensor F = MomentumDriftMatrix(c, o);
  torch::Tensor expm = torch::linalg_matrix_exp(F.unsqueeze(0) * t.reshape({-1, 1, 1, 1}));
  EXPECT_LT(MaxAbs(closed, expm), 1e-12);
  EXPECT_LT(MaxAbs(closed, ComputeMomentumKernel(c, t, o).mean), 1e-12);
}

// RK4 on the Lyapunov equation dSigma/dt = F Sigma + Sigma F^T + diag(0, gamma beta).
torch::Tensor LyapunovRk4(const torch::Tensor& F, double g2, double t, int n) {
  torch::Tensor Q = torch::zeros({2, 2}, kF64);
  Q[1][1] = g2;
  auto f = [&](const torch::Tensor& S) { return torch::matmul(F, S) + torch::matmul(S, F.t()) + Q; };
  torch::Tensor S = torch::zeros({2, 2}, kF64);
  const double h = t / n;
  for (int k = 0; k < n; ++k) {
    torch::Tensor k1 = f(S), k2 = f(S + h / 2 * k1), k3 = f(S + h / 2 * k2), k4 = f(S + h * k3);
    S = S + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4);
  }
  return S;
}

TEST(MomentumTest, UnderDampedKernelMatchesLyapunovIntegration) {
  MomentumOptions o;
  o.damping = 0.9;
  o.beta = 6.0;
  const double c = 0.05, t = 0.7;
  MomentumKernel k = ComputeMomentumKernel(torch::tensor({c}, kF64), torch::tensor({t}, kF64), o);
  torch::Tensor F = MomentumDriftMatrix(torch::tensor({c}, kF64), o)[0];
  EXPECT_LT(MaxAbs(k.mean[0][0], torch::linalg_matrix_exp(F * t)), 1e-13);
  EXPECT_LT(MaxAbs(k.cov[0][0], LyapunovRk4(F, o.gamma * o.beta, t, 4000)), 1e-10);
}

TEST(MomentumTest, ZeroCIsCldWithStandardNormalStationaryLaw) {
  MomentumOptions o;
  torch::Tensor c = torch::zeros({1}, kF64);
  // a = c = 0: F = beta/2 [[0, 1/M], [-1, -Gamma/M]] with M = 1, Gamma = 2 (CLD).
  torch::Tensor F = MomentumDriftMatrix(c, o)[0];
  EXPECT_LT(MaxAbs(F, 0.5 * o.beta * Mat({0, 1, -1, -2})), 1e-15);
  // N(0, I_2) is stationary: F I + I F^T + Q = 0, and Sigma_t -> I, e^{Ft} -> 0.
  torch::Tensor Q = torch::zeros({2, 2}, kF64);
  Q[1][1] = o.gamma * o.beta;
  EXPECT_LT((F + F.t() + Q).abs().max().item<double>(), 1e-15);
  // At t = 4, |e^{Ft}| ~ 40 e^{-20} ~ 1e-7 and Sigma_t = I - e^{Ft} e^{F^T t} to rounding.
  MomentumKernel k = ComputeMomentumKernel(c, torch::tensor({4.0}, kF64), o);
  torch::Tensor m = k.mean[0][0];
  EXPECT_LT(m.abs().max().item<double>(), 1e-6);
  EXPECT_LT(MaxAbs(k.cov[0][0], torch::eye(2, kF64) - torch::matmul(m, m.t())), 1e-10);
}

TEST(MomentumTest, PriorReproducesSigmaTWithItsXvCorrelation) {
  // beta 2 leaves a strong x-v correlation at T = 1 (at beta 10 it is ~1%).
  MomentumOptions o;
  o.beta = 2.0;
  MomentumTable tab = BuildMomentumTable(o, {1e-3, 20}, torch::tensor({0.0, 0.2}, kF64), torch::Tensor());
  torch::Generator gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const int64_t n = 400000;
  torch::Tensor z = MomentumPrior(tab, n, /*adaptive=*/true, gen).to(torch::kFloat64);
  for (int64_t i = 0; i < 2; ++i) {
    torch::Tensor S = tab.prior_cov64[i];
    const double rho = S[0][1].item<double>() / std::sqrt(S[0][0].item<double>() * S[1][1].item<double>());
    ASSERT_GT(std::abs(rho), 0.1) << "precondition: a visible correlation";
    torch::Tensor w = torch::stack({z.select(1, i), z.select(1, 2 + i)}, 1);
    torch::Tensor emp = torch::matmul(w.t(), w) / static_cast<double>(n);
    // Standard error of a covariance entry ~ sqrt(2/n) * O(1) = 2.2e-3; allow 5 sigma.
    EXPECT_LT(MaxAbs(emp, S), 0.012) << "coordinate " << i;
    const double emp_rho = emp[0][1].item<double>() / std::sqrt(emp[0][0].item<double>() * emp[1][1].item<double>());
    EXPECT_NEAR(emp_rho, rho, 0.01);
  }
  // The standard prior is N(0, I).
  torch::Tensor s = MomentumPrior(tab, n, /*adaptive=*/false, gen).to(torch::kFloat64);
  EXPECT_LT(MaxAbs(torch::matmul(s.t(), s) / static_cast<double>(n), torch::eye(4, kF64)), 0.02);
}

TEST(MomentumTest, VelocityScoreTargetIsTheKernelScore) {
  // z_t = e^{Ft} z0 + L eps; the kernel score -Sigma^{-1}(z_t - e^{Ft} z0) has v-part -eps_v/L_vv.
  MomentumOptions o;
  MomentumKernel k = ComputeMomentumKernel(torch::tensor({0.07}, kF64), torch::tensor({0.3}, kF64), o);
  torch::Tensor L = k.chol[0][0], S = k.cov[0][0];
  torch::Tensor eps = torch::tensor({0.4, -1.3}, kF64);
  torch::Tensor score = -torch::linalg_solve(S, torch::matmul(L, eps), true);
  EXPECT_NEAR(score[1].item<double>(), -eps[1].item<double>() / L[1][1].item<double>(), 1e-12);

  // MomentumPerturb places (x, v) channels as [x_1..x_d, v_1..v_d].
  MomentumTable tab = BuildMomentumTable(o, {1e-3, 10}, torch::tensor({0.0, 0.1}, kF64), torch::Tensor());
  torch::Tensor x0 = torch::tensor({{1.0f, -2.0f}}), v0 = torch::tensor({{0.5f, 0.25f}});
  torch::Tensor e = torch::tensor({{{0.3f, -0.7f}, {0.1f, 0.2f}}});
  torch::Tensor idx = torch::tensor({4}, torch::kLong);
  torch::Tensor zt = MomentumPerturb(tab, x0, v0, e, idx);
  for (int i = 0; i < 2; ++i) {
    torch::Tensor m = tab.mean[4][i], Li = tab.chol[4][i];
    torch::Tensor want = torch::matmul(m, torch::stack({x0[0][i], v0[0][i]})) + torch::matmul(Li, e[0][i]);
    EXPECT_NEAR(zt[0][i].item<float>(), want[0].item<float>(), 1e-5);
    EXPECT_NEAR(zt[0][2 + i].item<float>(), want[1].item<float>(), 1e-5);
  }
}

// Statistics of a small fixed set (random but fixed), as the update sees them.
VariationalStats FixedStats(int64_t d, int64_t groups) {
  torch::Generator g = at::make_generator<at::CPUGeneratorImpl>(11);
  VariationalStats s;
  torch::Tensor w = torch::randn({groups, 50, d, 2}, g, torch::kFloat64);
  w.select(3, 0).mul_(3.0);  // a wider x than v
  torch::Tensor zb = torch::randn({groups, 50, d}, g, torch::kFloat64) - 0.4 * w.select(3, 1);
  const double g2 = 20.0;
  s.sxx = g2 * torch::einsum("gkia,gkib->giab", {w, w});
  s.szx = std::sqrt(g2) * torch::einsum("gki,gkia->gia", {zb, w});
  s.sbeta = torch::full({groups}, g2 * 50, kF64);
  s.count = torch::full({groups}, 50.0, kF64);
  s.dt = 0.01;
  return s;
}

TEST(MomentumTest, ObjectiveGradientMinimizerAndFloor) {
  MomentumOptions o;
  const double zeta = 1.0, d_min = 0.05;
  auto obj = MakeMomentumObjective(o, zeta, d_min);
  VariationalStats s = FixedStats(3, 2);
  torch::Tensor c = torch::tensor({0.05, -0.2, 0.3}, kF64);
  // The gradient through a(c) against central differences of the loss.
  torch::Tensor grad = obj->Gradient(s, c, -1);
  for (int i = 0; i < 3; ++i) {
    const double h = 1e-6;
    torch::Tensor cp = c.clone(), cm = c.clone();
    cp[i] += h;
    cm[i] -= h;
    const double fd = (MomentumVariationalLoss(s, cp, zeta, o) - MomentumVariationalLoss(s, cm, zeta, o)) / (2 * h);
    EXPECT_NEAR(grad[i].item<double>(), fd, 1e-7 * std::max(1.0, std::abs(fd)));
  }
  // The minimiser: zero gradient where interior, lower loss than its neighbours, <= c_max.
  torch::Tensor cs = obj->Minimizer(s);
  torch::Tensor gs = obj->Gradient(s, cs, -1);
  const double c_max = 0.5 * (1 - d_min);
  for (int i = 0; i < 3; ++i) {
    const double ci = cs[i].item<double>();
    EXPECT_LE(ci, c_max + 1e-15);
    if (ci < c_max - 1e-9 && ci > -2.0 + 1e-9) {
      EXPECT_LT(std::abs(gs[i].item<double>()), 1e-9) << i;
    }
    for (double delta : {-1e-3, 1e-3}) {
      torch::Tensor cn = cs.clone();
      cn[i] = std::min(c_max, ci + delta);
      EXPECT_LE(MomentumVariationalLoss(s, cs, zeta, o), MomentumVariationalLoss(s, cn, zeta, o) + 1e-15);
    }
  }
  // The floor: 1 - 2c >= d_min after projection.
  torch::Tensor big = torch::tensor({0.49, 0.1, -3.0}, kF64);
  double floor_after = 0;
  EXPECT_TRUE(obj->Project(big, &floor_after));
  EXPECT_NEAR(big[0].item<double>(), c_max, 1e-15);
  EXPECT_NEAR(big[1].item<double>(), 0.1, 1e-15);
  EXPECT_NEAR(floor_after, d_min, 1e-12);
}

TEST(MomentumTest, UpdaterRulesMoveCTowardsTheMinimiser) {
  MomentumOptions o;
  VariationalStats s = FixedStats(2, 4);
  auto obj = MakeMomentumObjective(o, 1.0, 0.05);
  torch::Tensor cstar = obj->Minimizer(s);
  VariationalOptions vo;
  vo.update = "exact";
  vo.lr = 0.5;
  VariationalUpdater exact(torch::zeros({2}, kF64), vo, obj);
  exact.Apply(s);
  EXPECT_LT(MaxAbs(exact.A(), 0.5 * cstar), 1e-12);
  // sa and adam descend the loss.
  for (const char* rule : {"sa", "adam"}) {
    vo.update = rule;
    vo.lr = std::string(rule) == "sa" ? 0.05 : 1e-2;
    VariationalUpdater u(torch::zeros({2}, kF64), vo, obj);
    const double before = MomentumVariationalLoss(s, u.A(), 1.0, o);
    u.Apply(s);
    EXPECT_LT(MomentumVariationalLoss(s, u.A(), 1.0, o), before) << rule;
    // Checkpoint state round-trips with the [d]-shaped parameter.
    VariationalUpdater v(torch::zeros({2}, kF64), vo, obj);
    v.LoadState(u.State());
    EXPECT_TRUE(torch::equal(v.A(), u.A()));
  }
}

TEST(MomentumTest, ProcessTrainsAVelocityScoreNetwork) {
  VsmdProcessOptions po;
  auto family = MakeVsmdFamily(2, po);
  EXPECT_EQ(family->net_in_dim(), 4);
  EXPECT_EQ(family->net_out_dim(), 2);
  std::unique_ptr<Process> p = family->Make(family->InitialParam(), {1e-3, 20});
  torch::manual_seed(0);
  ScoreNet net("mlp", 4, 64, 2);
  torch::optim::Adam opt(net->parameters(), 2e-3);
  torch::Generator gen = at::make_generator<at::CPUGeneratorImpl>(5);
  auto mean_loss = [&](int steps, bool train) {
    double tot = 0;
    for (int i = 0; i < steps; ++i) {
      torch::Tensor x0 = torch::randn({256, 2}, gen) * torch::tensor({1.0f, 0.3f}) + 1.0f;
      torch::Tensor loss = p->Loss(net, x0, gen);
      if (train) {
        opt.zero_grad();
        loss.backward();
        opt.step();
      }
      tot += loss.item<double>();
    }
    return tot / steps;
  };
  const double before = mean_loss(20, false);
  mean_loss(300, true);
  const double after = mean_loss(20, false);
  EXPECT_LT(after, 0.8 * before);
  // Samples, trajectories and statistics have the documented shapes.
  torch::Tensor prior = p->SamplePrior(64, true, gen);
  EXPECT_EQ(prior.sizes(), (std::vector<int64_t>{64, 4}));
  SampleResult r = p->Sample(net, prior, Solver::kHeun, gen, true);
  EXPECT_EQ(r.x.sizes(), (std::vector<int64_t>{64, 2}));
  EXPECT_EQ(r.trajectory.sizes(), (std::vector<int64_t>{21, 64, 2}));
  EXPECT_TRUE(torch::isfinite(p->Sample(net, prior, Solver::kSde, gen, false).x).all().item<bool>());
  VariationalStats st = p->Stats(net, prior, 16, gen);
  EXPECT_EQ(st.sxx.sizes(), (std::vector<int64_t>{4, 2, 2, 2}));
  EXPECT_NEAR(st.count.sum().item<double>(), 64.0 * 20, 1e-9);
  EXPECT_EQ(p->Describe().front().first, "c");
}

}  // namespace
}  // namespace vsdm::core
