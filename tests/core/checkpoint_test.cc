#include "core/checkpoint.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "core/beta_schedule.h"

namespace vsdm::core {
namespace {
namespace fs = std::filesystem;

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() / ("vsdm_ckpt_" + std::to_string(::getpid()))).string();
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

TEST_F(CheckpointTest, RoundTripRestoresEverythingARoundNeeds) {
  KernelTable tab =
      BuildKernelTable(BetaSchedule{}, {0.001, 20}, torch::zeros({2, 2}, torch::kFloat64), torch::Tensor());
  torch::manual_seed(1);
  DsmTrainer a(ScoreNet("mlp", 2, 32), {});
  VariationalOptions vo;
  vo.update = "sa";
  VariationalUpdater ua(2, vo);
  torch::Generator ga = at::make_generator<at::CPUGeneratorImpl>(9);
  for (int i = 0; i < 3; ++i) {
    a.ComputeGradients(torch::randn({64, 2}, ga), ga, tab);
    a.ApplyGradients();
  }
  VariationalStats st;
  st.sxx = torch::eye(2, torch::kFloat64).unsqueeze(0);
  st.szx = torch::ones({1, 2, 2}, torch::kFloat64);
  st.sbeta = torch::ones({1}, torch::kFloat64);
  st.count = torch::ones({1}, torch::kFloat64);
  ua.Apply(st);
  ASSERT_TRUE(SaveCheckpoint(dir_, 5, {&a, &ua, {&ga}, {}}).ok());

  torch::manual_seed(2);  // a differently initialised twin
  DsmTrainer b(ScoreNet("mlp", 2, 32), {});
  VariationalUpdater ub(2, vo);
  torch::Generator gb = at::make_generator<at::CPUGeneratorImpl>(1234);
  auto latest = FindLatestCheckpoint(dir_);
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(latest->first, 5);
  auto round = LoadCheckpoint(latest->second, {&b, &ub, {&gb}, {}});
  ASSERT_TRUE(round.ok()) << round.status();
  EXPECT_EQ(*round, 5);
  EXPECT_EQ(b.steps(), 3);
  EXPECT_TRUE(torch::equal(ua.A(), ub.A()));
  EXPECT_EQ(ub.round(), 1);
  auto pa = a.net()->parameters(), pb = b.net()->parameters();
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i]));
  auto ea = a.ema_net()->parameters(), eb = b.ema_net()->parameters();
  for (size_t i = 0; i < ea.size(); ++i) EXPECT_TRUE(torch::equal(ea[i], eb[i]));
  // Same RNG state: the next draws agree.
  EXPECT_TRUE(torch::equal(torch::randn({4}, ga), torch::randn({4}, gb)));
  // Same optimiser state: one more identical step gives identical weights.
  torch::Tensor x = torch::randn({64, 2}, ga);
  torch::Generator s1 = at::make_generator<at::CPUGeneratorImpl>(3), s2 = at::make_generator<at::CPUGeneratorImpl>(3);
  a.ComputeGradients(x, s1, tab);
  a.ApplyGradients();
  b.ComputeGradients(x, s2, tab);
  b.ApplyGradients();
  pa = a.net()->parameters();
  pb = b.net()->parameters();
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i]));
}

TEST_F(CheckpointTest, KeepsNewestTwoAndNoTempFiles) {
  torch::Generator g = at::make_generator<at::CPUGeneratorImpl>(1);
  for (int r : {1, 2, 3, 4}) ASSERT_TRUE(SaveCheckpoint(dir_, r, {nullptr, nullptr, {&g}, {}}).ok());
  std::vector<std::string> names;
  for (auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"ckpt-00000003.pt", "ckpt-00000004.pt"}));
  EXPECT_EQ(FindLatestCheckpoint(dir_)->first, 4);
}

TEST_F(CheckpointTest, MismatchedModelIsRefused) {
  torch::manual_seed(1);
  DsmTrainer a(ScoreNet("mlp", 2, 32), {});
  ASSERT_TRUE(SaveCheckpoint(dir_, 1, {&a, nullptr, {}, {}}).ok());
  DsmTrainer b(ScoreNet("mlp", 2, 64), {});
  auto r = LoadCheckpoint(FindLatestCheckpoint(dir_)->second, {&b, nullptr, {}, {}});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(CheckpointTest, NoCheckpointInMissingDir) { EXPECT_FALSE(FindLatestCheckpoint(dir_ + "/nope").has_value()); }

}  // namespace
}  // namespace vsdm::core
