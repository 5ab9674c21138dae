// The worker agent's logic (vsdm-worker): registers with the coordinator, renews its lease,
// starts one `vsdm-train` child per assigned rank, stops the children of aborted attempts, and
// reports progress and exits (uploading rank 0's artifacts before it reports success). When the
// coordinator is unreachable it keeps its children running, keeps exits it could not report,
// and registers again, with what it still runs, once the coordinator is back.
#pragma once

#include <deque>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "worker/agent/agent_metrics.h"
#include "worker/agent/coordinator_client.h"
#include "worker/agent/process_supervisor.h"

namespace vsdm::worker {

struct AgentOptions {
  std::string worker_id;  // stable id of this agent
  int slots = 1;          // ranks it runs at once
  int devices = 0;        // GPUs
  // The GPU ids behind device index 0..devices-1 (the agent's own CUDA_VISIBLE_DEVICES entries;
  // empty = "0".."devices-1"). Each rank gets one in its CUDA_VISIBLE_DEVICES.
  std::vector<std::string> visible_devices;
  int64_t memory_bytes = 0;
  std::string host = "127.0.0.1";  // address other ranks reach this one at (rank 0's store)
  std::string work_dir;            // jobs/<job_id>/ out dirs (share it between agents for cross-agent resume)
  std::string train_bin;           // the vsdm-train binary
  int threads_per_rank = 1;        // vsdm-train --threads
  double pg_timeout_seconds = 60;
  absl::Duration kill_grace = absl::Seconds(10);  // SIGTERM -> SIGKILL
  // Resource limits of each rank (ChildOptions; RLIMIT_CORE is always 0).
  int64_t rank_max_open_files = 65536;       // RLIMIT_NOFILE, clamped to the agent's hard limit; 0 = that limit
  int64_t rank_max_address_space_bytes = 0;  // RLIMIT_AS; 0 = unlimited (CUDA reserves far more than it uses)
};

// Not thread-safe: one loop calls Step(). `client`, `processes` and `metrics` must outlive the agent.
class Agent {
 public:
  // `metrics` may be null.
  Agent(AgentOptions options, CoordinatorClient& client, ProcessSupervisor& processes, AgentMetrics* metrics = nullptr);

  // One turn: (re-)register if needed, heartbeat (start assignments, stop aborted attempts),
  // reap exited children and report them, forward rank 0's progress. Returns how long to wait
  // before the next turn.
  absl::Duration Step();

  bool registered() const { return registered_; }
  size_t running() const { return ranks_.size(); }

 private:
  struct Rank {
    v1::Assignment assignment;
    int64_t child = 0;
    std::string out_dir, log_path;
    bool aborted = false;
    std::string last_progress;
    int64_t uploaded_round = 0;  // rank 0: the newest checkpoint round the coordinator has from us
    int device = -1;             // the local GPU index it was given (-1: none)
  };
  // A free local GPU index for a new rank (the lowest one no running rank holds; when all are
  // held, shared round-robin), or -1 when the agent offers none.
  int PickDevice() const;
  // Starts one assigned rank, or reports it failed: an assignment whose job id, attempt, rank,
  // store address or secret is refused (Note [What the agent takes from an assignment]) creates
  // nothing and is reported as bad input.
  void Start(const v1::Assignment& a);
  // The argv of one rank's vsdm-train (common/train_protocol.h).
  std::vector<std::string> TrainArgv(const v1::Assignment& a, const std::string& spec_path,
                                     const std::string& out_dir) const;
  void OnExit(const Rank& r, const ChildExit& e);
  absl::Status UploadArtifacts(const Rank& r);
  // Rank 0, before it starts: the coordinator's newest checkpoint of the job into the local
  // checkpoint dir, if newer than the newest one there. Returns the newest round now on disk.
  int64_t FetchCheckpoint(const Rank& r);
  // Rank 0, while it runs: uploads its newest checkpoint when the coordinator lacks it.
  void UploadCheckpoint(Rank& r);
  absl::Status UploadFile(const Rank& r, const std::string& local_path, const std::string& artifact_path);
  std::vector<v1::RunningRank> Running() const;
  void RegisterIfNeeded();
  void Heartbeat();
  void ReapChildren();
  void UploadPending();
  void ReportPending();
  void ForwardProgress();
  void ForwardVariational(Rank& r);
  void ForwardTrainer(Rank& r);

  AgentOptions options_;
  CoordinatorClient& client_;
  ProcessSupervisor& processes_;
  AgentMetrics* metrics_;
  bool registered_ = false;
  absl::Duration heartbeat_ = absl::Seconds(1);
  std::map<int64_t, Rank> ranks_;                           // by child id
  std::set<std::string> started_;                           // "attempt#rank" ever started (assignments repeat)
  std::deque<v1::CompleteRequest> unreported_;              // exits to report once the coordinator answers
  std::deque<std::pair<Rank, ChildExit>> pending_uploads_;  // rank 0 successes, artifacts not yet up
};

}  // namespace vsdm::worker
