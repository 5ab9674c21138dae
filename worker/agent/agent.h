// The worker agent's logic (vsdm-worker): registers with the coordinator, renews its lease,
// starts one `vsdm-train` child per assigned rank, stops the children of aborted attempts, and
// reports progress and exits (uploading rank 0's artifacts before it reports success). When the
// coordinator is unreachable it keeps its children running, keeps exits it could not report,
// and registers again, with what it still runs, once the coordinator is back; when that lasts
// longer than its fence (its lease is long gone and the attempts with it) it stops them.
#pragma once

#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "worker/agent/agent_metrics.h"
#include "worker/agent/coordinator_client.h"
#include "worker/agent/file_upload.h"
#include "worker/agent/log_forward.h"
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
  // jobs/<job_id>/attempt-<n>-<uid>/ out dirs and jobs/<job_id>/logs/ (Note [Attempt
  // directories]), and agent-<worker_id>.ranks (Note [The agent's record of its ranks]).
  std::string work_dir;
  std::string train_bin;     // the vsdm-train binary
  int threads_per_rank = 1;  // vsdm-train --threads
  double pg_timeout_seconds = 60;
  absl::Duration kill_grace = absl::Seconds(10);  // SIGTERM -> SIGKILL
  // Stop every rank once no Register or Heartbeat has been answered for this long (the
  // coordinator's lease has expired and it has requeued the attempts elsewhere); zero = never.
  absl::Duration fence_after = absl::Seconds(120);
  // Resource limits of each rank (ChildOptions; RLIMIT_CORE is always 0).
  int64_t rank_max_open_files = 65536;       // RLIMIT_NOFILE, clamped to the agent's hard limit; 0 = that limit
  int64_t rank_max_address_space_bytes = 0;  // RLIMIT_AS; 0 = unlimited (CUDA reserves far more than it uses)
  std::string instance_id;                   // sent with Register and Heartbeat; "" = random hex made here
};

// Note [Heartbeats from their own thread]
// The lease is renewed by a thread that does nothing else (StartHeartbeatThread): every
// heartbeat period it sends the set of ranks the agent holds, as the loop last published it,
// and hands the answer (assignments, abort orders) to the loop, which acts on it next turn. So
// an upload of a big model.pt, a slow disk or a stack dump on the loop never delays a heartbeat
// past the lease (review H6). A NOT_FOUND answer (the lease was lost, or the coordinator
// restarted) is followed at once by a Register listing the same set. Only the loop forks (the
// supervisor's children die with the thread that forked them).
//
// The set is exact (HeartbeatRequest.running): every child not yet reaped (aborted ones too:
// the coordinator frees their slots when they are gone), every exited rank 0 whose artifacts are
// still uploading, and every exit not yet acknowledged by Complete. The coordinator fails at once
// the attempt of a rank it placed here, saw acknowledged and no longer finds listed, so a
// restarted agent (new instance_id, nothing listed) never leaves a job waiting on a rank that is
// gone.
//
// Without the thread (tests), Step() exchanges one heartbeat itself at the start of each turn.

// The loop's methods (Recover, Step, Shutdown, running) are called from one thread, the
// process's main thread. `client`, `processes`, `metrics` and `clock` must outlive the agent.
class Agent {
 public:
  // `metrics` may be null; `clock` null = a RealClock of its own (its monotonic time drives the
  // fence).
  Agent(AgentOptions options, CoordinatorClient& client, ProcessSupervisor& processes,
        AgentMetrics* metrics = nullptr, const Clock* clock = nullptr);
  ~Agent();  // stops the heartbeat thread; children are the supervisor's to stop

  // Once, before the first turn (Step calls it if it was not): SIGKILLs the ranks a predecessor
  // with this worker id left running (Note [The agent's record of its ranks]) and removes
  // `.tmp-*` files older than an hour from the job dirs (crashed atomic writes, review L7).
  void Recover();
  // Heartbeats from now on come from their own thread (Note [Heartbeats from their own thread]).
  void StartHeartbeatThread();

  // One turn: act on the heartbeats' answers (start assignments, stop aborted attempts), apply
  // the fence, reap exited children, upload a slice of pending artifacts or checkpoints, report
  // exits, forward rank 0's progress. Returns how long to wait before the next turn.
  absl::Duration Step();

  // The agent was told to stop (SIGTERM: pod deletion, scancel): SIGTERM to every rank (they
  // checkpoint and exit 75), up to kill_grace for them to exit (SIGKILL after), rank 0's last
  // checkpoint up if the coordinator lacks it, their exits reported, heartbeats stopped. Nothing
  // else is uploaded: a rank 0 that had succeeded with artifacts still pending is not reported.
  void Shutdown();

  bool registered() const;
  size_t running() const { return ranks_.size(); }
  const std::string& instance_id() const { return options_.instance_id; }

 private:
  struct Rank {
    v1::Assignment assignment;
    int64_t child = 0;
    std::string out_dir, log_path;
    bool aborted = false;  // stopped by an abort order, the fence or Shutdown: no exit report
    std::string last_progress;
    int64_t uploaded_round = 0;  // rank 0: the newest checkpoint round the coordinator has from us
    int device = -1;             // the local GPU index it was given (-1: none)
    std::optional<ProcessIdentity> process;
    // Rank 0, running: the checkpoint being uploaded, and its round.
    std::optional<FileUpload> checkpoint_upload;
    int64_t checkpoint_upload_round = 0;
    LogCursor log;  // Note [Live rank logs]: how much of its log the coordinator has
  };
  // An exited rank 0 whose files go up before its exit is reported.
  struct PendingUpload {
    Rank rank;
    ChildExit exit;
    FileUpload upload;
  };

  // A free local GPU index for a new rank (the lowest one no running rank holds; when all are
  // held, shared round-robin), or -1 when the agent offers none.
  int PickDevice() const;
  // Starts one assigned rank, or reports it failed: an assignment whose job id, attempt, rank,
  // store address, secret, uid or spec hash is refused (Note [What the agent takes from an
  // assignment]) creates nothing and is reported as bad input.
  void Start(const v1::Assignment& a);
  // Forks the rank's vsdm-train (on the loop's thread).
  absl::StatusOr<int64_t> StartChild(Rank& r, const std::string& spec_path);
  // The argv of one rank's vsdm-train (common/train_protocol.h).
  std::vector<std::string> TrainArgv(const v1::Assignment& a, const std::string& spec_path,
                                     const std::string& out_dir) const;
  void OnExit(const Rank& r, const ChildExit& e);
  v1::CompleteRequest Failure(const v1::Assignment& a, int exit_code, const std::string& message) const;
  // Rank 0, before it starts (Note [Checkpoints through the coordinator]): the coordinator's
  // newest checkpoint of the job into the attempt's checkpoint dir, or, when it has nothing
  // newer, the newest one of an earlier attempt dir of the same job uid. Returns the newest round
  // now there.
  int64_t PrepareCheckpoint(const Rank& r);
  // The coordinator's checkpoint when it is newer than round `have`: its round, or 0.
  int64_t FetchCheckpoint(const Rank& r, int64_t have);
  // Removes the attempt dirs of `job_id` but the newest two, `current` and those a rank of this
  // agent uses (Note [Attempt directories]).
  void PruneAttemptDirs(const std::string& job_id, const std::string& current);
  // Rank 0, while it runs: a slice of its newest checkpoint's upload when the coordinator lacks it.
  void UploadCheckpoint(Rank& r);
  // What an exited rank 0 uploads before its exit is reported: the artifacts after a success,
  // its newest checkpoint (when the coordinator lacks it) after a preemption (exit 75).
  std::optional<FileUpload> ExitUpload(const Rank& r, const ChildExit& e) const;

  // SIGTERM (its stacks in its log if it outlives that by 2 s, when asked), SIGKILL after kill_grace;
  // its exit is not reported.
  void StopRank(int64_t id, Rank& r, bool dump_stacks);
  std::vector<v1::RunningRank> Held() const;
  void PublishHeld();
  void WriteRankState();
  void StopPredecessorRanks();
  void RemoveStaleTempFiles();

  // The heartbeat side (either thread): one exchange with the coordinator.
  void Exchange();
  bool Register(const std::vector<v1::RunningRank>& held);
  absl::Status Heartbeat(const std::vector<v1::RunningRank>& held);
  void HeartbeatLoop();

  void ApplyAnswers();
  void Fence();
  void ReapChildren();
  // A slice of the pending uploads; true when some are left for the next turn.
  bool UploadPending();
  void ReportPending();
  void ForwardProgress();
  // Note [Live rank logs]: new log bytes of every running rank (`final`: of `r`, which exited).
  void ForwardLogs();
  void ForwardLog(Rank& r, bool final);
  void ForwardVariational(Rank& r);
  void ForwardTrainer(Rank& r);

  AgentOptions options_;
  CoordinatorClient& client_;
  ProcessSupervisor& processes_;
  AgentMetrics* metrics_;
  RealClock own_clock_;
  const Clock& clock_;
  bool recovered_ = false;
  std::map<int64_t, Rank> ranks_;                // by child id
  std::set<std::string> started_;                // "attempt#rank" ever started (assignments repeat)
  std::deque<v1::CompleteRequest> unreported_;   // exits to report once the coordinator answers
  std::deque<PendingUpload> pending_uploads_;    // exited rank 0s, files not yet up
  std::string state_written_;                    // the rank record as last written
  absl::Time logs_paused_until_;                 // monotonic: the coordinator did not take logs; retry after
  bool logs_unsupported_ = false;                // the coordinator keeps no logs (UNIMPLEMENTED)

  // Shared between the loop and the heartbeat thread.
  mutable absl::Mutex mu_;
  std::vector<v1::RunningRank> held_ ABSL_GUARDED_BY(mu_);  // as the loop last published it
  bool registered_ ABSL_GUARDED_BY(mu_) = false;
  absl::Duration heartbeat_ ABSL_GUARDED_BY(mu_) = absl::Seconds(1);
  absl::Time last_answer_ ABSL_GUARDED_BY(mu_);  // monotonic: the last Register or Heartbeat answered
  std::deque<v1::HeartbeatResponse> answers_ ABSL_GUARDED_BY(mu_);
  bool stop_heartbeats_ ABSL_GUARDED_BY(mu_) = false;
  std::thread heartbeat_thread_;
};

}  // namespace vsdm::worker
