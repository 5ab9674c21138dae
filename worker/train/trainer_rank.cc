#include "worker/train/trainer_rank.h"

#include <sys/stat.h>

#include <chrono>
#include <filesystem>

#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "core/checkpoint.h"
#include "core/metrics.h"
#include "worker/train/final_artifacts.h"
#include "worker/train/preemption.h"

namespace vsdm::worker {
namespace fs = std::filesystem;

TrainerRank::TrainerRank(const JobSetup& setup, Comm& world, Comm& trainers, const DistributedOptions& options)
    : setup_(setup),
      world_(world),
      trainers_(trainers),
      options_(options),
      W_(options.trainers),
      rank_(options.rank),
      trainer_(setup.MakeNet(), setup.trainer_options),
      shadow_(setup.MakeUpdater()),
      a_train_(setup.InitialParam()),
      A_(setup.InitialParam()),
      buckets_(trainer_.net()->parameters(), options.bucket_bytes) {}

core::CheckpointIdentity TrainerRank::Identity() const { return {options_.job_uid, options_.spec_hash}; }

absl::StatusOr<int64_t> TrainerRank::Resume() {
  // Trainer 0 picks the newest good checkpoint (Note [Resume from the newest good checkpoint],
  // core/checkpoint.h) and every rank gets it over `world`, so ranks on other machines need no
  // shared disk. The pick has already restored trainer 0's state; the others load the bytes.
  const auto t0 = SteadyClock::now();
  const core::TrainStateRefs refs{&trainer_, &shadow_, {}, {{"a_train", &a_train_}}};
  std::string ckpt;
  int64_t start = 0;
  if (rank_ == 0) {
    core::CheckpointPick pick =
        core::PickCheckpoint((fs::path(options_.out_dir) / train_protocol::kCheckpointDir).string(),
                             [&](const std::string& bytes) { return core::LoadCheckpointBytes(bytes, refs, Identity()); });
    for (const std::string& line : core::DescribeSkips(pick)) {
      skipped_.push_back(line);
      if (options_.on_warning) options_.on_warning(absl::StrFormat("[trainer %d] %s", rank_, line));
    }
    struct stat st;
    if (!pick.path.empty() && ::stat(pick.path.c_str(), &st) == 0)
      last_checkpoint_unix_ = static_cast<double>(st.st_mtime);
    ckpt = std::move(pick.bytes);
    start = pick.round;
  }
  VSDM_RETURN_IF_ERROR(world_.BroadcastBytes(ckpt, 0));
  if (ckpt.empty()) return 0;
  if (rank_ != 0) {
    VSDM_ASSIGN_OR_RETURN(start, core::LoadCheckpointBytes(ckpt, refs, Identity()));
  }
  // A job that had finished its rounds goes straight to the artifacts with its last A (its own:
  // a checkpoint of another job is refused above).
  A_ = shadow_.A().clone();
  restore_seconds_ = SecondsSince(t0);
  if (options_.on_event)
    options_.on_event(absl::StrFormat("[trainer %d] resumed from checkpoint at round %d", rank_, start));
  return start;
}

absl::Status TrainerRank::RunRound(int64_t k, RoundTiming& t) {
  const JobSpec& spec = setup_.spec;
  const auto t0 = SteadyClock::now();
  // [1]
  VSDM_RETURN_IF_ERROR(world_.Broadcast(A_, W_));
  t.wait_a = SecondsSince(t0);
  t.a_checksum = TensorChecksum(A_);
  t.broadcast_bytes += static_cast<double>(A_.numel() * A_.element_size());
  t.a_norm = A_.norm().item<double>();
  auto c = SteadyClock::now();
  process_ = setup_.Process(A_);
  const int64_t B = spec.train.batch_points;
  const int64_t shard = ShardSize(B, W_, rank_);
  const double weight = ShardWeight(B, W_, rank_);
  torch::Generator gen_data = MakeRoundGenerator(spec, Stream::kData, rank_, k);
  torch::Generator gen_train = MakeRoundGenerator(spec, Stream::kTrain, rank_, k);
  trainer_.net()->train();
  t.compute += SecondsSince(c);
  // Note [No host sync in a step] (core/dsm_trainer.h): the losses stay on the device, summed
  // there, and are read once, after the round's last step.
  torch::Tensor loss_sum = torch::zeros({}, setup_.FloatOptions().dtype(torch::kFloat64));
  torch::Tensor extras = torch::zeros({1}, setup_.FloatOptions());
  // [step loop] begin (tests/host_sync_test.py: nothing here reads the device on the host)
  for (int64_t s = 0; s < spec.train.steps_per_round; ++s) {
    c = SteadyClock::now();
    torch::Tensor x0 = setup_.TrainBatch(shard, rank_, W_, k * spec.train.steps_per_round + s, gen_data);
    extras.copy_(trainer_.ComputeGradients(x0, gen_train, *process_).mul(weight).reshape({1}));  // summed: the global mean
    t.compute += SecondsSince(c);
    c = SteadyClock::now();
    // [2]
    VSDM_RETURN_IF_ERROR(buckets_.AllReduce(trainers_, weight, extras));
    t.allreduce += SecondsSince(c);
    c = SteadyClock::now();
    trainer_.ApplyGradients();
    t.compute += SecondsSince(c);
    loss_sum.add_(extras[0].to(torch::kFloat64));
  }
  // [step loop] end
  t.loss = loss_sum.item<double>() / static_cast<double>(spec.train.steps_per_round);
  // [3]
  c = SteadyClock::now();
  torch::Tensor ema = FlattenParams(trainer_.ema_net());
  VSDM_RETURN_IF_ERROR(world_.Broadcast(ema, 0));
  t.broadcast += SecondsSince(c);
  t.broadcast_bytes += static_cast<double>(ema.numel() * ema.element_size());
  // [5]
  c = SteadyClock::now();
  VSDM_ASSIGN_OR_RETURN(t.stop_mask, AgreeToStop(world_, options_.stop_requested && options_.stop_requested()));
  t.stop_check = SecondsSince(c);
  // [4]
  if (IsCheckpointRound(spec, k) || t.stop_mask != 0) {
    c = SteadyClock::now();
    VSDM_RETURN_IF_ERROR(Checkpoint(k, t));
    t.broadcast += SecondsSince(c);
    if (rank_ == 0 && t.stop_mask == 0) {  // an evaluation, counted as compute; not on the way out
      c = SteadyClock::now();
      straightness_ = MeasureStraightness(k);
      t.compute += SecondsSince(c);
    }
  }
  t.round_sec = SecondsSince(t0);
  return absl::OkStatus();
}

double TrainerRank::MeasureStraightness(int64_t k) {
  torch::Generator g = MakeRoundGenerator(setup_.spec, Stream::kEval, rank_, k);
  trainer_.ema_net()->eval();
  // 256 points for the toy problems; a few images (each path costs 2 N network calls).
  const int64_t n = setup_.images ? 8 : 256;
  core::SampleResult r = process_->Sample(trainer_.ema_net(), process_->SamplePrior(n, true, g), core::Solver::kHeun, g,
                                          /*keep_trajectory=*/true);
  trainer_.net()->train();
  return core::Straightness(r.trajectory);
}

absl::Status TrainerRank::Checkpoint(int64_t k, RoundTiming& t) {
  std::string var_state;
  VSDM_RETURN_IF_ERROR(world_.BroadcastBytes(var_state, W_));
  t.broadcast_bytes += static_cast<double>(var_state.size());
  if (rank_ != 0) return absl::OkStatus();
  VSDM_RETURN_IF_ERROR(
      core::LoadCheckpointBytes(var_state, {nullptr, &shadow_, {}, {{"a_train", &a_train_}}}).status());
  const auto t0 = SteadyClock::now();
  VSDM_ASSIGN_OR_RETURN(
      std::string bytes,
      core::SerializeCheckpoint(k + 1, {&trainer_, &shadow_, {}, {{"a_train", &a_train_}}}, Identity()));
  VSDM_RETURN_IF_ERROR(
      core::WriteCheckpointFile((fs::path(options_.out_dir) / train_protocol::kCheckpointDir).string(), k + 1, bytes));
  last_checkpoint_round_ = k + 1;
  last_checkpoint_seconds_ = SecondsSince(t0);
  last_checkpoint_unix_ = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  return absl::OkStatus();
}

train_protocol::TrainerProgress TrainerRank::MakeProgress(int64_t k, const RoundTiming& t,
                                                          const std::vector<RoundTiming>& timings) {
  const JobSpec& spec = setup_.spec;
  double total = 0;
  for (const auto& x : timings) total += x.round_sec;
  allreduce_bytes_total_ += static_cast<int64_t>(buckets_.numel() + 1) * 4 * spec.train.steps_per_round;
  broadcast_bytes_total_ += static_cast<int64_t>(t.broadcast_bytes);
  train_protocol::TrainerProgress p;
  p.round = k + 1;
  p.rounds = spec.train.rounds;
  p.loss = t.loss;
  p.a_norm = t.a_norm;
  p.steps_per_second = spec.train.steps_per_round / std::max(1e-9, t.round_sec);
  p.eta_seconds = total / static_cast<double>(timings.size()) * static_cast<double>(p.rounds - k - 1);
  p.steps = (k + 1) * spec.train.steps_per_round;  // since the job began
  p.samples = p.steps * spec.train.batch_points;
  p.round_seconds = t.round_sec;
  p.compute_seconds = t.compute;
  p.allreduce_seconds = t.allreduce;
  p.broadcast_seconds = t.broadcast;
  p.wait_for_a_seconds = t.wait_a;
  p.allreduce_bytes_total = allreduce_bytes_total_;
  p.broadcast_bytes_total = broadcast_bytes_total_;
  p.ode_straightness = straightness_;
  p.rendezvous_seconds = options_.rendezvous_seconds;
  p.restore_seconds = restore_seconds_;
  p.checkpoint_round = last_checkpoint_round_;
  p.checkpoint_seconds = last_checkpoint_seconds_;
  p.checkpoint_unix_seconds = last_checkpoint_unix_;
  p.device_memory_used_bytes = DeviceMemoryUsedBytes();
  p.checkpoints_skipped = static_cast<int64_t>(skipped_.size());
  p.resumed_from_round = resumed_from_round_;
  return p;
}

absl::StatusOr<nlohmann::json> TrainerRank::Run() {
  const JobSpec& spec = setup_.spec;
  start_time_ = SteadyClock::now();
  VSDM_ASSIGN_OR_RETURN(const int64_t start, Resume());
  last_checkpoint_round_ = start;
  resumed_from_round_ = start;
  process_ = setup_.Process(A_);
  const int64_t K = spec.train.rounds;
  std::vector<RoundTiming> timings;
  nlohmann::json history = nlohmann::json::array();
  for (int64_t k = start; k < K; ++k) {
    RoundTiming t;
    t.round = k + 1;
    VSDM_RETURN_IF_ERROR(RunRound(k, t));
    timings.push_back(t);
    if (rank_ == 0) {
      nlohmann::json h = t.ToJson();
      AddParamSummary(h, A_);
      history.push_back(h);
      // For the worker agent, which forwards it to the coordinator (and `vsdmctl watch`).
      const std::string path = (fs::path(options_.out_dir) / train_protocol::kProgressFile).string();
      AtomicWriteFile(path, MakeProgress(k, t, timings).ToJson() + "\n").IgnoreError();
    }
    if (options_.on_line)
      options_.on_line(absl::StrFormat(
          "[trainer %d] round %d/%d  loss %.4f  |A| %.4f  %.0f steps/s  compute %.2fs  all-reduce %.2fs  "
          "bcast %.2fs  wait-A %.2fs (%.0f%%)  ETA %s",
          rank_, k + 1, K, t.loss, t.a_norm, spec.train.steps_per_round / std::max(1e-9, t.round_sec), t.compute,
          t.allreduce, t.broadcast, t.wait_a, 100.0 * t.wait_a / std::max(1e-9, t.round_sec),
          EtaString(timings, K - k - 1)));
    if (t.stop_mask != 0) return Stop(k, t.stop_mask, timings);
  }
  if (rank_ == 0 && options_.on_event) options_.on_event(StopCheckCost(timings));
  return Finish(start, timings, history);
}

std::string TrainerRank::StopCheckCost(const std::vector<RoundTiming>& timings) const {
  double check = 0, total = 0;
  for (const auto& t : timings) {
    check += t.stop_check;
    total += t.round_sec;
  }
  const double n = static_cast<double>(std::max<size_t>(timings.size(), 1));
  return absl::StrFormat("[trainer %d] preemption check [5]: %.3f ms per round, %.3f%% of the round time (%d rounds)",
                         rank_, 1e3 * check / n, 100.0 * check / std::max(total, 1e-9), timings.size());
}

absl::Status TrainerRank::Stop(int64_t k, int64_t mask, const std::vector<RoundTiming>& timings) {
  const std::string why = absl::StrFormat("after round %d/%d: a preemption notice (SIGTERM) to %s", k + 1,
                                          setup_.spec.train.rounds, DescribeStopMask(mask, W_));
  if (rank_ != 0) return PreemptedError(why);
  if (options_.on_event) {
    options_.on_event(StopCheckCost(timings));
    options_.on_event(absl::StrFormat("[trainer 0] stopping %s; checkpoint %s written; exit 75", why,
                                      train_protocol::CheckpointFileName(last_checkpoint_round_)));
  }
  return PreemptedError(absl::StrCat(why, "; resume from ", train_protocol::CheckpointFileName(last_checkpoint_round_)));
}

absl::StatusOr<nlohmann::json> TrainerRank::Finish(int64_t start, const std::vector<RoundTiming>& timings,
                                                   const nlohmann::json& history) {
  const JobSpec& spec = setup_.spec;
  // [E]
  nlohmann::json mine = RankSummary("trainer", rank_, timings);
  VSDM_ASSIGN_OR_RETURN(nlohmann::json ranks, GatherSummaries(world_, mine));
  if (rank_ != 0) return mine;
  nlohmann::json extra;
  extra["wall_seconds_training"] = SecondsSince(start_time_);
  extra["resumed_from_round"] = start;
  // Note [Resume from the newest good checkpoint]: what this attempt's resume refused.
  extra["checkpoints_skipped"] = skipped_.size();
  extra["checkpoint_skips"] = skipped_;
  extra["job_uid"] = options_.job_uid;  // "" when the run was given none
  extra["spec_hash"] = options_.spec_hash;
  extra["rounds"] = history;
  const auto& tot = mine["totals"];
  extra["train_seconds"] = tot["compute_sec"].get<double>() + tot["allreduce_sec"].get<double>();
  extra["steps_per_sec"] = timings.empty() ? 0.0
                                           : static_cast<double>(timings.size() * spec.train.steps_per_round) /
                                                 std::max(1e-9, tot["round_sec"].get<double>());
  extra["distributed"] = {{"trainers", W_},
                          {"backend", world_.backend()},
                          {"async", spec.variational.async},
                          {"attempt", options_.attempt},
                          {"wait_for_a_fraction", tot["wait_for_a_fraction"]},
                          {"ranks", ranks}};
  // The final model keeps the A its network was trained with in the last round.
  return WriteFinalArtifacts(setup_, trainer_.ema_net(), *process_, options_.out_dir, extra);
}

}  // namespace vsdm::worker
