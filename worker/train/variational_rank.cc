#include "worker/train/variational_rank.h"

#include <filesystem>

#include "absl/strings/str_format.h"

#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/train_protocol.h"
#include "core/checkpoint.h"
#include "core/sampler.h"
#include "worker/train/preemption.h"

namespace vsdm::worker {

VariationalRank::VariationalRank(const JobSetup& setup, Comm& world, const DistributedOptions& options)
    : setup_(setup),
      world_(world),
      options_(options),
      W_(options.trainers),
      holder_(setup.MakeNet(), setup.trainer_options),
      updater_(setup.MakeUpdater()),
      a_train_(setup.InitialParam()) {
  ema_ = FlattenParams(holder_.ema_net());
}

absl::StatusOr<int64_t> VariationalRank::Resume() {
  std::string ckpt;
  VSDM_RETURN_IF_ERROR(world_.BroadcastBytes(ckpt, 0));
  if (ckpt.empty()) return 0;
  VSDM_ASSIGN_OR_RETURN(int64_t start,
                        core::LoadCheckpointBytes(ckpt, {&holder_, &updater_, {}, {{"a_train", &a_train_}}},
                                                  {options_.job_uid, options_.spec_hash}));
  // The checkpointed EMA is the one whose update an async rank had not computed yet.
  pending_ = setup_.spec.variational.async && start > 0;
  return start;
}

void VariationalRank::Update(int64_t k, RoundTiming& t) {
  const JobSpec& spec = setup_.spec;
  const auto c = SteadyClock::now();
  std::unique_ptr<core::Process> process = setup_.Process(a_train_);
  torch::Generator gen = MakeRoundGenerator(spec, Stream::kVariational, W_, k);
  holder_.ema_net()->eval();
  torch::Tensor prior = process->SamplePrior(spec.variational.trajectories, spec.variational.prior != "standard", gen);
  core::VariationalStats stats = process->Stats(holder_.ema_net(), prior, spec.variational.adam_batch, gen);
  t.projected = updater_.Apply(stats).projected;
  t.variational += SecondsSince(c);
}

absl::Status VariationalRank::RunRound(int64_t k, RoundTiming& t) {
  const JobSpec& spec = setup_.spec;
  const int64_t K = spec.train.rounds;
  const bool async = spec.variational.async;
  // No update whose A no round would use (the last round's).
  const bool learn = setup_.learn_a && k + 1 < K;
  const auto t0 = SteadyClock::now();
  // [1]
  torch::Tensor A = updater_.A().clone();
  t.a_checksum = TensorChecksum(A);
  t.a_norm = A.norm().item<double>();
  VSDM_RETURN_IF_ERROR(world_.Broadcast(A, W_));
  t.broadcast += SecondsSince(t0);
  // async: the update from the previous round's EMA, while the trainers run [2].
  if (async && pending_ && learn) Update(k, t);
  // [3]
  auto c = SteadyClock::now();
  VSDM_RETURN_IF_ERROR(world_.Broadcast(ema_, 0));
  t.wait_trainers = SecondsSince(c);
  UnflattenParams(ema_, holder_.ema_net());
  a_train_ = A;
  pending_ = true;
  // [5]
  c = SteadyClock::now();
  VSDM_ASSIGN_OR_RETURN(t.stop_mask, AgreeToStop(world_, options_.stop_requested && options_.stop_requested()));
  t.stop_check = SecondsSince(c);
  // sync: the update from this round's EMA; the trainers wait for it at [1] (stopping: at [4]).
  if (!async && learn) Update(k, t);
  // [4]
  if (IsCheckpointRound(spec, k) || t.stop_mask != 0) {
    c = SteadyClock::now();
    VSDM_ASSIGN_OR_RETURN(std::string bytes,
                          core::SerializeCheckpoint(k + 1, {nullptr, &updater_, {}, {{"a_train", &a_train_}}}));
    VSDM_RETURN_IF_ERROR(world_.BroadcastBytes(bytes, W_));
    t.broadcast += SecondsSince(c);
  }
  t.round_sec = SecondsSince(t0);
  return absl::OkStatus();
}

absl::StatusOr<nlohmann::json> VariationalRank::Run() {
  VSDM_ASSIGN_OR_RETURN(const int64_t start, Resume());
  const int64_t K = setup_.spec.train.rounds;
  std::vector<RoundTiming> timings;
  for (int64_t k = start; k < K; ++k) {
    RoundTiming t;
    t.round = k + 1;
    VSDM_RETURN_IF_ERROR(RunRound(k, t));
    timings.push_back(t);
    // For the agent running this rank (its /metrics).
    train_protocol::VariationalProgress p;
    p.round = k + 1;
    p.rounds = K;
    p.variational_seconds = t.variational;
    p.wait_for_trainers_seconds = t.wait_trainers;
    p.a_norm = updater_.A().norm().item<double>();
    p.a_staleness_rounds = setup_.spec.variational.async ? 1 : 0;
    const std::string path =
        (std::filesystem::path(options_.out_dir) / train_protocol::kVariationalProgressFile).string();
    AtomicWriteFile(path, p.ToJson() + "\n").IgnoreError();
    if (options_.on_line)
      options_.on_line(absl::StrFormat(
          "[variational] round %d/%d  |A| %.4f -> %.4f%s  update %.2fs  wait-for-trainers %.2fs  bcast %.2fs", k + 1, K,
          t.a_norm, updater_.A().norm().item<double>(), t.projected ? " (PD floor)" : "", t.variational,
          t.wait_trainers, t.broadcast));
    if (t.stop_mask != 0)
      return PreemptedError(absl::StrFormat("after round %d/%d: a preemption notice (SIGTERM) to %s", k + 1, K,
                                            DescribeStopMask(t.stop_mask, W_)));
  }
  // [E]
  nlohmann::json mine = RankSummary("variational", options_.rank, timings);
  VSDM_RETURN_IF_ERROR(GatherSummaries(world_, mine).status());
  return mine;
}

}  // namespace vsdm::worker
