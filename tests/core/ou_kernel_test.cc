// The kernel against ../shared/spec/vectors/testvec-output.txt (float64, 1e-10).
#include "core/ou_kernel.h"

#include <gtest/gtest.h>

#include "core/beta_schedule.h"
#include "core/diffusion.h"

namespace vsdm::core {
namespace {

const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);
torch::Tensor M2(double a, double b, double c, double d) { return torch::tensor({a, b, c, d}, kF64).reshape({2, 2}); }
void ExpectNear(const torch::Tensor& got, const torch::Tensor& want, double tol) {
  ASSERT_EQ(got.sizes(), want.sizes());
  double err = (got - want).abs().max().item<double>();
  EXPECT_LT(err, tol) << "got\n" << got << "\nwant\n" << want;
}

struct Vec {
  double t;
  torch::Tensor M, S, L;
};

TEST(BetaScheduleTest, MatchesVectors) {
  BetaSchedule s;
  EXPECT_NEAR(s.Integral(0.1), 0.017315961822, 1e-12);
  EXPECT_NEAR(s.Integral(0.5), 0.614274522783, 1e-12);
  EXPECT_NEAR(s.Integral(1.0), 3.766666666667, 1e-12);
  EXPECT_NEAR(s.Beta(0.1), 0.297530969182, 1e-12);
  EXPECT_NEAR(s.Beta(0.5), 3.147082423029, 1e-12);
  EXPECT_NEAR(s.Beta(1.0), 10.0, 1e-12);
}

void CheckFull(const torch::Tensor& A, const std::vector<Vec>& vecs) {
  BetaSchedule s;
  torch::Tensor D = torch::eye(2, kF64) - 2.0 * A;
  for (const auto& v : vecs) {
    torch::Tensor B = torch::tensor({s.Integral(v.t)}, kF64);
    KernelMoments k = OuKernelFull(D, B);
    ExpectNear(k.mean[0], v.M, 1e-10);
    ExpectNear(k.cov[0], v.S, 1e-10);
    if (v.L.defined()) ExpectNear(k.chol[0], v.L, 1e-10);
  }
}

TEST(OuKernelTest, SymmetricAMatchesVectors) {
  CheckFull(M2(0.15, 0.05, 0.05, -0.35),
            {{0.1, M2(0.993958113137902, 0.000856852165511277, 0.000856852165511277, 0.9853895914827893),
              M2(0.01721144820949441, 1.4786149379662369e-05, 1.4786149379662367e-05, 0.017063586715697788),
              M2(0.1311924091153692, 0.0, 0.0001127058301571365, 0.13062761581340154)},
             {0.5, M2(0.8068889147542256, 0.02133244996494528, 0.02133244996494528, 0.5935644151047729),
              M2(0.49950876257979965, 0.011809279806189345, 0.011809279806189345, 0.38141596451790644),
              M2(0.7067593385161597, 0.0, 0.016709053793308077, 0.6173627556301391)},
             {1.0, M2(0.27035854880850196, 0.022815688963509228, 0.022815688963509228, 0.04220165917340965),
              M2(1.3340191198057711, 0.07427684440758359, 0.07427684440758346, 0.5912506757299355),
              M2(1.1549974544585677, 0.0, 0.06430909792991923, 0.7662343085854193)}});
}

TEST(OuKernelTest, NonSymmetricAMatchesVectors) {
  CheckFull(M2(0.10, 0.20, -0.05, -0.30),
            {{0.1, M2(0.9930960619553416, 0.0034274026672391398, -0.0008568506668097849, 0.9862412566208633),
              M2(0.01719662777449591, 2.2093949619453195e-05, 2.2093949619453185e-05, 0.017078275094295808),
              M2(0.13113591336661332, 0.0, 0.000168481303498346, 0.13068376604745588)},
             {0.5, M2(0.7807877185231776, 0.0851424096482833, -0.021285602412070826, 0.610502899226611),
              M2(0.48659816468578804, 0.015393057664938781, 0.015393057664938778, 0.39080864212460226),
              M2(0.6975658855518868, 0.0, 0.022066815456091852, 0.6247573111058637)},
             {1.0, M2(0.21166409881750742, 0.08430714235969308, -0.02107678558992327, 0.04304981409812121),
              M2(1.2118966784343965, 0.05356681932150643, 0.05356681932150647, 0.6202161254269766),
              M2(1.1008617889791599, 0.0, 0.04865898685717806, 0.7860333507078497)}});
}

TEST(OuKernelTest, ZeroAIsVariancePreserving) {
  BetaSchedule s;
  for (double t : {0.1, 0.5, 1.0}) {
    const double B = s.Integral(t);
    KernelMoments k = OuKernelFull(torch::eye(2, kF64), torch::tensor({B}, kF64));
    ExpectNear(k.mean[0], std::exp(-B / 2) * torch::eye(2, kF64), 1e-12);
    ExpectNear(k.cov[0], (1 - std::exp(-B)) * torch::eye(2, kF64), 1e-12);
  }
}

TEST(OuKernelTest, DiagonalMatchesVectorsIncludingZeroAndNegativeD) {
  BetaSchedule s;
  torch::Tensor d = torch::tensor({1.0, 0.3, 0.0, -0.5, 2.2}, kF64);
  struct {
    double t;
    std::vector<double> mean, var;
  } cases[] = {{0.5,
                {0.7355496314118485, 0.9119763890728315, 1.0, 1.1659878069306242, 0.5087991309168315},
                {0.458966739729894, 0.5609968859122648, 0.6142745227830866, 0.719055131821773, 0.3368742928992168}},
               {1.0,
                {0.15208231885270754, 0.5683601467575405, 1.0, 2.564251611532352, 0.015869863694908764},
                {0.9768709682923834, 2.2565558119258236, 3.7666666666666666, 11.150772654492531, 0.45443097610286587}}};
  for (const auto& c : cases) {
    torch::Tensor B = torch::tensor({s.Integral(c.t)}, kF64);
    KernelMoments k = OuKernelDiagonal(d, B);
    ExpectNear(torch::diagonal(k.mean[0]), torch::tensor(c.mean, kF64), 1e-10);
    ExpectNear(torch::diagonal(k.cov[0]), torch::tensor(c.var, kF64), 1e-10);
    // and the diagonal path agrees with the block exponential
    KernelMoments full = OuKernelFull(torch::diag(d), B);
    ExpectNear(k.cov[0], full.cov[0], 1e-10);
  }
}

TEST(OuKernelTest, KernelTableHoldsFloat32CastsOfFloat64Kernel) {
  BetaSchedule s;
  TimeGrid g{0.001, 100};
  torch::Tensor A = M2(0.15, 0.05, 0.05, -0.35);
  KernelTable tab = BuildKernelTable(s, g, A, torch::Tensor());
  EXPECT_EQ(tab.size(), 101);
  EXPECT_FLOAT_EQ(tab.t[0].item<float>(), 0.001f);
  EXPECT_FLOAT_EQ(tab.t[100].item<float>(), 1.0f);
  // L^{-T} L^T = I at every grid time.
  torch::Tensor prod = torch::matmul(tab.chol_inv_t, tab.chol.transpose(1, 2));
  EXPECT_LT((prod - torch::eye(2)).abs().max().item<float>(), 1e-4);
  KernelMoments k = OuKernelFull(torch::eye(2, kF64) - 2 * A, torch::tensor({s.Integral(1.0)}, kF64));
  ExpectNear(tab.prior_cov64, k.cov[0], 1e-12);
}

}  // namespace
}  // namespace vsdm::core
