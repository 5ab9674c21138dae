// The distributed runtime with real Gloo process groups whose ranks are threads of this process
// (an in-process c10d store instead of the TCPStore; the collectives are the real ones, over
// loopback TCP). Multi-process runs are in tests/integration/.
#include "worker/train/distributed_job.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <functional>
#include <iostream>
#include <iterator>
#include <mutex>
#include <thread>

#include <gmock/gmock.h>

#include "common/job_spec.h"
#include "common/train_protocol.h"
#include "core/checkpoint.h"
#include "worker/train/comm.h"
#include "worker/train/data_parallel.h"
#include "tests/worker/train/on_threads.h"
#include "worker/train/preemption.h"
#include "worker/train/round_timing.h"

namespace vsdm::worker {
namespace {
namespace fs = std::filesystem;
using std::chrono::milliseconds;

CommOptions LoopbackOptions(int timeout_ms = 30000) {
  CommOptions o;
  o.bind = "127.0.0.1";
  o.timeout = milliseconds(timeout_ms);
  return o;
}

class DistributedTest : public ::testing::Test {
 protected:
  void SetUp() override { torch::set_num_threads(1); }
};

TEST_F(DistributedTest, ShardsCoverTheBatchAndWeightsSumToOne) {
  for (int64_t B : {1024, 1000, 7}) {
    for (int64_t W : {1, 2, 3, 7}) {
      int64_t total = 0;
      double w = 0;
      for (int64_t r = 0; r < W; ++r) {
        total += ShardSize(B, W, r);
        w += ShardWeight(B, W, r);
        EXPECT_LE(std::abs(ShardSize(B, W, r) - B / W), 1);
      }
      EXPECT_EQ(total, B);
      EXPECT_NEAR(w, 1.0, 1e-12);
    }
  }
}

TEST_F(DistributedTest, BucketedAllReduceSumsGradientsAcrossRanksInSeveralBuckets) {
  StorePtr store = MakeInProcessStore();
  auto results = OnThreads(2, [&](int rank) {
    auto comm = Comm::Create(store, "g", rank, 2, LoopbackOptions());
    EXPECT_TRUE(comm.ok()) << comm.status();
    std::vector<torch::Tensor> params = {torch::zeros({3, 4}, torch::requires_grad()),
                                         torch::zeros({5}, torch::requires_grad()),
                                         torch::zeros({2, 2}, torch::requires_grad())};
    for (size_t i = 0; i < params.size(); ++i)
      params[i].mutable_grad() = torch::full_like(params[i], static_cast<float>((rank + 1) * (i + 1)));
    GradientBuckets buckets(params, /*bucket_bytes=*/5 * 4);  // 5 floats: forces one bucket per tensor
    EXPECT_EQ(buckets.buckets(), 3);
    torch::Tensor extras = torch::full({1}, rank == 0 ? 0.25f : 0.5f);
    EXPECT_TRUE(buckets.AllReduce(**comm, 2.0, extras).ok());
    std::vector<torch::Tensor> grads;
    for (auto& p : params) grads.push_back(p.grad().clone());
    grads.push_back(extras.clone());
    return grads;
  });
  for (int rank = 0; rank < 2; ++rank) {
    for (int i = 0; i < 3; ++i) {
      // 2 * (1 + 2) * (i + 1) on every rank.
      EXPECT_TRUE(torch::allclose(results[rank][i], torch::full_like(results[rank][i], 6.0f * (i + 1))));
    }
    EXPECT_NEAR(results[rank][3].item<double>(), 0.75, 1e-6);
  }
}

// Must-show 1: two trainers on half a batch each take the same step as one trainer on all of it.
TEST_F(DistributedTest, TwoTrainersOnHalfBatchesMatchOneTrainerOnTheWholeBatch) {
  core::KernelTable table = core::BuildKernelTable(
      core::BetaSchedule{}, {0.001, 50}, torch::tensor({{-0.3, 0.1}, {0.0, -0.2}}, torch::kFloat64), torch::Tensor());
  torch::Generator g = at::make_generator<at::CPUGeneratorImpl>(5);
  const int64_t B = 256;
  torch::Tensor x0 = torch::randn({B, 2}, g) * 3.0;
  torch::Tensor idx = torch::randint(0, table.size(), {B}, g, torch::kLong);
  torch::Tensor eps = torch::randn({B, 2}, g);
  auto make_trainer = [] {
    torch::manual_seed(11);
    return std::make_unique<core::DsmTrainer>(core::ScoreNet("toy_resnet", 2, 64), core::DsmTrainerOptions{});
  };
  auto single = make_trainer();
  single->ComputeGradients(x0, idx, eps, table);
  single->ApplyGradients();

  std::vector<std::unique_ptr<core::DsmTrainer>> ranks;
  ranks.push_back(make_trainer());
  ranks.push_back(make_trainer());
  StorePtr store = MakeInProcessStore();
  auto ok = OnThreads(2, [&](int rank) {
    auto comm = Comm::Create(store, "trainers", rank, 2, LoopbackOptions());
    if (!comm.ok()) return false;
    const int64_t n = ShardSize(B, 2, rank), off = rank == 0 ? 0 : ShardSize(B, 2, 0);
    core::DsmTrainer& t = *ranks[rank];
    torch::Tensor extras = torch::zeros({1});
    t.ComputeGradients(x0.narrow(0, off, n), idx.narrow(0, off, n), eps.narrow(0, off, n), table);
    GradientBuckets buckets(t.net()->parameters(), 25 << 20);
    if (!buckets.AllReduce(**comm, ShardWeight(B, 2, rank), extras).ok()) return false;
    t.ApplyGradients();
    return true;
  });
  ASSERT_TRUE(ok[0] && ok[1]);
  // The all-reduced gradient is the whole batch's gradient to float32 rounding (the shards' sums
  // are added in another order). AdamW's first step moves each weight by about lr * g / |g|,
  // which turns a rounding-level difference in a near-zero gradient into up to ~1e-5 of weight:
  // the parameters agree to that, the gradients to 1e-6 relative.
  auto ps = single->net()->parameters();
  for (int rank = 0; rank < 2; ++rank) {
    auto pr = ranks[rank]->net()->parameters();
    double max_grad = 0, grad_diff = 0, param_diff = 0;
    for (size_t i = 0; i < ps.size(); ++i) {
      max_grad = std::max(max_grad, ps[i].grad().abs().max().item<double>());
      grad_diff = std::max(grad_diff, (pr[i].grad() - ps[i].grad()).abs().max().item<double>());
      param_diff = std::max(param_diff, (pr[i] - ps[i]).abs().max().item<double>());
    }
    std::cout << "rank " << rank << ": max |grad diff| " << grad_diff << " (max |grad| " << max_grad
              << "), max |param diff| " << param_diff << "\n";
    EXPECT_GT(max_grad, 1e-3);
    EXPECT_LT(grad_diff, 1e-6 * max_grad) << "rank " << rank;
    EXPECT_LT(param_diff, 2e-5) << "rank " << rank;
  }
  // And the trainers agree with each other exactly: they applied the same all-reduced gradient.
  auto p0 = ranks[0]->net()->parameters(), p1 = ranks[1]->net()->parameters();
  for (size_t i = 0; i < p0.size(); ++i) EXPECT_TRUE(torch::equal(p0[i], p1[i]));
}

TEST_F(DistributedTest, BroadcastGivesEveryRankBitIdenticalA) {
  StorePtr store = MakeInProcessStore();
  torch::Generator g = at::make_generator<at::CPUGeneratorImpl>(3);
  torch::Tensor a_root = torch::randn({6, 6}, g, torch::kFloat64);
  auto sums = OnThreads(3, [&](int rank) {
    auto comm = Comm::Create(store, "world", rank, 3, LoopbackOptions());
    EXPECT_TRUE(comm.ok()) << comm.status();
    torch::Tensor a = rank == 2 ? a_root.clone() : torch::zeros({6, 6}, torch::kFloat64);
    EXPECT_TRUE((*comm)->Broadcast(a, 2).ok());
    std::string bytes = rank == 2 ? std::string("state\0with\0nuls", 15) : std::string();
    EXPECT_TRUE((*comm)->BroadcastBytes(bytes, 2).ok());
    EXPECT_EQ(bytes, std::string("state\0with\0nuls", 15));
    return TensorChecksum(a);
  });
  EXPECT_EQ(sums[0], TensorChecksum(a_root));
  EXPECT_EQ(sums[1], sums[0]);
  EXPECT_EQ(sums[2], sums[0]);
  EXPECT_NE(sums[0], TensorChecksum(torch::zeros({6, 6}, torch::kFloat64)));
}

// H1: the payload size comes from the wire. A root that lies (a size no one can allocate, a
// negative one) or sends more than the caller's bound is refused on the receiving side before
// any allocation, and since every rank refuses before the payload is posted, the group stays in
// step: the next broadcast works.
TEST_F(DistributedTest, BroadcastBytesRefusesAnOutOfBoundSizeFromTheWireWithoutAllocatingIt) {
  StorePtr store = MakeInProcessStore();
  auto results = OnThreads(2, [&](int rank) {
    std::vector<absl::Status> out;
    auto comm = Comm::Create(store, "bytes", rank, 2, LoopbackOptions(/*timeout_ms=*/5000));
    if (!comm.ok()) return std::vector<absl::Status>{comm.status()};
    Comm& c = **comm;
    std::string got;
    if (rank == 0) {  // the lying root posts the size broadcast BroadcastBytes would, with a bad size
      for (int64_t lie : {int64_t{1} << 50, int64_t{-5}}) {
        torch::Tensor n = torch::tensor({lie}, torch::kLong);
        out.push_back(c.Broadcast(n, 0));
      }
      std::string big(100, 'x');
      out.push_back(c.BroadcastBytes(big, 0, /*max_bytes=*/64));
      std::string fine = "fine";
      out.push_back(c.BroadcastBytes(fine, 0));
      return out;
    }
    out.push_back(c.BroadcastBytes(got, 0));
    out.push_back(c.BroadcastBytes(got, 0));
    out.push_back(c.BroadcastBytes(got, 0, /*max_bytes=*/64));
    out.push_back(c.BroadcastBytes(got, 0));
    EXPECT_EQ(got, "fine");
    return out;
  });
  ASSERT_EQ(results[0].size(), 4u);
  ASSERT_EQ(results[1].size(), 4u);
  EXPECT_TRUE(results[0][0].ok() && results[0][1].ok());
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(results[1][i].code(), absl::StatusCode::kOutOfRange) << i << ": " << results[1][i];
    EXPECT_NE(results[1][i].message().find("refused"), std::string::npos) << results[1][i];
  }
  EXPECT_NE(results[1][0].message().find(std::to_string(int64_t{1} << 50)), std::string::npos) << results[1][0];
  EXPECT_EQ(results[0][2].code(), absl::StatusCode::kOutOfRange) << "the root refuses its own oversize payload too";
  EXPECT_TRUE(results[0][3].ok()) << results[0][3];
  EXPECT_TRUE(results[1][3].ok()) << results[1][3];
}

TEST(StoreKeyPrefixTest, HoldsTheJobTheAttemptAndTheSecretWhenThereIsOne) {
  DistributedOptions o;
  o.job_id = "job-00000007";
  o.attempt = 3;
  EXPECT_EQ(StoreKeyPrefix(o), "job-00000007/attempt-3/");
  o.rendezvous_secret = "9f86d081884c7d65";
  EXPECT_EQ(StoreKeyPrefix(o), "job-00000007/attempt-3/9f86d081884c7d65/");
}

// H1: two jobs' attempt 1 on one store (a reused port) keep to their own keys, and a rank
// without the attempt's secret never joins it: the others time out instead of taking it in.
// (A join waits as long as its store does: a TCPStore's is --pg-timeout; job-c's store here 1.5 s.)
TEST_F(DistributedTest, JobsShareAStoreWithoutMeetingAndARankWithTheWrongSecretNeverJoins) {
  StorePtr store = MakeInProcessStore(), job_c_store = MakeInProcessStore(milliseconds(1500));
  struct Member {
    std::string job, secret;
    int rank;
  };
  const std::vector<Member> members = {{"job-a", "aaaa1111", 0}, {"job-a", "aaaa1111", 1}, {"job-b", "bbbb2222", 0},
                                       {"job-b", "bbbb2222", 1}, {"job-c", "c0ffee01", 0}, {"job-c", "deadbeef", 1}};
  auto results = OnThreads(static_cast<int>(members.size()), [&](int i) -> absl::StatusOr<double> {
    const Member& m = members[i];
    DistributedOptions o;
    o.trainers = 1;
    o.rank = m.rank;
    o.attempt = 1;
    o.job_id = m.job;
    o.rendezvous_secret = m.secret;
    const bool wrong_secret = m.job == "job-c";
    auto comms = JoinGroups(wrong_secret ? job_c_store : store, o, LoopbackOptions(wrong_secret ? 1500 : 30000));
    if (!comms.ok()) return comms.status();
    // Each job's rank 1 broadcasts its own value: a rank that met the other job would see its value.
    torch::Tensor v = torch::tensor({m.rank == 1 ? (m.job == "job-a" ? 1.0 : 2.0) : 0.0}, torch::kFloat64);
    if (absl::Status s = comms->world->Broadcast(v, 1); !s.ok()) return s;
    return v.item<double>();
  });
  for (int i : {0, 1}) {
    ASSERT_TRUE(results[i].ok()) << results[i].status();
    EXPECT_EQ(*results[i], 1.0);
  }
  for (int i : {2, 3}) {
    ASSERT_TRUE(results[i].ok()) << results[i].status();
    EXPECT_EQ(*results[i], 2.0);
  }
  for (int i : {4, 5}) {
    ASSERT_FALSE(results[i].ok()) << "job-c rank " << members[i].rank << " joined with a mismatched secret";
    EXPECT_EQ(results[i].status().code(), absl::StatusCode::kDeadlineExceeded) << results[i].status();
    // Errors name the group, never the secret (they reach logs and the coordinator's events).
    EXPECT_NE(results[i].status().message().find("job-c/attempt-1/world"), std::string::npos) << results[i].status();
    EXPECT_EQ(results[i].status().message().find(members[i].secret), std::string::npos) << results[i].status();
  }
}

TEST_F(DistributedTest, AStuckPeerTurnsIntoAnErrorWithinTheTimeoutNotAHang) {
  StorePtr store = MakeInProcessStore();
  std::promise<void> release;
  auto released = release.get_future().share();
  const auto t0 = std::chrono::steady_clock::now();
  auto status = OnThreads(2, [&](int rank) -> absl::Status {
    auto comm = Comm::Create(store, "world", rank, 2, LoopbackOptions(/*timeout_ms=*/1500));
    if (!comm.ok()) return comm.status();
    if (rank == 1) {  // joins, then never posts the broadcast rank 0 waits for
      released.wait();
      return absl::OkStatus();
    }
    torch::Tensor t = torch::zeros({4});
    absl::Status s = (*comm)->Broadcast(t, 1);
    release.set_value();
    return s;
  });
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_FALSE(status[0].ok());
  EXPECT_EQ(status[0].code(), absl::StatusCode::kDeadlineExceeded) << status[0];
  EXPECT_LT(secs, 15.0);
}

// A local error in a real collective (a root outside the group) is this process's bug: INTERNAL,
// so vsdm-train exits 1, not 3 ("a peer rank is gone", which would send the operator hunting for
// a dead node). Before, every non-timeout c10d error was reported as UNAVAILABLE.
TEST_F(DistributedTest, ALocalCollectiveErrorIsInternalNotAPeerLoss) {
  StorePtr store = MakeInProcessStore();
  auto comm = Comm::Create(store, "solo", 0, 1, LoopbackOptions(/*timeout_ms=*/5000));
  ASSERT_TRUE(comm.ok()) << comm.status();
  torch::Tensor t = torch::zeros({4});
  absl::Status s = (*comm)->Broadcast(t, /*root=*/5);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
}

TEST(CommErrorTest, TimeoutsAndLostPeersAreTheOnlyRetryableErrors) {
  EXPECT_EQ(ClassifyCommError("w", "Timed out waiting 1500ms for recv operation to complete").code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(ClassifyCommError("w", "[/gloo/transport/tcp/pair.cc:598] Connection closed by peer [127.0.0.1]:1").code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(ClassifyCommError("w", "Read error [127.0.0.1]:1: Connection reset by peer").code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(ClassifyCommError("w", "The client socket has failed to connect to any network address").code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(ClassifyCommError("w", "invalid root rank: 5").code(), absl::StatusCode::kInternal);
  EXPECT_EQ(ClassifyCommError("w", "Tensors must be of the same type\nframe #0").code(), absl::StatusCode::kInternal);
  EXPECT_EQ(ClassifyCommError("bcast", "invalid root rank: 5\nframe #0 ...").message(), "bcast: invalid root rank: 5");
}

// A whole small job with 2 trainer threads and a variational thread.
class TinyJobTest : public DistributedTest, public ::testing::WithParamInterface<bool> {
 protected:
  void SetUp() override {
    DistributedTest::SetUp();
    root_ = (fs::temp_directory_path() / ("vsdm_dist_" + std::to_string(::getpid()))).string();
    fs::remove_all(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  static JobSetup SetupFrom(const std::string& yaml) {
    auto spec = ParseJobSpecYaml(yaml);
    EXPECT_TRUE(spec.ok()) << spec.status();
    auto setup = MakeJobSetup(*spec);
    EXPECT_TRUE(setup.ok()) << setup.status();
    return std::move(*setup);
  }

  // 200 digits shared by 2 trainers: shards of 100, 48 images per trainer step, 240 per round,
  // so epochs end mid-round and the round-2 checkpoint falls mid-epoch.
  JobSetup ImageSetup(bool async) {
    return SetupFrom(R"(
name: tiny-images
problem: {dataset: digits, train_limit: 200}
diffusion: {steps: 10}
variational: {form: diagonal, trajectories: 32, async: )" +
                     std::string(async ? "true" : "false") + R"(}
model: {arch: mlp, hidden: 32, parameterization: eps}
train: {rounds: 4, steps_per_round: 5, batch_points: 96, checkpoint_every: 2}
sample: {n: 64}
resources: {trainers: 2}
)");
  }

  JobSetup Setup(bool async) {
    std::string yaml = R"(
name: tiny
problem: {dataset: spiral, scale: [1.0, 4.0]}
diffusion: {steps: 20}
variational: {trajectories: 64, async: )" +
                       std::string(async ? "true" : "false") + R"(}
model: {arch: mlp, hidden: 32}
train: {rounds: 4, steps_per_round: 5, batch_points: 96, checkpoint_every: 2}
sample: {n: 400}
resources: {trainers: 2}
)";
    auto spec = ParseJobSpecYaml(yaml);
    EXPECT_TRUE(spec.ok()) << spec.status();
    auto setup = MakeJobSetup(*spec);
    EXPECT_TRUE(setup.ok()) << setup.status();
    return std::move(*setup);
  }

  // Runs the 3 ranks to the end (`tweak` adjusts each rank's options); returns each rank's result.
  std::vector<absl::StatusOr<nlohmann::json>> RunRanks(
      const JobSetup& setup, const std::string& out,
      const std::function<void(DistributedOptions&)>& tweak = [](DistributedOptions&) {}) {
    StorePtr store = MakeInProcessStore();
    return OnThreads(3, [&](int rank) -> absl::StatusOr<nlohmann::json> {
      DistributedOptions o;
      o.out_dir = out;
      o.trainers = 2;
      o.rank = rank;
      tweak(o);
      auto comms = JoinGroups(store, o, LoopbackOptions());
      if (!comms.ok()) return comms.status();
      return RunRank(setup, *comms, o);
    });
  }
  std::vector<nlohmann::json> Run(const JobSetup& setup, const std::string& out,
                                  const std::function<void(DistributedOptions&)>& tweak = [](DistributedOptions&) {}) {
    std::vector<nlohmann::json> out_json;
    int rank = 0;
    for (auto& r : RunRanks(setup, out, tweak)) {
      EXPECT_TRUE(r.ok()) << "rank " << rank++ << ": " << r.status();
      out_json.push_back(r.ok() ? *r : nlohmann::json());
    }
    return out_json;
  }

  static std::vector<std::string> Checksums(const nlohmann::json& summary) {
    std::vector<std::string> out;
    for (const auto& r : summary["rounds"]) out.push_back(r["a_checksum"].get<std::string>());
    return out;
  }

  std::string root_;
};

TEST_P(TinyJobTest, AllRanksHoldTheSameAEveryRoundAndAResumeReproducesTheRun) {
  const bool async = GetParam();
  JobSetup setup = Setup(async);
  const std::string full = root_ + "/full", resumed = root_ + "/resumed";
  auto res = Run(setup, full);
  ASSERT_TRUE(res[0].contains("distributed"));
  const auto& ranks = res[0]["distributed"]["ranks"];
  ASSERT_EQ(ranks.size(), 3u);
  auto a0 = Checksums(ranks[0]);
  ASSERT_EQ(a0.size(), 4u);
  EXPECT_EQ(Checksums(ranks[1]), a0);
  EXPECT_EQ(Checksums(ranks[2]), a0);
  // A moves: the rounds after the first update see a different A (async: one round later).
  EXPECT_NE(a0[async ? 2 : 1], a0[0]);
  for (const char* f : {"samples.npy", "samples.png", "metrics.json", "model.pt"})
    EXPECT_TRUE(fs::exists(fs::path(full) / f)) << f;
  for (const auto& r : ranks[0]["rounds"]) {
    EXPECT_GT(r["compute_sec"].get<double>(), 0.0);
    EXPECT_GT(r["allreduce_sec"].get<double>(), 0.0);
  }
  EXPECT_GT(ranks[2]["totals"]["variational_sec"].get<double>(), 0.0);

  // A restart from the round-2 checkpoint computes exactly what the uninterrupted run did.
  auto ckpt = core::FindLatestCheckpoint(full + "/checkpoint");
  ASSERT_TRUE(ckpt.has_value());
  EXPECT_EQ(ckpt->first, 4);
  fs::create_directories(resumed + "/checkpoint");
  fs::copy_file(full + "/checkpoint/ckpt-00000002.pt", resumed + "/checkpoint/ckpt-00000002.pt");
  auto res2 = Run(setup, resumed);
  ASSERT_TRUE(res2[0].contains("distributed"));
  EXPECT_EQ(res2[0]["resumed_from_round"].get<int64_t>(), 2);
  auto b0 = Checksums(res2[0]["distributed"]["ranks"][0]);
  ASSERT_EQ(b0.size(), 2u);
  EXPECT_EQ(b0[0], a0[2]);
  EXPECT_EQ(b0[1], a0[3]);
  EXPECT_EQ(res2[0]["A"], res[0]["A"]);
  EXPECT_DOUBLE_EQ(res2[0]["energy_distance"].get<double>(), res[0]["energy_distance"].get<double>());
}

TEST_P(TinyJobTest, AnImageJobResumedMidEpochComputesWhatTheUninterruptedRunDid) {
  JobSetup setup = ImageSetup(GetParam());
  ASSERT_TRUE(setup.images != nullptr);
  // Each trainer reads its own shard: within an epoch the two never see the same image.
  for (int64_t step : {0, 1, 2, 5}) {
    torch::Generator g = MakeGenerator(setup.spec, Stream::kData);
    torch::Tensor a = setup.TrainBatch(48, 0, 2, step, g), b = setup.TrainBatch(48, 1, 2, step, g);
    EXPECT_EQ(a.sizes(), (std::vector<int64_t>{48, 64}));
    EXPECT_FALSE(torch::equal(a, b));
  }
  const std::string full = root_ + "/full", resumed = root_ + "/resumed";
  auto res = Run(setup, full);
  ASSERT_TRUE(res[0].contains("quality")) << res[0].dump().substr(0, 400);
  EXPECT_EQ(res[0]["a"].size(), 64u);  // A is a vector: one value per pixel
  fs::create_directories(resumed + "/checkpoint");
  fs::copy_file(full + "/checkpoint/ckpt-00000002.pt", resumed + "/checkpoint/ckpt-00000002.pt");
  auto res2 = Run(setup, resumed);
  ASSERT_TRUE(res2[0].contains("quality"));
  EXPECT_EQ(res2[0]["resumed_from_round"].get<int64_t>(), 2);
  EXPECT_EQ(Checksums(res2[0]["distributed"]["ranks"][0]).back(), Checksums(res[0]["distributed"]["ranks"][0]).back());
  EXPECT_EQ(res2[0]["a"], res[0]["a"]);
  EXPECT_DOUBLE_EQ(res2[0]["quality"]["fd"].get<double>(), res[0]["quality"]["fd"].get<double>());
  for (const char* f : {"samples.npy", "samples.png", "metrics.json", "model.pt"})
    EXPECT_TRUE(fs::exists(fs::path(resumed) / f)) << f;
}

// Note [Preemption]: a stop told to ONE rank (trainer 1 in the sync run, the variational rank in
// the async one) stops every rank after the same round, trainer 0 writes that round's checkpoint
// although it is off the checkpoint_every schedule, and every rank returns PreemptedError (exit
// 75); the next attempt resumes there and computes exactly what the uninterrupted run did.
// Before, nothing stopped on a notice: SIGTERM killed the rank, its peers failed (exit 3) and the
// work since the last scheduled checkpoint was lost.
TEST_P(TinyJobTest, AStopToOneRankStopsEveryRankAfterTheSameRoundAndTheResumeReproducesTheRun) {
  const bool async = GetParam();
  JobSetup setup = Setup(async);
  const std::string full = root_ + "/full", out = root_ + "/preempted";
  auto res = Run(setup, full);
  ASSERT_TRUE(res[0].contains("distributed"));
  const auto a0 = Checksums(res[0]["distributed"]["ranks"][0]);
  const int told = async ? 2 : 1;
  std::vector<std::string> events;
  std::mutex mu;
  auto stopped = RunRanks(setup, out, [&](DistributedOptions& o) {
    // Told during round 3 (its [5] is the third stop check): a round that writes no checkpoint.
    if (o.rank == told) o.stop_requested = [calls = 0]() mutable { return ++calls >= 3; };
    o.on_event = [&](const std::string& line) {
      std::lock_guard<std::mutex> l(mu);
      events.push_back(line);
    };
  });
  for (int rank = 0; rank < 3; ++rank) {
    SCOPED_TRACE(rank);
    ASSERT_FALSE(stopped[rank].ok());
    EXPECT_TRUE(IsPreempted(stopped[rank].status())) << stopped[rank].status();
    EXPECT_THAT(std::string(stopped[rank].status().message()),
                ::testing::HasSubstr(std::string("preempted: after round 3/4: a preemption notice (SIGTERM) to ") +
                                     (async ? "the variational rank" : "trainer 1")));
  }
  EXPECT_TRUE(fs::exists(out + "/checkpoint/ckpt-00000003.pt"));
  EXPECT_FALSE(fs::exists(out + "/metrics.json"));
  EXPECT_THAT(events, ::testing::Contains(::testing::HasSubstr("checkpoint ckpt-00000003.pt written; exit 75")));
  EXPECT_THAT(events, ::testing::Contains(::testing::MatchesRegex(
                          "\\[trainer 0\\] preemption check \\[5\\]: [0-9.]+ ms per round, [0-9.]+% of the round "
                          "time \\(3 rounds\\)")));
  for (const auto& e : events) std::cout << e << "\n";

  auto res2 = Run(setup, out);
  ASSERT_TRUE(res2[0].contains("distributed"));
  EXPECT_EQ(res2[0]["resumed_from_round"].get<int64_t>(), 3);
  const auto b0 = Checksums(res2[0]["distributed"]["ranks"][0]);
  ASSERT_EQ(b0.size(), 1u);
  EXPECT_EQ(b0[0], a0[3]);
  EXPECT_EQ(res2[0]["A"], res[0]["A"]);
  EXPECT_DOUBLE_EQ(res2[0]["energy_distance"].get<double>(), res[0]["energy_distance"].get<double>());
}

// H4 (review) through the runtime: a recycled out dir holding another job's finished checkpoints
// is not resumed (the old code went straight to the artifacts and reported the other job's model
// as this one's), and a corrupt newest checkpoint falls back to the previous one instead of
// failing the attempt (which, retried, used to spend every restart).
TEST_P(TinyJobTest, ResumeRefusesAnotherJobsCheckpointsAndFallsBackFromACorruptNewestOne) {
  JobSetup setup = Setup(GetParam());
  const std::string out = root_ + "/job";
  const auto as = [](const std::string& uid) {
    return [uid](DistributedOptions& o) {
      o.job_uid = uid;
      o.spec_hash = "hash-1";
    };
  };
  auto first = Run(setup, out, as("uid-first"));
  ASSERT_TRUE(first[0].contains("distributed"));
  EXPECT_EQ(first[0]["checkpoints_skipped"].get<int64_t>(), 0);
  // The result names its job and the checksums of the other artifacts.
  EXPECT_EQ(first[0]["job_uid"], "uid-first");
  EXPECT_EQ(first[0]["spec_hash"], "hash-1");
  for (const char* f : {"samples.npy", "samples.png", "model.pt"}) {
    ASSERT_TRUE(first[0]["artifact_checksums"].contains(f)) << f;
    EXPECT_EQ(first[0]["artifact_checksums"][f]["bytes"].get<int64_t>(), fs::file_size(fs::path(out) / f)) << f;
    EXPECT_THAT(first[0]["artifact_checksums"][f]["crc32"].get<std::string>(), ::testing::MatchesRegex("[0-9a-f]{8}"));
  }

  std::vector<std::string> warnings;
  auto second = Run(setup, out, [&](DistributedOptions& o) {
    as("uid-second")(o);
    o.on_warning = [&warnings](const std::string& line) { warnings.push_back(line); };  // trainer 0 only
  });
  ASSERT_TRUE(second[0].contains("distributed"));
  EXPECT_EQ(second[0]["resumed_from_round"].get<int64_t>(), 0);
  EXPECT_EQ(Checksums(second[0]["distributed"]["ranks"][0]).size(), 4u);  // trained every round itself
  EXPECT_EQ(second[0]["checkpoints_skipped"].get<int64_t>(), 2);
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_THAT(warnings[0], ::testing::StartsWith("[trainer 0] skipped checkpoint ckpt-00000004.pt: checkpoint of "
                                                 "another job: it records job uid 'uid-first'"));
  EXPECT_THAT(warnings[0], ::testing::EndsWith("; starting from round 0"));
  EXPECT_TRUE(fs::exists(out + "/checkpoint/ckpt-00000004.pt.bad"));

  // The second job's own newest checkpoint torn: it resumes from the one before and ends as its
  // uninterrupted run did.
  const std::string newest = out + "/checkpoint/ckpt-00000004.pt";
  fs::resize_file(newest, fs::file_size(newest) / 2);
  warnings.clear();
  auto third = Run(setup, out, [&](DistributedOptions& o) {
    as("uid-second")(o);
    o.on_warning = [&warnings](const std::string& line) { warnings.push_back(line); };
  });
  ASSERT_TRUE(third[0].contains("distributed"));
  EXPECT_EQ(third[0]["resumed_from_round"].get<int64_t>(), 2);
  EXPECT_EQ(third[0]["checkpoints_skipped"].get<int64_t>(), 1);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0],
            "[trainer 0] skipped checkpoint ckpt-00000004.pt: corrupt checkpoint: not a zip archive (no "
            "end-of-central-directory record); resuming from ckpt-00000002.pt");
  EXPECT_DOUBLE_EQ(third[0]["energy_distance"].get<double>(), second[0]["energy_distance"].get<double>());
  // The progress file says so too: the agent forwards it (the coordinator's checkpoint_fallback event).
  std::ifstream in(out + "/" + train_protocol::kProgressFile);
  auto progress = train_protocol::TrainerProgressFromJson(
      std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()));
  ASSERT_TRUE(progress.ok()) << progress.status();
  EXPECT_EQ(progress->checkpoints_skipped, 1);
  EXPECT_EQ(progress->resumed_from_round, 2);
}

INSTANTIATE_TEST_SUITE_P(SyncAndAsync, TinyJobTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Async" : "Sync"; });

}  // namespace
}  // namespace vsdm::worker
