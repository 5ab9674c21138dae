#include "worker/distributed_job.h"

#include <chrono>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "core/checkpoint.h"
#include "core/sampler.h"
#include "worker/data_parallel.h"
#include "worker/final_artifacts.h"

namespace vsdm::worker {
namespace fs = std::filesystem;

// Note [Collective order]
// c10d matches collectives by the order each rank posts them, so every rank posts exactly this
// sequence (W = trainers; rank W is the variational rank; K = train.rounds):
//
//   start  [S] world     BroadcastBytes(checkpoint, root 0)   newest checkpoint trainer 0 found,
//                                                             "" for a fresh start
//   round k = start .. K-1:
//          [1] world     Broadcast(A, root W)                 the A trainers use this round
//          [2] trainers  AllReduceSum(gradient buckets)       once per step, trainers only
//          [3] world     Broadcast(EMA parameters, root 0)    the net the trajectories use
//          [4] world     BroadcastBytes(variational state, root W)
//                                                             only when k+1 is a checkpoint round
//                                                             ((k+1) % checkpoint_every == 0 or
//                                                             k+1 == K); trainer 0 then writes
//                                                             ckpt-(k+1) with it
//   end    [E] world     BroadcastBytes(summary of rank r, root r), r = 0 .. W
//
// Where the variational rank computes A (simulate trajectories, statistics, update):
//   sync  (variational.async false): after [3] of round k, from EMA(k) under A(k); trainers
//          wait for it in [1] of round k+1. Skipped after the last round.
//   async (variational.async true):  between [1] and [3] of round k, from EMA(k-1) under the A
//          it was trained with, while the trainers run [2]; so A is one round stale and
//          trainers do not wait for it. Skipped in round 0 of a fresh start and in round K-1.
// The checkpoint holds trainer state after round k, the updater state, and `a_train` (the A
// that EMA(k) was trained under): all that an async variational rank needs to redo its
// pending update after a restart, so a resumed attempt computes what an uninterrupted one does.
// Random draws come from MakeRoundGenerator(seed, stream, rank, round): no RNG state to save.

namespace {
using Clock = std::chrono::steady_clock;
constexpr auto kF64 = torch::kFloat64;

double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string Duration(double s) {
  if (s < 60) return absl::StrFormat("%.0fs", s);
  if (s < 3600) return absl::StrFormat("%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  return absl::StrFormat("%dh%02dm", static_cast<int>(s) / 3600, (static_cast<int>(s) % 3600) / 60);
}

bool IsCheckpointRound(const JobSpec& spec, int64_t k) {
  return (k + 1) % spec.train.checkpoint_every == 0 || k + 1 == spec.train.rounds;
}

torch::Tensor FlattenParams(core::ScoreNet& net) {
  std::vector<torch::Tensor> flat;
  for (const auto& p : net->parameters()) flat.push_back(p.detach().reshape({-1}));
  return torch::cat(flat);
}

void UnflattenParams(const torch::Tensor& flat, core::ScoreNet& net) {
  torch::NoGradGuard g;
  int64_t off = 0;
  for (auto& p : net->parameters()) {
    p.copy_(flat.narrow(0, off, p.numel()).view(p.sizes()));
    off += p.numel();
  }
}

// One rank's timings for one round (seconds).
struct RoundTiming {
  int64_t round = 0;  // 1-based
  double round_sec = 0, compute = 0, allreduce = 0, broadcast = 0, wait_a = 0, variational = 0;
  double wait_trainers = 0;  // variational rank: waiting at [3] for the trainers' round
  double loss = 0, a_norm = 0;
  bool projected = false;
  std::string a_checksum;

  nlohmann::json ToJson() const {
    return {{"round", round},   {"round_sec", round_sec}, {"compute_sec", compute},
            {"allreduce_sec", allreduce}, {"broadcast_sec", broadcast}, {"wait_for_a_sec", wait_a},
            {"variational_sec", variational}, {"wait_for_trainers_sec", wait_trainers},
            {"loss", loss}, {"a_norm", a_norm},
            {"a_checksum", a_checksum}};
  }
};

nlohmann::json Summary(const std::string& role, int rank, const std::vector<RoundTiming>& rounds) {
  nlohmann::json s;
  s["role"] = role;
  s["rank"] = rank;
  double tot = 0, comp = 0, ar = 0, bc = 0, wa = 0, var = 0, wt = 0;
  nlohmann::json rs = nlohmann::json::array();
  for (const auto& r : rounds) {
    tot += r.round_sec;
    comp += r.compute;
    ar += r.allreduce;
    bc += r.broadcast;
    wa += r.wait_a;
    var += r.variational;
    wt += r.wait_trainers;
    rs.push_back(r.ToJson());
  }
  s["totals"] = {{"round_sec", tot},     {"compute_sec", comp}, {"allreduce_sec", ar},
                 {"broadcast_sec", bc},  {"wait_for_a_sec", wa}, {"variational_sec", var},
                 {"wait_for_trainers_sec", wt},
                 {"wait_for_a_fraction", tot > 0 ? wa / tot : 0.0}};
  s["rounds"] = std::move(rs);
  return s;
}

// [E]: every rank's summary to every rank (W + 1 small broadcasts).
absl::StatusOr<nlohmann::json> GatherSummaries(Comm& world, const nlohmann::json& mine) {
  nlohmann::json all = nlohmann::json::array();
  for (int r = 0; r < world.size(); ++r) {
    std::string bytes = r == world.rank() ? mine.dump() : std::string();
    VSDM_RETURN_IF_ERROR(world.BroadcastBytes(bytes, r));
    all.push_back(r == world.rank() ? mine : nlohmann::json::parse(bytes));
  }
  return all;
}

std::string Eta(const std::vector<RoundTiming>& done, int64_t left) {
  double tot = 0;
  for (const auto& r : done) tot += r.round_sec;
  return Duration(done.empty() ? 0.0 : tot / static_cast<double>(done.size()) * static_cast<double>(left));
}

absl::StatusOr<nlohmann::json> RunTrainer(const JobSetup& setup, RankComms& comms, const DistributedOptions& o) {
  const JobSpec& spec = setup.spec;
  const auto t_start = Clock::now();
  Comm& world = *comms.world;
  Comm& trainers = *comms.trainers;
  const int W = o.trainers, rank = o.rank;
  const int64_t d = setup.dim(), K = spec.train.rounds, B = spec.train.batch_points;
  core::DsmTrainer trainer(setup.MakeNet(), setup.trainer_options);
  // Trainer 0 keeps a copy of the variational rank's state (received at [4]) for checkpoints.
  core::VariationalUpdater shadow(d, setup.variational_options);
  torch::Tensor a_train = torch::zeros({d, d}, kF64);
  core::TrainStateRefs full{&trainer, &shadow, {}, {{"a_train", &a_train}}};
  const std::string ckpt_dir = (fs::path(o.out_dir) / "checkpoint").string();

  // [S]
  std::string ckpt;
  if (rank == 0) {
    if (auto latest = core::FindLatestCheckpoint(ckpt_dir)) {
      VSDM_ASSIGN_OR_RETURN(ckpt, ReadFile(latest->second));
    }
  }
  VSDM_RETURN_IF_ERROR(world.BroadcastBytes(ckpt, 0));
  int64_t start = 0;
  if (!ckpt.empty()) {
    VSDM_ASSIGN_OR_RETURN(start, core::LoadCheckpointBytes(ckpt, full));
    if (o.on_event) o.on_event(absl::StrFormat("[trainer %d] resumed from checkpoint at round %d", rank, start));
  }

  GradientBuckets buckets(trainer.net()->parameters(), o.bucket_bytes);
  const int64_t shard = ShardSize(B, W, rank);
  const double weight = ShardWeight(B, W, rank);
  // A resumed job that had finished its rounds goes straight to the artifacts with its last A.
  torch::Tensor A = ckpt.empty() ? torch::zeros({d, d}, kF64) : shadow.A().clone();
  torch::Tensor ema_flat = FlattenParams(trainer.ema_net());
  std::vector<RoundTiming> timings;
  nlohmann::json history = nlohmann::json::array();
  core::KernelTable table = setup.Table(A);
  for (int64_t k = start; k < K; ++k) {
    RoundTiming t;
    t.round = k + 1;
    const auto t0 = Clock::now();
    // [1]
    VSDM_RETURN_IF_ERROR(world.Broadcast(A, W));
    t.wait_a = Since(t0);
    t.a_checksum = TensorChecksum(A);
    auto c = Clock::now();
    table = setup.Table(A);
    torch::Generator gen_data = MakeRoundGenerator(spec, Stream::kData, rank, k);
    torch::Generator gen_train = MakeRoundGenerator(spec, Stream::kTrain, rank, k);
    trainer.net()->train();
    t.compute += Since(c);
    double loss_sum = 0;
    std::vector<double> extras(1);
    for (int64_t s = 0; s < spec.train.steps_per_round; ++s) {
      c = Clock::now();
      torch::Tensor x0 = setup.dataset->Sample(shard, gen_data);
      extras[0] = trainer.ComputeGradients(x0, gen_train, table) * weight;
      t.compute += Since(c);
      c = Clock::now();
      // [2]
      VSDM_RETURN_IF_ERROR(buckets.AllReduce(trainers, weight, extras));
      t.allreduce += Since(c);
      c = Clock::now();
      trainer.ApplyGradients();
      t.compute += Since(c);
      loss_sum += extras[0];
    }
    // [3]
    c = Clock::now();
    ema_flat = FlattenParams(trainer.ema_net());
    VSDM_RETURN_IF_ERROR(world.Broadcast(ema_flat, 0));
    t.broadcast += Since(c);
    // [4]
    if (IsCheckpointRound(spec, k)) {
      c = Clock::now();
      std::string var_state;
      VSDM_RETURN_IF_ERROR(world.BroadcastBytes(var_state, W));
      t.broadcast += Since(c);
      if (rank == 0) {
        VSDM_RETURN_IF_ERROR(core::LoadCheckpointBytes(var_state, {nullptr, &shadow, {}, {{"a_train", &a_train}}}).status());
        VSDM_ASSIGN_OR_RETURN(std::string bytes, core::SerializeCheckpoint(k + 1, full));
        VSDM_RETURN_IF_ERROR(core::WriteCheckpointFile(ckpt_dir, k + 1, bytes));
      }
    }
    t.round_sec = Since(t0);
    t.loss = loss_sum / static_cast<double>(spec.train.steps_per_round);
    t.a_norm = A.norm().item<double>();
    timings.push_back(t);
    if (rank == 0) {
      nlohmann::json h = t.ToJson();
      h["A"] = std::vector<double>(A.data_ptr<double>(), A.data_ptr<double>() + A.numel());
      history.push_back(h);
    }
    if (o.on_line)
      o.on_line(absl::StrFormat(
          "[trainer %d] round %d/%d  loss %.4f  |A| %.4f  %.0f steps/s  compute %.2fs  all-reduce %.2fs  "
          "bcast %.2fs  wait-A %.2fs (%.0f%%)  ETA %s",
          rank, k + 1, K, t.loss, t.a_norm, spec.train.steps_per_round / std::max(1e-9, t.round_sec), t.compute,
          t.allreduce, t.broadcast, t.wait_a, 100.0 * t.wait_a / std::max(1e-9, t.round_sec),
          Eta(timings, K - k - 1)));
  }
  // [E]
  nlohmann::json mine = Summary("trainer", rank, timings);
  VSDM_ASSIGN_OR_RETURN(nlohmann::json ranks, GatherSummaries(world, mine));
  if (rank != 0) return mine;

  nlohmann::json extra;
  extra["wall_seconds_training"] = Since(t_start);
  extra["resumed_from_round"] = start;
  extra["rounds"] = history;
  const auto& tot = mine["totals"];
  extra["train_seconds"] = tot["compute_sec"].get<double>() + tot["allreduce_sec"].get<double>();
  extra["steps_per_sec"] = timings.empty() ? 0.0
                               : static_cast<double>(timings.size() * spec.train.steps_per_round) /
                                     std::max(1e-9, tot["round_sec"].get<double>());
  extra["distributed"] = {{"trainers", W},
                          {"backend", world.backend()},
                          {"async", spec.variational.async},
                          {"attempt", o.attempt},
                          {"wait_for_a_fraction", tot["wait_for_a_fraction"]},
                          {"ranks", ranks}};
  // The final model keeps the A its network was trained with in the last round.
  return WriteFinalArtifacts(setup, trainer.ema_net(), table, o.out_dir, extra);
}

absl::StatusOr<nlohmann::json> RunVariational(const JobSetup& setup, RankComms& comms, const DistributedOptions& o) {
  const JobSpec& spec = setup.spec;
  Comm& world = *comms.world;
  const int W = o.trainers;
  const int64_t d = setup.dim(), K = spec.train.rounds;
  const bool async = spec.variational.async;
  const bool adaptive = spec.variational.prior == "adaptive";
  // `holder` only carries the EMA network received at [3] (and restored from a checkpoint).
  core::DsmTrainer holder(setup.MakeNet(), setup.trainer_options);
  core::VariationalUpdater updater(d, setup.variational_options);
  torch::Tensor a_train = torch::zeros({d, d}, kF64);

  // [S]
  std::string ckpt;
  VSDM_RETURN_IF_ERROR(world.BroadcastBytes(ckpt, 0));
  int64_t start = 0;
  if (!ckpt.empty()) {
    VSDM_ASSIGN_OR_RETURN(start, core::LoadCheckpointBytes(ckpt, {&holder, &updater, {}, {{"a_train", &a_train}}}));
  }
  bool pending = async && start > 0;  // an EMA whose update is still to be computed
  torch::Tensor ema_flat = FlattenParams(holder.ema_net());
  std::vector<RoundTiming> timings;

  auto update = [&](int64_t k, RoundTiming& t) {
    const auto c = Clock::now();
    core::KernelTable table = setup.Table(a_train);
    torch::Generator gen = MakeRoundGenerator(spec, Stream::kVariational, W, k);
    holder.ema_net()->eval();
    core::ScoreModel model(holder.ema_net(), setup.trainer_options.param, table);
    torch::Tensor xT = core::SamplePrior(table, spec.variational.trajectories, adaptive, gen);
    core::VariationalStats stats =
        core::ComputeVariationalStats(model, xT, std::max<int64_t>(1, spec.variational.adam_batch), gen);
    t.projected = updater.Apply(stats).projected;
    t.variational += Since(c);
  };

  for (int64_t k = start; k < K; ++k) {
    RoundTiming t;
    t.round = k + 1;
    const auto t0 = Clock::now();
    // [1]
    torch::Tensor A = updater.A().clone();
    t.a_checksum = TensorChecksum(A);
    t.a_norm = A.norm().item<double>();
    VSDM_RETURN_IF_ERROR(world.Broadcast(A, W));
    t.broadcast += Since(t0);
    if (setup.learn_a && async && pending && k + 1 < K) update(k, t);
    // [3]
    auto c = Clock::now();
    VSDM_RETURN_IF_ERROR(world.Broadcast(ema_flat, 0));
    t.wait_trainers = Since(c);
    UnflattenParams(ema_flat, holder.ema_net());
    a_train = A;
    pending = true;
    if (setup.learn_a && !async && k + 1 < K) update(k, t);
    // [4]
    if (IsCheckpointRound(spec, k)) {
      c = Clock::now();
      VSDM_ASSIGN_OR_RETURN(std::string bytes,
                            core::SerializeCheckpoint(k + 1, {nullptr, &updater, {}, {{"a_train", &a_train}}}));
      VSDM_RETURN_IF_ERROR(world.BroadcastBytes(bytes, W));
      t.broadcast += Since(c);
    }
    t.round_sec = Since(t0);
    timings.push_back(t);
    if (o.on_line)
      o.on_line(absl::StrFormat(
          "[variational] round %d/%d  |A| %.4f -> %.4f%s  update %.2fs  wait-for-trainers %.2fs  bcast %.2fs",
          k + 1, K, t.a_norm, updater.A().norm().item<double>(), t.projected ? " (PD floor)" : "", t.variational,
          t.wait_trainers, t.broadcast));
  }
  // [E]
  nlohmann::json mine = Summary("variational", o.rank, timings);
  VSDM_RETURN_IF_ERROR(GatherSummaries(world, mine).status());
  return mine;
}

}  // namespace

std::string TensorChecksum(const torch::Tensor& t) {
  torch::Tensor c = t.contiguous().cpu();
  const auto* p = static_cast<const unsigned char*>(c.data_ptr());
  const size_t n = c.numel() * c.element_size();
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ULL;
  }
  return absl::StrFormat("%016x", h);
}

absl::StatusOr<RankComms> JoinGroups(const StorePtr& store, const DistributedOptions& o, const CommOptions& co) {
  RankComms rc;
  rc.store = store;
  const std::string prefix = absl::StrCat("attempt-", o.attempt, "/");
  VSDM_ASSIGN_OR_RETURN(rc.world, Comm::Create(store, prefix + "world", o.rank, o.trainers + 1, co));
  if (o.rank < o.trainers) {
    VSDM_ASSIGN_OR_RETURN(rc.trainers, Comm::Create(store, prefix + "trainers", o.rank, o.trainers, co));
  }
  return rc;
}

absl::StatusOr<RankComms> Rendezvous(const std::string& host, int port, const DistributedOptions& o,
                                     const CommOptions& co) {
  VSDM_ASSIGN_OR_RETURN(StorePtr store, ConnectTcpStore(host, port, o.rank == 0, o.trainers + 1, co.timeout));
  return JoinGroups(store, o, co);
}

absl::StatusOr<nlohmann::json> RunRank(const JobSetup& setup, RankComms& comms, const DistributedOptions& o) {
  if (o.trainers < 1) return absl::InvalidArgumentError("trainers: must be >= 1");
  if (o.rank < 0 || o.rank > o.trainers)
    return absl::InvalidArgumentError(absl::StrCat("rank: must be in [0, ", o.trainers, "], got ", o.rank));
  if (setup.spec.train.batch_points < o.trainers)
    return absl::InvalidArgumentError("train.batch_points: fewer points than trainers");
  return o.rank < o.trainers ? RunTrainer(setup, comms, o) : RunVariational(setup, comms, o);
}

}  // namespace vsdm::worker
