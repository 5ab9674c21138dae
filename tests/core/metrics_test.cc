#include "core/metrics.h"

#include <gtest/gtest.h>

namespace vsdm::core {
namespace {

TEST(MetricsTest, EnergyDistanceHandComputed) {
  // X = {0, 1}, Y = {3, 5} on a line: E|X-Y| = (3+5+2+4)/4 = 3.5; E|X-X'| = 1; E|Y-Y'| = 2.
  torch::Tensor x = torch::tensor({0.0, 1.0}).reshape({2, 1});
  torch::Tensor y = torch::tensor({3.0, 5.0}).reshape({2, 1});
  EXPECT_NEAR(EnergyDistance(x, y), 2 * 3.5 - 1 - 2, 1e-12);
}

TEST(MetricsTest, EnergyDistanceSeparatesLaws) {
  torch::Generator g = at::make_generator<at::CPUGeneratorImpl>(0);
  torch::Tensor a = torch::randn({3000, 2}, g), b = torch::randn({3000, 2}, g);
  torch::Tensor c = torch::randn({3000, 2}, g) + 1.0;
  EXPECT_LT(std::abs(EnergyDistance(a, b)), 0.01);
  EXPECT_GT(EnergyDistance(a, c), 0.3);
}

TEST(MetricsTest, PairDistanceSumIsTheSameInAnyBlocksAndNeverBuildsABigOne) {
  torch::Generator g = at::make_generator<at::CPUGeneratorImpl>(1);
  torch::Tensor a = torch::randn({700, 2}, g, torch::kFloat64), b = torch::randn({1300, 2}, g, torch::kFloat64);
  const double whole = torch::cdist(a, b).sum().item<double>();
  // b within one column block: the row-blocked sum, bit for bit as before.
  double rows = 0;
  for (int64_t i = 0; i < 700; i += 256)
    rows += torch::cdist(a.slice(0, i, std::min<int64_t>(i + 256, 700)), b).sum().item<double>();
  EXPECT_EQ(PairDistanceSum(a, b, 256, 1300), rows);
  EXPECT_EQ(PairDistanceSum(a, b), torch::cdist(a, b).sum().item<double>());
  // Any split of both sides agrees to rounding.
  for (auto [r, c] : {std::pair<int64_t, int64_t>{1, 1300}, {700, 13}, {256, 100}, {700, 1299}, {5000, 5000}})
    EXPECT_NEAR(PairDistanceSum(a, b, r, c), whole, 1e-9 * whole) << r << " x " << c;
  EXPECT_EQ(PairDistanceSum(a, b.slice(0, 0, 0)), 0.0);
}

TEST(MetricsTest, PmfRmseIsZeroForSameSetAndDoesNotModifyInput) {
  torch::Generator g = at::make_generator<at::CPUGeneratorImpl>(0);
  torch::Tensor a = torch::randn({2000, 2}, g);
  torch::Tensor wide = a * 10;
  torch::Tensor copy = wide.clone();
  EXPECT_EQ(PmfRmse(a, a), 0.0);
  EXPECT_GT(PmfRmse(a, wide), 0.0);
  EXPECT_TRUE(torch::equal(wide, copy));
}

TEST(MetricsTest, PmfRmseHandComputed) {
  // real = {(-1,-1), (1,1)}; limits [-1.025, 1.025]^2; pred all at (1,1) (last bin).
  torch::Tensor real = torch::tensor({-1.0, -1.0, 1.0, 1.0}).reshape({2, 2});
  torch::Tensor pred = torch::tensor({1.0, 1.0, 1.0, 1.0}).reshape({2, 2});
  // real pmf: 0.5 in two bins; pred: 1 in one of them -> errors 0.5 and 0.5 over 10^4 bins.
  EXPECT_NEAR(PmfRmse(real, pred), std::sqrt((0.25 + 0.25) / 1e4), 1e-15);
}

TEST(MetricsTest, StraightnessOfStraightAndBentPaths) {
  torch::Tensor t = torch::linspace(0, 1, 11).reshape({11, 1, 1});
  torch::Tensor straight = torch::cat({t, 2 * t}, 2);  // [11, 1, 2]
  EXPECT_NEAR(Straightness(straight), 1.0, 1e-6);
  EXPECT_NEAR(TransportCost(straight), 5.0, 1e-6);
  torch::Tensor bent = torch::tensor({0.0, 0.0, 1.0, 1.0, 2.0, 0.0}).reshape({3, 1, 2});
  EXPECT_NEAR(Straightness(bent), 2 * std::sqrt(2.0) / 2.0, 1e-6);
}

TEST(MetricsTest, SlicedWassersteinOfShift) {
  torch::Generator g = at::make_generator<at::CPUGeneratorImpl>(0);
  torch::Tensor a = torch::randn({4000, 2}, g);
  // Shift by (3, 0): projected shift |3 cos theta|, mean over directions 3 * 2/pi.
  double sw = SlicedWasserstein1(a, a + torch::tensor({3.0f, 0.0f}), 2000, g);
  EXPECT_NEAR(sw, 3.0 * 2.0 / M_PI, 0.1);
}

}  // namespace
}  // namespace vsdm::core
