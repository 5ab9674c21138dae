// One attempt of a job across processes (DESIGN.md, "One attempt of one job"): W trainer ranks
// (0..W-1) train the score network data-parallel, rank W is the variational rank that keeps A
// and broadcasts it every round. Trainer 0 hosts the rendezvous store, checkpoints, and writes
// the final artifacts. The collective order every rank follows is Note [Collective order] in
// distributed_job.cc.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "worker/comm.h"
#include "worker/job_setup.h"

namespace vsdm::worker {

struct DistributedOptions {
  std::string out_dir;  // trainer 0: artifacts and checkpoint/ (the checkpoint is read there too)
  int trainers = 1;     // W
  int rank = 0;         // 0..W-1 trainer, W variational
  int attempt = 0;      // for logs and the store prefix
  int64_t bucket_bytes = 25 << 20;                  // gradient all-reduce bucket size
  std::function<void(const std::string&)> on_line;   // per-round progress lines (may be empty)
  std::function<void(const std::string&)> on_event;  // resumes and other one-off news (may be empty)
};

// The process groups of one rank: `world` (all W + 1 ranks) and `trainers` (ranks 0..W-1; null
// on the variational rank), each under its own store prefix.
struct RankComms {
  StorePtr store;
  std::unique_ptr<Comm> world;
  std::unique_ptr<Comm> trainers;
};

// Connects to (trainer 0: hosts) the TCPStore at host:port and joins both groups.
absl::StatusOr<RankComms> Rendezvous(const std::string& host, int port, const DistributedOptions& options,
                                     const CommOptions& comm_options);
// The same over an existing store (threads of one process in tests).
absl::StatusOr<RankComms> JoinGroups(const StorePtr& store, const DistributedOptions& options,
                                     const CommOptions& comm_options);

// Runs this rank's role to the end of the job. Trainer 0 returns the final metrics (also
// written to out_dir/metrics.json); the other ranks return their own timing summary. A failed
// collective (dead or stuck peer) returns UNAVAILABLE or DEADLINE_EXCEEDED.
absl::StatusOr<nlohmann::json> RunRank(const JobSetup& setup, RankComms& comms, const DistributedOptions& options);

// Hex FNV-1a 64 of a tensor's bytes: the test that every rank holds bit-identical A.
std::string TensorChecksum(const torch::Tensor& t);

}  // namespace vsdm::worker
