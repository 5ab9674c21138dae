// A trainer rank of a distributed attempt (ranks 0..W-1): trains the score network on its own
// shard of every batch with gradients averaged over the `trainers` group, under the A the
// variational rank broadcasts each round. Trainer 0 also checkpoints and writes the artifacts.
// Posts its collectives as Note [Collective order] (distributed_job.h) says.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/train_protocol.h"
#include "core/checkpoint.h"
#include "core/dsm_trainer.h"
#include "core/variational.h"
#include "nlohmann/json.hpp"
#include "worker/train/comm.h"
#include "worker/train/data_parallel.h"
#include "worker/train/distributed_job.h"
#include "worker/train/job_setup.h"
#include "worker/train/round_timing.h"

namespace vsdm::worker {

// Not thread-safe. `setup`, `world` and `trainers` are borrowed and must outlive the object.
class TrainerRank {
 public:
  TrainerRank(const JobSetup& setup, Comm& world, Comm& trainers, const DistributedOptions& options);

  // Runs from the newest checkpoint (or round 0) to the end of the job. Trainer 0 returns the
  // final metrics (also written to out_dir/metrics.json), the others their RankSummary.
  // UNAVAILABLE / DEADLINE_EXCEEDED when a collective fails.
  absl::StatusOr<nlohmann::json> Run();

 private:
  absl::StatusOr<int64_t> Resume();                    // [S]; returns the first round to run
  core::CheckpointIdentity Identity() const;           // this job's, for checkpoints
  // After [4] of round k when [5] said stop (`mask`): PreemptedError, trainer 0 logging why.
  absl::Status Stop(int64_t k, int64_t mask, const std::vector<RoundTiming>& timings);
  // The log line with [5]'s measured cost over `timings`.
  std::string StopCheckCost(const std::vector<RoundTiming>& timings) const;
  absl::Status RunRound(int64_t k, RoundTiming& t);    // [1]-[4]
  absl::Status Checkpoint(int64_t k, RoundTiming& t);  // [4]
  // Trainer 0, checkpoint rounds: straightness of a small Heun-ODE sample of the EMA model.
  double MeasureStraightness(int64_t k);
  // Trainer 0's progress record after round k (0-based); adds the round's bytes to the totals.
  train_protocol::TrainerProgress MakeProgress(int64_t k, const RoundTiming& t,
                                               const std::vector<RoundTiming>& timings);
  absl::StatusOr<nlohmann::json> Finish(int64_t start, const std::vector<RoundTiming>& timings,
                                        const nlohmann::json& history);  // [E] + artifacts

  const JobSetup& setup_;
  Comm& world_;
  Comm& trainers_;
  DistributedOptions options_;
  const int W_, rank_;
  core::DsmTrainer trainer_;
  // Trainer 0's copy of the variational rank's state (received at [4]), for checkpoints.
  core::VariationalUpdater shadow_;
  torch::Tensor a_train_;  // the A the last broadcast EMA was trained under (checkpointed)
  torch::Tensor A_;        // this round's A ([d, d] float64; VSMD: c [d])
  std::unique_ptr<core::Process> process_;
  GradientBuckets buckets_;
  SteadyClock::time_point start_time_;
  int64_t last_checkpoint_round_ = 0;   // trainer 0: newest checkpoint written (progress file)
  double last_checkpoint_seconds_ = 0;  // its write time
  double last_checkpoint_unix_ = 0;     // when it was written (Unix seconds; 0: none yet)
  double restore_seconds_ = 0;          // this attempt's checkpoint read + broadcast + load
  double straightness_ = 0;             // trainer 0: newest MeasureStraightness
  int64_t allreduce_bytes_total_ = 0;   // trainer 0: this attempt's gradient all-reduce bytes
  int64_t broadcast_bytes_total_ = 0;   // trainer 0: this attempt's [1], [3], [4] bytes
  std::vector<std::string> skipped_;    // trainer 0: the checkpoints Resume refused, and why
  int64_t resumed_from_round_ = 0;      // the round this attempt resumed from (0: from scratch)
};

}  // namespace vsdm::worker
