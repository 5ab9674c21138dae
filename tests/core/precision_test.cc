// train.precision (core/torch_compat.h): autocast of the score network, its scope, and the DSM
// step in bf16 against the same step in fp32.
#include <gtest/gtest.h>

#include "core/beta_schedule.h"
#include "core/dsm_trainer.h"
#include "core/threading.h"
#include "core/torch_compat.h"

namespace vsdm::core {
namespace {
const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

TEST(PrecisionTest, ParsesTheTwoNamesAndNamesTheFieldOtherwise) {
  EXPECT_EQ(*ParsePrecision("fp32"), Precision::kFp32);
  EXPECT_EQ(*ParsePrecision("bf16"), Precision::kBf16);
  auto bad = ParsePrecision("fp16");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("train.precision"), std::string::npos) << bad.status();
  EXPECT_STREQ(PrecisionName(Precision::kBf16), "bf16");
  EXPECT_EQ(DefaultThreadMode(Precision::kFp32), ThreadMode::kBlas);
  EXPECT_EQ(DefaultThreadMode(Precision::kBf16), ThreadMode::kTorch);
}

TEST(PrecisionTest, AutocastLastsAsLongAsItsGuardAndNests) {
  torch::nn::Linear lin(8, 4);
  torch::Tensor x = torch::randn({3, 8});
  {
    AutocastGuard outer(torch::kCPU, Precision::kBf16);
    EXPECT_EQ(lin(x).scalar_type(), torch::kBFloat16);
    {
      AutocastGuard inner(torch::kCPU, Precision::kBf16);
      EXPECT_EQ(lin(x).scalar_type(), torch::kBFloat16);
    }
    EXPECT_EQ(lin(x).scalar_type(), torch::kBFloat16) << "the inner guard switched the outer off";
    AutocastGuard none(torch::kCPU, Precision::kFp32);
    EXPECT_EQ(lin(x).scalar_type(), torch::kBFloat16) << "an fp32 guard is a no-op";
  }
  EXPECT_EQ(lin(x).scalar_type(), torch::kFloat32) << "autocast left on after the guard";
}

// The bf16 net computes in bfloat16 and hands back float32; its parameters, gradients, the EMA and
// the optimiser stay float32; the loss of one step is the fp32 loss to bf16 rounding.
TEST(PrecisionTest, ABf16StepKeepsFloat32StateAndMatchesTheFp32Loss) {
  KernelTable tab = BuildKernelTable(BetaSchedule{}, {0.001, 50}, torch::zeros({2, 2}, kF64), torch::Tensor());
  torch::Generator g = at::make_generator<at::CPUGeneratorImpl>(3);
  torch::Tensor x0 = torch::randn({256, 2}, g) * 2.0;
  torch::Tensor idx = torch::randint(0, tab.size(), {256}, g, torch::kLong);
  torch::Tensor eps = torch::randn({256, 2}, g);
  auto make = [](Precision p) {
    torch::manual_seed(7);
    DsmTrainerOptions o;
    o.precision = p;
    o.grad_clip = 1.0;
    return std::make_unique<DsmTrainer>(ScoreNet("toy_resnet", 2, 64), o);
  };
  auto fp32 = make(Precision::kFp32), bf16 = make(Precision::kBf16);
  const double l32 = fp32->ComputeGradients(x0, idx, eps, tab).item<double>();
  torch::Tensor l16 = bf16->ComputeGradients(x0, idx, eps, tab);
  EXPECT_EQ(l16.scalar_type(), torch::kFloat32);
  EXPECT_EQ(l16.dim(), 0);
  EXPECT_NEAR(l16.item<double>(), l32, 0.02 * l32);
  {
    torch::NoGradGuard ng;
    torch::Tensor out = bf16->net()->forward(x0, torch::full({256}, 0.5));
    EXPECT_EQ(out.scalar_type(), torch::kFloat32);
    EXPECT_EQ(bf16->ema_net()->precision(), Precision::kFp32) << "the EMA copy samples in float32";
  }
  bf16->ApplyGradients();
  for (const auto& p : bf16->net()->parameters()) {
    EXPECT_EQ(p.scalar_type(), torch::kFloat32);
    ASSERT_TRUE(p.grad().defined());
    EXPECT_EQ(p.grad().scalar_type(), torch::kFloat32);
  }
  for (const auto& p : bf16->ema_net()->parameters()) EXPECT_EQ(p.scalar_type(), torch::kFloat32);
  // A few steps in bf16 lower the loss as fp32 does.
  double first = 0, last = 0;
  for (int i = 0; i < 30; ++i) {
    const double l = bf16->ComputeGradients(x0, idx, eps, tab).item<double>();
    bf16->ApplyGradients();
    if (i == 0) first = l;
    last = l;
  }
  EXPECT_LT(last, first);
}

// The gradient clip works on the device: with a tiny max norm the global norm after clipping is
// that max norm (LibTorch's clip_grad_norm_ reads it on the host instead).
TEST(PrecisionTest, GradientClipScalesTheGlobalNormOnTheDevice) {
  KernelTable tab = BuildKernelTable(BetaSchedule{}, {0.001, 20}, torch::zeros({2, 2}, kF64), torch::Tensor());
  torch::manual_seed(1);
  DsmTrainerOptions o;
  o.grad_clip = 1e-3;
  o.lr = 0.0;  // AdamW's step leaves the weights; only the gradients matter here
  DsmTrainer tr(ScoreNet("mlp", 2, 16), o);
  torch::Generator g = at::make_generator<at::CPUGeneratorImpl>(2);
  tr.ComputeGradients(torch::randn({64, 2}, g), g, tab);
  tr.ApplyGradients();
  double sq = 0;
  for (const auto& p : tr.net()->parameters()) sq += p.grad().pow(2).sum().item<double>();
  EXPECT_NEAR(std::sqrt(sq), 1e-3, 1e-6);
}

// The UNet under bf16 autocast (LibTorch 1.13's CPU group_norm refuses a bfloat16 input with
// float32 weights: core/unet.cc norms in float32), forward and backward.
TEST(PrecisionTest, TheUNetTrainsUnderBf16) {
  ScoreNetOptions o;
  o.arch = "unet";
  o.dim = 64;
  o.unet.channels = 1;
  o.unet.height = o.unet.width = 8;
  o.unet.base = 8;
  o.unet.mult = {1, 2};
  o.unet.groups = 4;
  torch::manual_seed(0);
  ScoreNet net(o);
  net->set_precision(Precision::kBf16);
  torch::Tensor x = torch::randn({4, 64});
  torch::Tensor out = net->forward(x, torch::full({4}, 0.3));
  EXPECT_EQ(out.scalar_type(), torch::kFloat32);
  EXPECT_EQ(out.sizes(), x.sizes());
  out.pow(2).mean().backward();
  for (const auto& p : net->parameters()) {
    ASSERT_TRUE(p.grad().defined());
    EXPECT_TRUE(torch::isfinite(p.grad()).all().item<bool>());
  }
  net->set_precision(Precision::kFp32);
  torch::NoGradGuard ng;
  torch::Tensor ref = net->forward(x, torch::full({4}, 0.3));
  net->set_precision(Precision::kBf16);
  torch::Tensor low = net->forward(x, torch::full({4}, 0.3));
  EXPECT_LT((low - ref).abs().max().item<double>(), 0.1 * ref.abs().max().item<double>() + 1e-3);
}

}  // namespace
}  // namespace vsdm::core
