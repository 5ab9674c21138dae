// The variational rank of a distributed attempt (rank W): owns A and its update rule, broadcasts
// A to the trainers every round, receives their EMA network, simulates backward trajectories with
// it and updates A (spec §3), synchronously or one round behind (variational.async). Posts its
// collectives as Note [Collective order] (distributed_job.h) says.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "core/dsm_trainer.h"
#include "core/variational.h"
#include "nlohmann/json.hpp"
#include "worker/train/comm.h"
#include "worker/train/distributed_job.h"
#include "worker/train/job_setup.h"
#include "worker/train/round_timing.h"

namespace vsdm::worker {

// Not thread-safe. `setup` and `world` are borrowed and must outlive the object.
class VariationalRank {
 public:
  VariationalRank(const JobSetup& setup, Comm& world, const DistributedOptions& options);

  // Runs from the checkpoint trainer 0 broadcasts (or round 0) to the end of the job; returns
  // this rank's RankSummary. UNAVAILABLE / DEADLINE_EXCEEDED when a collective fails.
  absl::StatusOr<nlohmann::json> Run();

  const torch::Tensor& A() const { return updater_.A(); }

 private:
  absl::StatusOr<int64_t> Resume();                  // [S]
  absl::Status RunRound(int64_t k, RoundTiming& t);  // [1], [3], [4] and the update
  // Trajectories from the held EMA net under a_train_, statistics, one update of A.
  void Update(int64_t k, RoundTiming& t);

  const JobSetup& setup_;
  Comm& world_;
  DistributedOptions options_;
  const int W_;
  // Only carries the EMA network received at [3] (or restored from a checkpoint).
  core::DsmTrainer holder_;
  core::VariationalUpdater updater_;
  torch::Tensor a_train_;  // the A the held EMA net was trained under
  torch::Tensor ema_;      // receive buffer of [3]
  bool pending_ = false;   // async: the held EMA's update is still to be computed
};

}  // namespace vsdm::worker
