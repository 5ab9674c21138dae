#include "worker/train/standalone_job.h"

#include <chrono>
#include <filesystem>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "common/train_protocol.h"
#include "core/checkpoint.h"
#include "core/sampler.h"
#include "worker/train/final_artifacts.h"
#include "worker/train/preemption.h"
#include "worker/train/round_timing.h"

namespace vsdm::worker {
namespace fs = std::filesystem;

namespace {
double Seconds(SteadyClock::time_point a, SteadyClock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}
}  // namespace

std::string FormatRoundLine(const RoundReport& r) {
  return absl::StrFormat("round %d/%d  loss %.4f  |A| %.4f  %.0f steps/s  train %.1fs  A-update %.2fs%s  ETA %s",
                         r.round, r.rounds, r.loss, r.a_norm, r.steps_per_sec, r.train_sec, r.variational_sec,
                         r.projected ? " (PD floor)" : "", FormatDuration(r.eta_sec));
}

absl::StatusOr<nlohmann::json> RunStandalone(const JobSetup& setup, const StandaloneOptions& options) {
  const JobSpec& spec = setup.spec;
  const auto t_start = SteadyClock::now();
  core::DsmTrainer trainer(setup.MakeNet(), setup.trainer_options);
  core::VariationalUpdater updater = setup.MakeUpdater();
  torch::Generator gen_data = MakeGenerator(spec, Stream::kData);
  torch::Generator gen_train = MakeGenerator(spec, Stream::kTrain);
  torch::Generator gen_var = MakeGenerator(spec, Stream::kVariational);
  core::TrainStateRefs refs{&trainer, &updater, {&gen_data, &gen_train, &gen_var}, {}};

  const std::string ckpt_dir = (fs::path(options.out_dir) / train_protocol::kCheckpointDir).string();
  const core::CheckpointIdentity id{options.job_uid, options.spec_hash};
  const core::CheckpointPick pick = core::PickCheckpoint(
      ckpt_dir, [&](const std::string& bytes) { return core::LoadCheckpointBytes(bytes, refs, id); });
  const int64_t start_round = pick.round;
  const std::vector<std::string> skipped = core::DescribeSkips(pick);
  if (options.on_warning)
    for (const std::string& line : skipped) options.on_warning(line);

  std::unique_ptr<core::Process> process = setup.Process(updater.A());
  const int64_t rounds = spec.train.rounds;
  const bool adaptive = spec.variational.prior != "standard";
  nlohmann::json history = nlohmann::json::array();
  double train_total = 0.0, var_total = 0.0;
  int64_t steps_done = 0;
  for (int64_t r = start_round; r < rounds; ++r) {
    RoundReport rep;
    const auto t0 = SteadyClock::now();
    trainer.net()->train();
    // Note [No host sync in a step] (core/dsm_trainer.h): the losses are read once a round.
    torch::Tensor loss_sum = torch::zeros({}, setup.FloatOptions().dtype(torch::kFloat64));
    // [step loop] begin (tests/host_sync_test.py)
    for (int64_t s = 0; s < spec.train.steps_per_round; ++s) {
      torch::Tensor x0 = setup.TrainBatch(spec.train.batch_points, 0, 1, r * spec.train.steps_per_round + s, gen_data);
      loss_sum.add_(trainer.ComputeGradients(x0, gen_train, *process).to(torch::kFloat64));
      trainer.ApplyGradients();
    }
    // [step loop] end
    const auto t1 = SteadyClock::now();
    // No update after the last round: the final model keeps the A its network was trained on.
    if (setup.learn_a && r + 1 < rounds) {
      torch::Tensor prior = process->SamplePrior(spec.variational.trajectories, adaptive, gen_var);
      core::VariationalStats stats = process->Stats(trainer.ema_net(), prior, spec.variational.adam_batch, gen_var);
      core::UpdateInfo info = updater.Apply(stats);
      rep.projected = info.projected;
      process = setup.Process(updater.A());
    }
    const auto t2 = SteadyClock::now();
    rep.round = r + 1;
    rep.rounds = rounds;
    rep.loss = loss_sum.item<double>() / static_cast<double>(spec.train.steps_per_round);
    rep.a_norm = updater.A().norm().item<double>();
    rep.train_sec = Seconds(t0, t1);
    rep.variational_sec = Seconds(t1, t2);
    rep.steps_per_sec = static_cast<double>(spec.train.steps_per_round) / std::max(1e-9, rep.train_sec);
    train_total += rep.train_sec;
    var_total += rep.variational_sec;
    steps_done += spec.train.steps_per_round;
    const double per_round = (train_total + var_total) / static_cast<double>(r + 1 - start_round);
    rep.eta_sec = per_round * static_cast<double>(rounds - r - 1);
    nlohmann::json h = {{"round", rep.round},
                        {"loss", rep.loss},
                        {"a_norm", rep.a_norm},
                        {"train_sec", rep.train_sec},
                        {"variational_sec", rep.variational_sec}};
    AddParamSummary(h, updater.A());
    history.push_back(h);
    if (options.on_round) options.on_round(rep);
    const bool stop = options.stop_requested && options.stop_requested();
    if (IsCheckpointRound(spec, r) || stop) {
      VSDM_RETURN_IF_ERROR(core::SaveCheckpoint(ckpt_dir, r + 1, refs, 2, id));
    }
    if (stop)
      return PreemptedError(absl::StrFormat("after round %d/%d (SIGTERM); resume from %s", r + 1, rounds,
                                            train_protocol::CheckpointFileName(r + 1)));
  }
  const double wall = Seconds(t_start, SteadyClock::now());
  nlohmann::json extra;
  extra["wall_seconds_training"] = wall;
  extra["train_seconds"] = train_total;
  extra["variational_seconds"] = var_total;
  extra["steps_per_sec"] = steps_done > 0 ? static_cast<double>(steps_done) / std::max(1e-9, train_total) : 0.0;
  extra["resumed_from_round"] = start_round;
  extra["checkpoints_skipped"] = skipped.size();  // Note [Resume from the newest good checkpoint]
  extra["checkpoint_skips"] = skipped;
  extra["job_uid"] = options.job_uid;  // "" when the run was given none
  extra["spec_hash"] = options.spec_hash;
  extra["rounds"] = history;
  return WriteFinalArtifacts(setup, trainer.ema_net(), *process, options.out_dir, extra);
}

}  // namespace vsdm::worker
