#include "core/checkpoint.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include <gmock/gmock.h>

#include "absl/strings/str_format.h"
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

// H4 (review): checkpoints bound to their job, checked end to end, and a resume that falls back
// to the newest good one. Each of these passed a bad checkpoint (or failed the resume) before:
// the reader checked only shapes, and only the newest file was tried.
class JobCheckpointTest : public CheckpointTest {
 protected:
  // A trained network, its optimiser state and an updater with a moved A (a full job's state).
  struct Job {
    DsmTrainer trainer{ScoreNet("mlp", 2, 16), {}};
    VariationalUpdater updater{2, Options()};
    torch::Tensor a_train = torch::full({2, 2}, 0.5, torch::kFloat64);
    TrainStateRefs Refs() { return {&trainer, &updater, {}, {{"a_train", &a_train}}}; }
    static VariationalOptions Options() {
      VariationalOptions vo;
      vo.update = "sa";
      return vo;
    }
  };
  static std::unique_ptr<Job> Trained(int seed, int steps) {
    torch::manual_seed(seed);
    auto j = std::make_unique<Job>();
    KernelTable tab =
        BuildKernelTable(BetaSchedule{}, {0.001, 20}, torch::zeros({2, 2}, torch::kFloat64), torch::Tensor());
    torch::Generator g = at::make_generator<at::CPUGeneratorImpl>(seed);
    for (int i = 0; i < steps; ++i) {
      j->trainer.ComputeGradients(torch::randn({32, 2}, g), g, tab);
      j->trainer.ApplyGradients();
    }
    VariationalStats st;
    st.sxx = torch::eye(2, torch::kFloat64).unsqueeze(0);
    st.szx = torch::full({1, 2, 2}, static_cast<double>(seed), torch::kFloat64);
    st.sbeta = torch::ones({1}, torch::kFloat64);
    st.count = torch::ones({1}, torch::kFloat64);
    j->updater.Apply(st);
    return j;
  }
  // Everything a resume restores, as one vector (to compare two states).
  static std::vector<torch::Tensor> Flat(Job& j) {
    std::vector<torch::Tensor> out;
    for (auto& p : j.trainer.net()->parameters()) out.push_back(p.detach().clone());
    for (auto& p : j.trainer.ema_net()->parameters()) out.push_back(p.detach().clone());
    for (auto& t : j.updater.State()) out.push_back(t.clone());
    out.push_back(j.a_train.clone());
    out.push_back(torch::tensor({j.trainer.steps()}));
    return out;
  }
  static bool Same(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (!torch::equal(a[i], b[i])) return false;
    return true;
  }
  std::string File(int64_t round) const { return dir_ + "/ckpt-" + absl::StrFormat("%08d", round) + ".pt"; }
  // PickCheckpoint into `j` as job `id`.
  CheckpointPick Pick(Job& j, const CheckpointIdentity& id) {
    return PickCheckpoint(dir_, [&](const std::string& bytes) { return LoadCheckpointBytes(bytes, j.Refs(), id); });
  }
  const CheckpointIdentity mine_{"uid-aaaa", "hash-1111"};
};

TEST_F(JobCheckpointTest, ACheckpointOfAnotherJobUidIsRefusedAndTheStateIsUntouched) {
  auto other = Trained(1, 3);
  ASSERT_TRUE(SaveCheckpoint(dir_, 100, other->Refs(), 2, {"uid-bbbb", mine_.spec_hash}).ok());
  auto me = Trained(2, 1);
  const auto before = Flat(*me);
  auto r = LoadCheckpoint(File(100), me->Refs(), mine_);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(std::string(r.status().message()),
            File(100) + ": checkpoint of another job: it records job uid 'uid-bbbb' and spec hash 'hash-1111', "
                        "this job is uid 'uid-aaaa' with spec hash 'hash-1111'");
  EXPECT_TRUE(Same(Flat(*me), before));
  // The same job loads it; a reader without an identity (a standalone run) too.
  EXPECT_TRUE(LoadCheckpoint(File(100), me->Refs(), {"uid-bbbb", "hash-1111"}).ok());
  EXPECT_TRUE(Same(Flat(*me), Flat(*other)));
  EXPECT_TRUE(LoadCheckpoint(File(100), Trained(3, 1)->Refs()).ok());
}

TEST_F(JobCheckpointTest, ACheckpointOfAnotherSpecIsRefused) {
  auto other = Trained(1, 3);
  ASSERT_TRUE(SaveCheckpoint(dir_, 7, other->Refs(), 2, {mine_.job_uid, "hash-2222"}).ok());
  auto me = Trained(2, 1);
  auto r = LoadCheckpoint(File(7), me->Refs(), mine_);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(r.status().message()), ::testing::HasSubstr("spec hash 'hash-2222', this job is uid "
                                                                      "'uid-aaaa' with spec hash 'hash-1111'"));
  // Only the spec hash known (no uid): still refused.
  EXPECT_EQ(LoadCheckpoint(File(7), me->Refs(), {"", "hash-1111"}).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// The old "goes straight to the artifacts" bug: a finished job's final checkpoint (another uid,
// same shapes, same id in a recycled work dir) is never resumed, so never reported as this job's.
TEST_F(JobCheckpointTest, AFinishedJobOfAnotherUidIsNeverResumed) {
  auto other = Trained(1, 3);
  ASSERT_TRUE(SaveCheckpoint(dir_, 90, other->Refs(), 2, {"uid-bbbb", mine_.spec_hash}).ok());
  ASSERT_TRUE(SaveCheckpoint(dir_, 100, other->Refs(), 2, {"uid-bbbb", mine_.spec_hash}).ok());
  auto me = Trained(2, 1);
  const auto before = Flat(*me);
  CheckpointPick pick = Pick(*me, mine_);
  EXPECT_EQ(pick.round, 0);
  EXPECT_EQ(pick.path, "");
  ASSERT_EQ(pick.skipped.size(), 2u);
  EXPECT_EQ(pick.skipped[0].file, "ckpt-00000100.pt");
  EXPECT_THAT(pick.skipped[0].reason, ::testing::StartsWith("checkpoint of another job"));
  EXPECT_TRUE(Same(Flat(*me), before));
  // Renamed out of the way: no later attempt (and no upload) sees them as checkpoints.
  EXPECT_FALSE(FindLatestCheckpoint(dir_).has_value());
  EXPECT_TRUE(fs::exists(File(100) + ".bad"));
  EXPECT_TRUE(fs::exists(File(90) + ".bad"));
}

TEST_F(JobCheckpointTest, ATruncatedNewestCheckpointFallsBackToThePreviousOne) {
  auto job = Trained(1, 3);
  ASSERT_TRUE(SaveCheckpoint(dir_, 30, job->Refs(), 3, mine_).ok());
  const auto at30 = Flat(*job);
  auto later = Trained(4, 5);
  ASSERT_TRUE(SaveCheckpoint(dir_, 40, later->Refs(), 3, mine_).ok());
  const std::string bytes = ReadFile(File(40)).value();
  ASSERT_TRUE(AtomicWriteFile(File(40), bytes.substr(0, bytes.size() * 2 / 3)).ok());
  auto me = Trained(2, 1);
  CheckpointPick pick = Pick(*me, mine_);
  EXPECT_EQ(pick.round, 30);
  EXPECT_EQ(pick.path, File(30));
  EXPECT_EQ(pick.bytes, ReadFile(File(30)).value());
  EXPECT_TRUE(Same(Flat(*me), at30));
  ASSERT_EQ(pick.skipped.size(), 1u);
  EXPECT_EQ(DescribeSkips(pick),
            std::vector<std::string>{"skipped checkpoint ckpt-00000040.pt: corrupt checkpoint: not a zip archive (no "
                                     "end-of-central-directory record); resuming from ckpt-00000030.pt"});
  EXPECT_FALSE(fs::exists(File(40)));
  EXPECT_TRUE(fs::exists(File(40) + ".bad"));
  // The next attempt goes straight to the good one.
  auto again = Trained(5, 1);
  EXPECT_TRUE(Pick(*again, mine_).skipped.empty());
}

TEST_F(JobCheckpointTest, NonFiniteValuesAreRefusedWhereverTheyAre) {
  struct Case {
    const char* what;
    std::function<void(Job&)> poison;
  };
  const std::vector<Case> cases = {
      {"net.", [](Job& j) { torch::NoGradGuard g; j.trainer.net()->parameters()[0].view(-1)[3] = NAN; }},
      {"ema.", [](Job& j) { torch::NoGradGuard g; j.trainer.ema_net()->parameters()[1].view(-1)[0] = INFINITY; }},
      {"optimizer.0.", [](Job& j) {
         for (auto& [key, st] : j.trainer.optimizer().state())
           static_cast<torch::optim::AdamWParamState&>(*st).exp_avg_sq().view(-1)[0] = NAN;
       }},
      {"variational.0 ", [](Job& j) {
         auto st = j.updater.State();
         st[0][1][1] = NAN;  // A
         j.updater.LoadState(st);
       }},
      {"extra.a_train ", [](Job& j) { j.a_train[0][0] = -INFINITY; }},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    fs::remove_all(dir_);
    auto job = Trained(1, 3);
    c.poison(*job);
    ASSERT_TRUE(SaveCheckpoint(dir_, 5, job->Refs(), 2, mine_).ok());
    auto me = Trained(2, 1);
    const auto before = Flat(*me);
    auto r = LoadCheckpoint(File(5), me->Refs(), mine_);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(std::string(r.status().message()),
                ::testing::HasSubstr(std::string("checkpoint holds non-finite values: ") + c.what));
    EXPECT_TRUE(Same(Flat(*me), before));
  }
}

TEST_F(JobCheckpointTest, ANaNNewestFallsBackAndWhenAllAreBadTheJobStartsFromRoundZero) {
  auto good = Trained(1, 3);
  ASSERT_TRUE(SaveCheckpoint(dir_, 10, good->Refs(), 3, mine_).ok());
  auto nan = Trained(1, 3);
  {
    torch::NoGradGuard g;
    nan->trainer.net()->parameters()[0].fill_(NAN);
  }
  ASSERT_TRUE(SaveCheckpoint(dir_, 20, nan->Refs(), 3, mine_).ok());
  auto me = Trained(2, 1);
  CheckpointPick pick = Pick(*me, mine_);
  EXPECT_EQ(pick.round, 10);
  ASSERT_EQ(pick.skipped.size(), 1u);
  EXPECT_THAT(pick.skipped[0].reason, ::testing::StartsWith("checkpoint holds non-finite values: net."));

  // Now the one good checkpoint is damaged (a flipped bit: its CRC), next to another job's and an
  // unreadable one: all three are skipped, the state stays as it was, and the job starts again.
  std::string bytes = ReadFile(File(10)).value();
  const torch::Tensor w = good->trainer.net()->parameters()[0].detach().contiguous();
  const size_t at = bytes.find(std::string(static_cast<const char*>(w.data_ptr()), 16));
  ASSERT_NE(at, std::string::npos);
  bytes[at] ^= 0x10;
  ASSERT_TRUE(AtomicWriteFile(File(10), bytes).ok());
  ASSERT_TRUE(SaveCheckpoint(dir_, 30, good->Refs(), 3, {"uid-bbbb", mine_.spec_hash}).ok());
  fs::create_directories(File(40));  // not a regular file: not a checkpoint at all
  ASSERT_TRUE(AtomicWriteFile(File(35), "").ok());
  auto fresh = Trained(3, 1);
  const auto before = Flat(*fresh);
  pick = Pick(*fresh, mine_);
  EXPECT_EQ(pick.round, 0);
  EXPECT_TRUE(pick.bytes.empty());
  ASSERT_EQ(pick.skipped.size(), 3u);
  EXPECT_EQ(pick.skipped[0].file, "ckpt-00000035.pt");
  EXPECT_EQ(pick.skipped[1].file, "ckpt-00000030.pt");
  EXPECT_EQ(pick.skipped[2].file, "ckpt-00000010.pt");
  EXPECT_THAT(pick.skipped[2].reason, ::testing::StartsWith("corrupt checkpoint: "));
  EXPECT_THAT(DescribeSkips(pick)[2], ::testing::EndsWith("; starting from round 0"));
  EXPECT_TRUE(Same(Flat(*fresh), before));
  EXPECT_FALSE(FindLatestCheckpoint(dir_).has_value());
}

// The digest (Note [Checkpoint identity and digest]) checks what the parse hands back against
// what was saved: an archive whose recorded digest does not match its state is refused.
TEST_F(JobCheckpointTest, AStateThatDoesNotMatchItsDigestIsRefused) {
  torch::Generator g = at::make_generator<at::CPUGeneratorImpl>(1);
  torch::Tensor marker = torch::full({4}, 2.5, torch::kFloat64);
  std::string bytes = SerializeCheckpoint(3, {nullptr, nullptr, {&g}, {{"marker", &marker}}}, mine_).value();
  torch::serialize::InputArchive in;
  in.load_from(bytes.data(), bytes.size());
  // The same archive rebuilt with one tensor value changed and everything else (digest) kept.
  torch::serialize::OutputArchive out;
  for (const std::string& key : in.keys()) {
    if (key == "training") continue;  // every module's own attribute
    c10::IValue v;
    ASSERT_TRUE(in.try_read(key, v)) << key;
    if (key == "extra.marker") v = torch::full({4}, 2.75, torch::kFloat64);
    if (v.isTensor()) {
      out.write(key, v.toTensor());
    } else {
      out.write(key, v);
    }
  }
  std::ostringstream os;
  out.save_to(os);
  torch::Generator g2 = at::make_generator<at::CPUGeneratorImpl>(2);
  torch::Tensor m2 = torch::zeros({4}, torch::kFloat64);
  auto r = LoadCheckpointBytes(os.str(), {nullptr, nullptr, {&g2}, {{"marker", &m2}}}, mine_);
  EXPECT_THAT(std::string(r.status().message()),
              ::testing::MatchesRegex("corrupt checkpoint: the state read back does not match its digest "
                                      "\\(recorded [0-9a-f]{8}, read [0-9a-f]{8}\\)"));
  EXPECT_TRUE(torch::equal(m2, torch::zeros({4}, torch::kFloat64)));
  EXPECT_TRUE(LoadCheckpointBytes(bytes, {nullptr, nullptr, {&g2}, {{"marker", &m2}}}, mine_).ok());
  EXPECT_TRUE(torch::equal(m2, marker));
}

// A checkpoint written before checkpoints recorded their job (no meta.*) still loads where no
// identity is asked for, and is refused by a job that has one (its origin is unknown).
TEST_F(JobCheckpointTest, ACheckpointWithoutAnIdentityLoadsOnlyWhereNoneIsAsked) {
  torch::Generator g = at::make_generator<at::CPUGeneratorImpl>(1);
  torch::serialize::OutputArchive out;
  out.write("round", torch::tensor({int64_t{4}}, torch::kLong));
  out.write("rng.0", g.get_state());
  std::ostringstream os;
  out.save_to(os);
  torch::Generator g2 = at::make_generator<at::CPUGeneratorImpl>(2);
  auto r = LoadCheckpointBytes(os.str(), {nullptr, nullptr, {&g2}, {}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, 4);
  r = LoadCheckpointBytes(os.str(), {nullptr, nullptr, {&g2}, {}}, mine_);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(r.status().message()), ::testing::EndsWith("(written before checkpoints recorded their job)"));
}

}  // namespace
}  // namespace vsdm::core
