#include "core/toy_data.h"

#include <gtest/gtest.h>

namespace vsdm::core {
namespace {

TEST(ToyDataTest, CheckerboardPointsLieInOppositeSignSquares) {
  auto ds = ToyDataset::Create("checkerboard", {6.0, 1.0});
  ASSERT_TRUE(ds.ok());
  torch::Generator g = at::make_generator<at::CPUGeneratorImpl>(0);
  torch::Tensor x = ds->Sample(20000, g);
  ASSERT_EQ(x.size(0), 20000);
  torch::Tensor u = x / torch::tensor({6.0f, 1.0f});
  torch::Tensor s = torch::sin(u);
  EXPECT_TRUE(((s.select(1, 0) * s.select(1, 1)) < 0).all().item<bool>());
  EXPECT_LE(u.abs().max().item<float>(), 2 * M_PI + 1e-4);
}

TEST(ToyDataTest, SpiralIsStretchedByScale) {
  auto ds = ToyDataset::Create("spiral", {1.0, 8.0});
  ASSERT_TRUE(ds.ok());
  torch::Generator g = at::make_generator<at::CPUGeneratorImpl>(0);
  torch::Tensor x = ds->Sample(20000, g);
  torch::Tensor sd = x.std(0);
  EXPECT_GT(sd[1].item<float>() / sd[0].item<float>(), 5.0f);
  // radius before scaling is at most 0.4 * (3.5 pi) plus noise
  torch::Tensor u = x / torch::tensor({1.0f, 8.0f});
  EXPECT_LT(u.norm(2, 1).max().item<float>(), 0.4f * (3.5f * M_PI + 1.5f));
}

TEST(ToyDataTest, SameSeedSameStreamFreshPointsEachCall) {
  auto ds = ToyDataset::Create("moons", {1.0});
  ASSERT_TRUE(ds.ok());
  torch::Generator g1 = at::make_generator<at::CPUGeneratorImpl>(7), g2 = at::make_generator<at::CPUGeneratorImpl>(7);
  torch::Tensor a = ds->Sample(100, g1), b = ds->Sample(100, g2);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(ds->Sample(100, g1), a));
}

TEST(ToyDataTest, GaussianHasItsMoments) {
  auto ds = ToyDataset::Create("gaussian", {1.0, 1.0});
  torch::Generator g = at::make_generator<at::CPUGeneratorImpl>(1);
  torch::Tensor x = ds->Sample(100000, g).to(torch::kFloat64);
  torch::Tensor m = x.mean(0);
  EXPECT_NEAR(m[0].item<double>(), -8.0, 0.03);
  EXPECT_NEAR(m[1].item<double>(), 2.0, 0.03);
  torch::Tensor xc = x - m;
  torch::Tensor c = torch::matmul(xc.t(), xc) / x.size(0);
  EXPECT_NEAR(c[0][1].item<double>(), 1.0, 0.05);
  EXPECT_NEAR(c[1][1].item<double>(), 5.0, 0.1);
}

TEST(ToyDataTest, UnknownNameRefused) { EXPECT_FALSE(ToyDataset::Create("donut", {1.0}).ok()); }

}  // namespace
}  // namespace vsdm::core
