#include "core/checkpoint.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gmock/gmock.h>

#include "common/file_util.h"
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

// Note [Checkpoint container check]: damaged archives are refused, naming what is wrong, before
// LibTorch parses them (fuzz/checkpoint_fuzzer.cc found a flipped bit in the archive's TorchScript
// source crashing LibTorch's type parser; LibTorch checks no CRC).
class CorruptCheckpointTest : public CheckpointTest {
 protected:
  // A checkpoint of a generator and a distinctive extra tensor; returns its bytes.
  std::string Saved() {
    torch::Generator g = at::make_generator<at::CPUGeneratorImpl>(1);
    torch::Tensor marker = torch::full({4}, 1234.5, torch::kFloat64);
    EXPECT_TRUE(SaveCheckpoint(dir_, 1, {nullptr, nullptr, {&g}, {{"marker", &marker}}}).ok());
    std::ifstream in(FindLatestCheckpoint(dir_)->second, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  // LoadCheckpoint of `bytes` (written to a file) into a state like Saved()'s.
  absl::Status Load(const std::string& bytes) {
    const std::string path = dir_ + "/ckpt-00000002.pt";
    fs::create_directories(dir_);
    EXPECT_TRUE(AtomicWriteFile(path, bytes).ok());
    torch::Generator g = at::make_generator<at::CPUGeneratorImpl>(2);
    torch::Tensor marker = torch::zeros({4}, torch::kFloat64);
    return LoadCheckpoint(path, {nullptr, nullptr, {&g}, {{"marker", &marker}}}).status();
  }
  std::string Path() const { return dir_ + "/ckpt-00000002.pt"; }
};

TEST_F(CorruptCheckpointTest, IntactArchiveLoads) { EXPECT_TRUE(Load(Saved()).ok()); }

TEST_F(CorruptCheckpointTest, RefusesAFlippedBitInATensorByItsCrc) {
  std::string bytes = Saved();
  const double v = 1234.5;
  const size_t at = bytes.find(std::string(reinterpret_cast<const char*>(&v), sizeof(v)));
  ASSERT_NE(at, std::string::npos);
  bytes[at] ^= 0x01;
  const absl::Status s = Load(bytes);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              ::testing::MatchesRegex(Path() + ": corrupt checkpoint: entry 'archive/data/[0-9]+' "
                                               "fails its CRC-32 \\(recorded [0-9a-f]{8}, data [0-9a-f]{8}\\)"));
}

TEST_F(CorruptCheckpointTest, RefusesTruncationAndGarbage) {
  const std::string bytes = Saved();
  EXPECT_EQ(std::string(Load(bytes.substr(0, bytes.size() / 2)).message()),
            Path() + ": corrupt checkpoint: not a zip archive (no end-of-central-directory record)");
  EXPECT_EQ(std::string(Load("hello").message()), Path() + ": corrupt checkpoint: not a zip archive (5 bytes)");
  EXPECT_EQ(Load(bytes.substr(0, 40) + bytes.substr(bytes.size() - 200)).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(CorruptCheckpointTest, RefusesADeclaredSizeTheFileDoesNotHold) {
  // The first central-directory entry (signature PK\1\2, a stored tensor): declare 2^31 bytes.
  std::string bytes = Saved();
  const size_t cd = bytes.find(std::string("PK\x01\x02", 4));
  ASSERT_NE(cd, std::string::npos);
  bytes.replace(cd + 20, 8, std::string("\x00\x00\x00\x80\x00\x00\x00\x80", 8));  // compressed, uncompressed
  EXPECT_THAT(std::string(Load(bytes).message()),
              ::testing::MatchesRegex(Path() + ": corrupt checkpoint: entry 'archive/data/0' \\(2147483648 bytes at "
                                               "[0-9]+\\) runs past the file's data"));
}

TEST_F(CorruptCheckpointTest, RefusesANameWhoseTwoCopiesDiffer) {  // names carry no CRC
  std::string bytes = Saved();
  const size_t cd = bytes.find(std::string("PK\x01\x02", 4));
  ASSERT_NE(cd, std::string::npos);
  bytes[cd + 46] ^= 0x20;  // the first letter of the first central-directory name: 'a' -> 'A'
  EXPECT_EQ(std::string(Load(bytes).message()),
            Path() + ": corrupt checkpoint: entry 'Archive/data/0' has another name in its local header");
}

// The input fuzz/checkpoint_fuzzer.cc found (a bit flipped in archive/code/...py): it crashed the
// process inside LibTorch's TorchScript type parser (SEGV).
TEST_F(CorruptCheckpointTest, RefusesTheFuzzersCrashInput) {
  std::ifstream in(std::string(VSDM_SOURCE_DIR) + "/fuzz/corpus/checkpoint/crash-libtorch-type-parser-segv.pt",
                   std::ios::binary);
  ASSERT_TRUE(in.good());
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_THAT(std::string(Load(bytes).message()),
              ::testing::HasSubstr(": corrupt checkpoint: entry 'archive/code/__torch__/___torch_mangle_13.py' "));
}

TEST_F(CheckpointTest, NoCheckpointInMissingDir) { EXPECT_FALSE(FindLatestCheckpoint(dir_ + "/nope").has_value()); }

}  // namespace
}  // namespace vsdm::core
