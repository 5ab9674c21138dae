// The exported model loads in Python (torch.jit.load) and computes the same score as C++.
#include "core/torchscript_export.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <torch/script.h>

#include "core/npy.h"
#include "core/score_model.h"

namespace vsdm::core {
namespace {
namespace fs = std::filesystem;

class ExportTest : public ::testing::TestWithParam<std::tuple<std::string, Parameterization>> {};

TEST_P(ExportTest, ScriptedScoreMatchesCppAtGridTimes) {
  auto [arch, param] = GetParam();
  fs::path dir = fs::temp_directory_path() / ("vsdm_export_" + std::to_string(::getpid()) + arch);
  fs::create_directories(dir);
  torch::manual_seed(3);
  ScoreNet net(arch, 2, 32);
  torch::Tensor A = torch::tensor({-0.2, 0.05, 0.0, -0.6}, torch::kFloat64).reshape({2, 2});
  torch::Tensor C0 = torch::tensor({1.0, 0.2, 0.2, 9.0}, torch::kFloat64).reshape({2, 2});
  BetaSchedule sched;
  KernelTable tab = BuildKernelTable(sched, {0.001, 50}, A, C0);
  std::string path = (dir / "model.pt").string();
  ASSERT_TRUE(ExportTorchScript(path, net, tab, {sched, param, "vsdm"}).ok());

  ScoreModel model(net, param, tab);
  torch::Tensor x = torch::randn({16, 2});
  const int64_t k = 17;
  torch::Tensor want;
  {
    torch::NoGradGuard g;
    want = model.ScoreAt(x, k);
  }
  // C++ load of the TorchScript module.
  torch::jit::Module m = torch::jit::load(path);
  torch::Tensor t = torch::full({16}, tab.t[k].item<float>());
  torch::Tensor got = m.forward({x, t}).toTensor().detach();
  EXPECT_LT((got - want).abs().max().item<float>(), 1e-3 * (1 + want.abs().max().item<float>()));
  torch::Tensor s = m.run_method("sample", 64, 20).toTensor();
  EXPECT_EQ(s.sizes(), (std::vector<int64_t>{64, 2}));
  EXPECT_TRUE(torch::isfinite(s).all().item<bool>());

  // Python: torch.jit.load the same file and compare.
  ASSERT_TRUE(WriteNpy((dir / "x.npy").string(), x).ok());
  ASSERT_TRUE(WriteNpy((dir / "t.npy").string(), t).ok());
  ASSERT_TRUE(WriteNpy((dir / "want.npy").string(), want).ok());
  std::string cmd = "/usr/bin/python3 " + std::string(VSDM_SOURCE_DIR) + "/tests/core/check_export.py " + dir.string();
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(ArchAndParam, ExportTest,
                         ::testing::Values(std::make_tuple("toy_resnet", Parameterization::kPolicy),
                                           std::make_tuple("mlp", Parameterization::kEps)));

}  // namespace
}  // namespace vsdm::core
