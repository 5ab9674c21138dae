// A whole job in one process (`vsdm-train --standalone`): rounds of DSM steps, each followed
// by one variational update of A, checkpoints, and the final artifacts. Resumes from the
// newest checkpoint in <out>/checkpoint/.
#pragma once

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "worker/train/job_setup.h"

namespace vsdm::worker {

struct RoundReport {
  int64_t round = 0;  // 1-based, completed rounds
  int64_t rounds = 0;
  double loss = 0.0;    // mean DSM loss over the round
  double a_norm = 0.0;  // Frobenius norm of A after the round
  double steps_per_sec = 0.0;
  double eta_sec = 0.0;
  double train_sec = 0.0;        // DSM compute time this round
  double variational_sec = 0.0;  // trajectory simulation + update time this round
  bool projected = false;        // the PD floor bound on this round's update
};

struct StandaloneOptions {
  std::string out_dir;                               // artifacts and checkpoint/ go here
  std::function<void(const RoundReport&)> on_round;  // progress callback (may be empty)
  std::function<void(const std::string&)> on_warning;  // skipped checkpoints (may be empty)
  // As DistributedOptions (distributed_job.h): the identity checkpoints carry and resume
  // requires, and whether to stop (asked after every round; empty: never).
  std::string job_uid;
  std::string spec_hash;
  std::function<bool()> stop_requested;
};

// Runs the job to the end from the newest good checkpoint (core::PickCheckpoint). Returns the
// final metrics (also in <out>/metrics.json), or PreemptedError (preemption.h) after the round at
// which stop_requested said yes, once that round's checkpoint is written.
absl::StatusOr<nlohmann::json> RunStandalone(const JobSetup& setup, const StandaloneOptions& options);

// "round 3/50  loss 1.234  |A| 0.456  412 steps/s  ETA 1m05s"
std::string FormatRoundLine(const RoundReport& r);

}  // namespace vsdm::worker
