// Per-round bookkeeping shared by the trainer and variational ranks: what each round cost, the
// per-rank summary gathered at the end of an attempt, and small helpers for moving a network's
// parameters and checking A across ranks.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "common/format.h"
#include "common/job_spec.h"
#include "core/score_net.h"
#include "nlohmann/json.hpp"
#include "worker/train/comm.h"

namespace vsdm::worker {

// One rank's timings for one round (seconds) and what it saw.
struct RoundTiming {
  int64_t round = 0;     // 1-based
  double round_sec = 0;  // the whole round on this rank
  double compute = 0;    // trainer: data, forward/backward, optimiser, EMA (+ the checkpoint-round straightness sample)
  double allreduce = 0;  // trainer: gradient all-reduce [2]
  double broadcast = 0;  // EMA [3] and variational state [4]; variational rank: also [1]
  double wait_a = 0;     // trainer: blocked in [1] for A
  double variational = 0;      // variational rank: trajectories + statistics + update
  double wait_trainers = 0;    // variational rank: blocked in [3] for the trainers' round
  double broadcast_bytes = 0;  // trainer: bytes this rank received or sent in [1], [3], [4]
  double stop_check = 0;       // [5]: the all-reduce of the stop bits (Note [Preemption])
  int64_t stop_mask = 0;       // [5]'s result: bit r set when rank r was told to stop
  double loss = 0, a_norm = 0;
  bool projected = false;  // the update hit the PD floor
  std::string a_checksum;  // TensorChecksum of the A this rank held this round

  nlohmann::json ToJson() const;
};

// {"role", "rank", "totals": {...}, "rounds": [...]} of one rank.
nlohmann::json RankSummary(const std::string& role, int rank, const std::vector<RoundTiming>& rounds);

// [E] of Note [Collective order]: every rank's summary to every rank, in rank order.
absl::StatusOr<nlohmann::json> GatherSummaries(Comm& world, const nlohmann::json& mine);

// Records the variational parameter of a round in history entry `h`: every value as "A" when it
// has at most 64 (the toy problems), else "A_summary" {min, mean, max} (a per-pixel A).
void AddParamSummary(nlohmann::json& h, const torch::Tensor& param);

// Hex FNV-1a 64 of a tensor's bytes: how the ranks' copies of A are compared.
std::string TensorChecksum(const torch::Tensor& t);

// A network's parameters as one flat float32 vector, and back (same architecture).
torch::Tensor FlattenParams(core::ScoreNet& net);
void UnflattenParams(const torch::Tensor& flat, core::ScoreNet& net);

// Whether trainer 0 writes a checkpoint after round k (0-based).
bool IsCheckpointRound(const JobSpec& spec, int64_t k);

using SteadyClock = std::chrono::steady_clock;
inline double SecondsSince(SteadyClock::time_point t) {
  return std::chrono::duration<double>(SteadyClock::now() - t).count();
}
// Remaining time from the mean round time so far.
std::string EtaString(const std::vector<RoundTiming>& done, int64_t rounds_left);

}  // namespace vsdm::worker
