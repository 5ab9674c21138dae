// The coordinator's state machine: jobs, their attempts and events, for users (submit, get,
// list, cancel, watch) and for worker agents (register, heartbeat, report, complete). Tick()
// expires worker leases (failing, aborting and requeueing what they ran) and runs a scheduling
// pass. Every state change is written durably to the JobStore before it becomes visible or is
// acknowledged; a failed write changes nothing. (Progress reports are the exception: they are
// kept in memory and streamed, and reach the store with the job's next state change.) The gRPC
// services are thin adapters over this. The watch streams live in JobEventHub; what each agent
// is still to be told (assignments, aborts) and the attempts' store ports in AssignmentBook.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/job_spec.h"
#include "server/assignment_book.h"
#include "server/job_event_hub.h"
#include "server/job_scheduler.h"
#include "server/job_store.h"
#include "server/worker_registry.h"
#include "vsdm/v1/service.pb.h"

namespace vsdm::server {

struct JobManagerOptions {
  absl::Duration lease = absl::Seconds(15);           // a worker is lost after this without heartbeat
  absl::Duration restart_backoff = absl::Seconds(5);  // first requeue delay; doubles per failed attempt
  absl::Duration max_backoff = absl::Minutes(5);
  absl::Duration recovery_grace = absl::Seconds(45);  // after a coordinator restart: how long a running
                                                      // attempt waits for its agents to report its ranks
  // Note [Progress deadlines]: a running attempt that sends no progress report for too long is
  // failed and requeued, with the reason in its event, so no job can sit RUNNING with nothing
  // alive behind it. The allowance is startup_deadline from the start to the first report and
  // from the last round's report to the end (data loading, rendezvous, the final evaluation);
  // between rounds it is max(progress_deadline_min, progress_deadline_factor x the round time
  // of the last report).
  absl::Duration startup_deadline = absl::Minutes(10);
  double progress_deadline_factor = 10;
  absl::Duration progress_deadline_min = absl::Seconds(60);
  // Note [Lease safety]: a gap between two ticks longer than stall_threshold (the coordinator
  // itself stalled: a slow disk, a paused process) first extends every lease by the gap, so
  // heartbeats that waited behind it never expire anyone. And when more than max_expire_fraction
  // of at least 3 alive workers run out of lease in one tick, every lease is extended by one
  // more lease first (logged); whoever is still silent after that is expired.
  absl::Duration stall_threshold = absl::Seconds(5);
  double max_expire_fraction = 0.5;
  // Note [Heartbeats beside the lock]: how long a heartbeat waits for the manager's mutex before
  // it answers with only its lease renewed.
  absl::Duration heartbeat_lock_wait = absl::Milliseconds(250);
  SchedulerOptions scheduler;
  std::string artifact_root = "artifacts";  // a job's artifacts: <root>/<job_id> (same for every attempt)
  // TCPStore ports for the attempts' rank 0, handed out round-robin; no two live attempts share
  // one, and a start waits (pending no_store_port) while every port is held. --store-port-range;
  // REQUIRES: 1 <= lo <= hi <= 65535 (ParsePortRange checks it).
  PortRange store_ports = {29500, 29999};
  int default_page_size = 50;
  int max_page_size = 500;
  // Per-owner quota on jobs waiting in the queue (RESOURCE_EXHAUSTED naming it); 0 = none.
  int max_queued_per_owner = 0;
  int max_sweep_members = 256;  // SubmitSweep
  // Per-field bounds and the per-rank memory estimate a submitted spec must pass (--max-rank-memory).
  JobSpecLimits spec_limits;
  // Retention: beyond this many finished jobs the oldest (by end time) are deleted with their
  // events, from memory and the store, at most 1000 a tick (their artifacts stay on disk); 0 = keep all.
  int retain_finished = 0;
  // Operational warnings (a start that could not be made, ranks that could not be booked), one
  // line each, called with no lock held, possibly from several threads at once. Empty =
  // "vsdm-coordinator: <line>" on stderr.
  std::function<void(const std::string&)> log;
};

// Counts for /metrics.
struct JobManagerStats {
  std::map<v1::JobState, int> jobs_by_state;
  int workers_alive = 0, workers_lost = 0;
  int64_t restarts = 0;                                  // attempts requeued after a failure
  std::map<std::string, int64_t> restarts_by_cause;      // lease_lost | rank_failed | rank_gone | no_progress | preempted | recovery
  std::map<PendingKind, int> pending_by_kind;            // queued jobs by why they wait
  std::vector<std::pair<std::string, double>> finished;  // (outcome, seconds since submit), drained
  std::map<std::string, double> heartbeat_age_seconds;   // alive workers
  std::map<std::string, double> goodput;                 // running jobs: Progress.goodput_ratio
  // Note [Recovery phases]: after a failed attempt that is requeued, "detect" = failure (the
  // lost worker's last heartbeat, or the failing rank's report) to requeue; "reschedule" =
  // requeue to the new attempt's start (backoff + waiting for room); "resume" = start to the new
  // attempt's first progress report (rendezvous, checkpoint restore, one round). Drained.
  std::vector<std::pair<std::string, double>> recovery;
  double last_pass_seconds = 0;            // wall time of the last scheduling pass (snapshot, plan, starts)
  int64_t heartbeats_deferred = 0;         // so far: heartbeats answered lease-only (Note [Heartbeats beside the lock])
  std::vector<double> queue_wait_seconds;  // of attempts started since the last call (drained)
};

// Which jobs a caller may see: every job (an admin, or auth off), or only those of `owner`. The
// others are NOT_FOUND, never PERMISSION_DENIED, so job ids do not leak.
struct JobScope {
  std::optional<std::string> owner;  // nullopt = every job
  bool Sees(const std::string& job_owner) const { return !owner || *owner == job_owner; }
};

class JobManager {
 public:
  using EventCallback = JobEventHub::EventCallback;

  // `store` and `clock` must outlive the manager. Thread-safe.
  JobManager(JobStore& store, const Clock& clock, JobManagerOptions options = {});

  // Loads every job from the store (on start). Running attempts wait recovery_grace for their
  // agents to re-register; queued jobs queue again.
  absl::Status Recover();

  // --- users
  // INVALID_ARGUMENT naming the field for a bad spec or request_id. Idempotency keys are per
  // owner (AIP-155): the same owner and request_id with the same spec returns the first job; with
  // another spec it is ALREADY_EXISTS. RESOURCE_EXHAUSTED at max_queued_per_owner. `owner` is the
  // authenticated principal (the spec's owner field is used only when auth is off and `owner` is
  // ""). Durable when it returns.
  absl::StatusOr<v1::Job> Submit(const v1::JobSpec& spec, const std::string& request_id, const std::string& owner);
  // Note [Sweeps] (service.proto): every member validated (INVALID_ARGUMENT naming
  // `members[i].spec.<field>`), then all written in one commit as jobs of one new group, or none.
  // request_id and the quota as for Submit (the quota counts every member).
  absl::StatusOr<v1::SubmitSweepResponse> SubmitSweep(const v1::SubmitSweepRequest& request,
                                                      const std::string& owner);
  absl::StatusOr<v1::Job> Get(const std::string& job_id, const JobScope& scope = {}) const;  // NOT_FOUND
  // Newest first. INVALID_ARGUMENT for a negative page_size or a page_token not from ListJobs.
  // A scope with an owner lists only that owner's jobs (whatever the request's owner filter).
  absl::StatusOr<v1::ListJobsResponse> List(const v1::ListJobsRequest& request, const JobScope& scope = {}) const;
  // QUEUED or RUNNING -> CANCELLED (running ranks are aborted). FAILED_PRECONDITION when the job
  // has already finished; NOT_FOUND.
  absl::StatusOr<v1::Job> Cancel(const std::string& job_id, const JobScope& scope = {});
  // The job's stored events after `after_sequence`, and from then on every new event to `cb`
  // (progress events included; stored ones exactly once, in order). Returns a subscription id.
  // `cb` runs on the thread that caused the event (or one delivering concurrently), with no lock
  // held; it must not block (JobEventHub).
  absl::StatusOr<int64_t> Watch(const std::string& job_id, int64_t after_sequence, const EventCallback& cb,
                                std::vector<v1::JobEvent>* replay, const JobScope& scope = {});
  void Unwatch(int64_t subscription);

  // --- agents. Note [Workers speak for themselves]: a worker id is bound to the principal that
  // first registered it; each Register issues a new session credential (revoking the last), and
  // every other call for that id must present it. A call for a worker id, attempt or rank the
  // caller does not hold is refused (PERMISSION_DENIED or FAILED_PRECONDITION) and changes nothing.
  // INVALID_ARGUMENT naming the field for a bad worker id, slots, devices, memory or host;
  // PERMISSION_DENIED when the id is bound to another principal.
  absl::StatusOr<v1::RegisterResponse> Register(const v1::RegisterRequest& request, const std::string& principal = "");
  // NOT_FOUND for an unknown or lost worker (register again); PERMISSION_DENIED for a credential
  // that is not the worker's current one.
  //
  // Note [Heartbeats beside the lock]: the manager's mutex is held across durable writes (Commit
  // waits for the group commit's fsync), so on a stalled disk a heartbeat that waited for it
  // would wait as long as the disk, and every worker could run out of lease at once (review M7).
  // A heartbeat of a known worker with its current credential therefore first renews its lease
  // under a mutex of its own (beats_mu_), then waits at most heartbeat_lock_wait for mu_: past
  // that it answers OK with lease_seconds and nothing else. That is safe because nothing a
  // heartbeat carries is lost by waiting: assignments are sent again until the worker lists the
  // rank, abort orders stay queued, and the check of the ranks it lists runs at its next
  // heartbeat. The renewals reach the registry (and so lease expiry) at the start of each Tick.
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& request, const std::string& credential)
      ABSL_LOCKS_EXCLUDED(mu_, beats_mu_);
  // Progress of rank 0 of the caller's attempt: round within [0, rounds] and never lower than the
  // attempt's last report, finite figures, at most 64 metrics (INVALID_ARGUMENT otherwise).
  absl::Status Report(const v1::ReportRequest& request, const std::string& credential);
  // A rank of an attempt placed on the caller ended: FAILED_PRECONDITION for a rank or attempt
  // it does not hold (stale ones included); the message is kept to its last 4 KiB.
  absl::Status Complete(const v1::CompleteRequest& request, const std::string& credential);
  // The job an artifact upload goes to: only the worker holding rank 0 of the job's current
  // attempt may upload (FAILED_PRECONDITION otherwise).
  absl::StatusOr<std::string> UploadTarget(const v1::UploadArtifactRequest& request, const std::string& credential);
  // AppendLog: the job whose running attempt has the request's rank on its worker.
  absl::StatusOr<std::string> LogTarget(const v1::AppendLogRequest& request, const std::string& credential);
  // The job whose checkpoints the caller may fetch: the same rule (rank 0 of the current attempt).
  absl::StatusOr<std::string> CheckpointSource(const v1::FetchCheckpointRequest& request, const std::string& credential);

  // One pass: lease expiry (fail, abort, requeue or fail for good), recovery deadlines, then a
  // scheduling pass. Call periodically.
  void Tick();

  // The counts for /metrics. Drains what accumulates between calls (finished, recovery,
  // queue_wait_seconds): call from one place (the ticker).
  JobManagerStats TakeStats();
  v1::ListWorkersResponse Workers() const;

 private:
  struct Attempt {
    std::string attempt_id;  // <job_id>/<n>
    int number = 0;
    std::vector<RankPlacement> ranks;  // by rank; empty worker_id = not yet re-reported after recovery
    std::set<int> done;                // ranks that exited 0 (durable: Job.done_ranks)
    // Ranks their worker has reported running (Register or Heartbeat). Such a rank that its
    // worker stops listing before it completes is gone: the attempt fails at once.
    std::set<int> acked;
    absl::Time last_progress_at;  // Monotonic(): the start, then each progress report
    bool reported = false;        // a progress report has arrived in this attempt
    double round_seconds = 0;     // of the last report (steps_per_round / steps_per_second)
    std::string rendezvous_secret;     // in its c10d store key prefix (Assignment.rendezvous_secret)
    int64_t last_round = 0;            // of rank 0's last progress report
    bool fallback_reported = false;    // its checkpoint_fallback event is durable
    std::optional<absl::Time> recovering_since;
  };
  struct Recovery {
    absl::Time requeued_at;
    std::optional<absl::Time> started_at;
  };
  struct Record {
    std::optional<Recovery> recovery;  // Note [Recovery phases]
    StoredJob stored;
    std::vector<v1::JobEvent> events;  // stored events, in order
    absl::Time queued_since;
    absl::Time not_before = absl::InfinitePast();
    std::optional<Attempt> attempt;  // while RUNNING
    // Failed attempts in a row with no progress report (the restart backoff doubles over them):
    // an attempt that trained resets it, so a long job hit by many unrelated faults does not wait
    // minutes for each (Kubernetes resets CrashLoopBackOff after a good run the same way).
    int failure_streak = 0;
  };
  // One pending change: the new job record, its event, and what to do once it is durable.
  struct Change {
    std::string job_id;
    v1::Job job;
    v1::JobEvent event;
    std::function<void()> apply;  // side effects in memory, run under mu_ after the write
  };

  v1::Job Visible(const Record& r) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::JobEvent MakeEvent(const Record& r, const v1::Job& job, const std::string& kind, const std::string& message) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The attempt that was running when the store was written, waiting for its agents to report
  // its ranks (Recover); its store port is held again.
  Attempt RecoveredAttempt(const Record& r, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes the changes durably, then applies them and publishes their events. On a failed write
  // nothing changes.
  absl::Status Commit(std::vector<Change> changes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The change that ends the current attempt of `r` with `reason`: requeue with backoff while
  // restarts remain, else FAILED.
  // `cause` (lease_lost | rank_failed | recovery) labels the restart metric.
  // `failed_at` is when the failure happened (Monotonic; default: now). cause "preempted" requeues
  // at once and is not counted against max_restarts. `startup_signature` (StartupSignature of a
  // rank's exit): when the attempt had sent no progress yet and the previous attempt failed in
  // start-up with the same signature, the job ends FAILED (fail fast).
  Change FailAttempt(Record& r, const std::string& reason, const std::string& cause,
                     std::optional<absl::Time> failed_at = std::nullopt, const std::string& startup_signature = "")
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Note [Checkpoint fallback events]: the change that records, once an attempt, that rank 0's
  // report says it resumed from an older checkpoint than its newest (progress metric
  // checkpoints_skipped > 0: the newer ones were truncated, corrupt, another job's or not
  // finite, and renamed .bad); nullopt when there is nothing (more) to say.
  std::optional<Change> FallbackChange(Record& r, const v1::Progress& p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The change that ends an attempt whose rank exited non-zero (Complete).
  Change RankExited(Record& r, const v1::CompleteRequest& req) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The change that ends the job SUCCEEDED (rank 0 exited 0).
  Change Succeeded(Record& r, const v1::CompleteRequest& req) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Finished(const v1::Job& job, const std::string& outcome) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The attempt is over: its unfinished ranks are told to abort, its slots, queued assignments
  // and store port are released.
  void EndAttempt(const Attempt& a) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Record* FindAttempt(const std::string& attempt_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // RESOURCE_EXHAUSTED when `adding` more queued jobs would put `owner` past max_queued_per_owner.
  absl::Status CheckQueueQuota(const std::string& owner, int adding) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A queued job's record and its "submitted" event (not yet stored).
  Record NewJobRecord(const JobSpec& spec, const std::string& job_id, absl::Time now, v1::JobEvent* ev) const;
  absl::StatusOr<std::vector<JobSpec>> SweepSpecs(const v1::SubmitSweepRequest& req, const std::string& owner) const;
  // The group first submitted under the sweep's key (`first_id`: its first member): the members
  // still kept (retention may have removed finished ones), each of which must have the spec of
  // the request's member at its position; ALREADY_EXISTS otherwise.
  absl::StatusOr<v1::SubmitSweepResponse> SweepReplay(const std::vector<JobSpec>& specs, const std::string& first_id)
      const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Submit's checks under the lock: the first job when `key` (owner, request_id) was submitted
  // with the same spec, ALREADY_EXISTS with another spec, RESOURCE_EXHAUSTED at the queue quota;
  // else nullopt, with `key` marked in flight (when there is a request_id).
  absl::StatusOr<std::optional<v1::Job>> AdmitSubmit(const JobSpec& spec, const std::string& request_id,
                                                     const std::string& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Note [Heartbeats beside the lock]: true (and the beat recorded) when `credential` is the
  // current one of a worker that is alive; false for anything else (the full path says why).
  bool RenewLease(const std::string& worker_id, const std::string& credential) ABSL_LOCKS_EXCLUDED(beats_mu_);
  // The beats recorded beside the lock, into the registry's lease expiries.
  void ApplyBeats() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) ABSL_LOCKS_EXCLUDED(beats_mu_);
  // Takes mu_ if it comes free within `d` (real time: a bound on waiting, not a decision).
  bool LockWithin(absl::Duration d) ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true, mu_);
  absl::StatusOr<v1::HeartbeatResponse> HeartbeatLocked(const v1::HeartbeatRequest& req, const std::string& credential)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // PERMISSION_DENIED unless `credential` is `worker_id`'s current session credential; NOT_FOUND
  // for a worker that is not registered (or lost: register again).
  absl::Status CheckWorker(const std::string& worker_id, const std::string& credential) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The job of `attempt_id` when the caller is `worker_id` (CheckWorker) and holds its `rank`.
  absl::StatusOr<std::string> RankJob(const std::string& worker_id, const std::string& attempt_id, int64_t rank,
                                      const std::string& credential) ABSL_LOCKS_EXCLUDED(mu_);
  // The running attempt `attempt_id` with `rank` placed on `worker_id`; FAILED_PRECONDITION
  // otherwise (a stale attempt, a rank out of range or placed elsewhere).
  absl::StatusOr<Record*> HeldAttempt(const std::string& worker_id, const std::string& attempt_id, int64_t rank)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // --- Tick's steps
  // Fails the attempts of workers whose lease ran out (each job once; adds it to `failing`).
  std::vector<Change> ExpireLeases(std::set<std::string>* failing) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Fails attempts past their progress deadline (Note [Progress deadlines]).
  std::vector<Change> ExpireProgress(std::set<std::string>* failing) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Note [Lease safety]: extends every lease after the coordinator's own stall, and once before a
  // mass expiry.
  void GuardLeases(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The worker `worker_id` lists `running` (Register or Heartbeat): those ranks are acknowledged,
  // its draining slots not in it are freed, and each attempt with an acknowledged rank on it that
  // it no longer lists and that has not completed fails (the changes returned, each job once).
  std::vector<Change> ReconcileRanks(const std::string& worker_id, const std::set<std::pair<std::string, int>>& running)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the recovery wait of attempts whose ranks are all reported back, and fails those still
  // missing ranks after recovery_grace (skipping jobs in `failing`; adds the ones it fails).
  std::vector<Change> ExpireRecoveries(std::set<std::string>* failing) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Retention (options_.retain_finished): deletes the oldest finished jobs past the limit; on a
  // failed store write nothing is deleted (retried next tick).
  void PruneFinished() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Snapshot of the queue, plan, durable starts; records the pending reasons and the pass time.
  void RunSchedulingPass() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The queued jobs for the scheduler; `running` gets the running jobs per owner.
  std::vector<QueuedJob> QueueSnapshot(std::map<std::string, int>* running) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The change that starts `p`'s job as its next attempt, with a store port taken and every
  // rank's slot booked in the registry; nullopt (nothing taken, the job stays queued, a warning
  // queued) when no port is free or a slot cannot be booked. The caller releases both if the
  // change is not committed.
  std::optional<Change> MakeStartChange(const Placement& p, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues `a`'s assignments for its workers (the apply step of a start).
  void QueueAssignments(const Record& r, const Attempt& a, const std::string& store_addr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After a coordinator restart: takes the ranks `req`'s worker still runs back into their
  // attempts, and tells it to abort the rest.
  void ReclaimRunningRanks(const v1::RegisterRequest& req) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // A warning for options_.log, emitted by Deliver once the lock is released.
  void Warn(std::string line) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Delivers the published events (JobEventHub::Flush), then logs the queued warnings.
  void Deliver() ABSL_LOCKS_EXCLUDED(mu_);

  JobStore& store_;
  const Clock& clock_;
  const JobManagerOptions options_;
  JobScheduler scheduler_;

  mutable absl::Mutex mu_;
  WorkerRegistry registry_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Record> jobs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> by_request_ ABSL_GUARDED_BY(mu_);  // RequestKey(owner, id) -> job
  struct WorkerBinding {
    std::string principal;
    std::string credential;
  };
  std::map<std::string, WorkerBinding> bindings_ ABSL_GUARDED_BY(mu_);  // by worker id
  std::set<std::string> requests_in_flight_ ABSL_GUARDED_BY(mu_);
  int64_t next_job_ ABSL_GUARDED_BY(mu_) = 1;
  AssignmentBook book_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> pending_reasons_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, PendingKind> pending_kinds_ ABSL_GUARDED_BY(mu_);
  bool ports_exhausted_ ABSL_GUARDED_BY(mu_) = false;  // warned once per episode
  std::vector<std::string> warnings_ ABSL_GUARDED_BY(mu_);
  JobEventHub events_;  // thread-safe on its own; published to under mu_ (commit order)
  // Workers whose lease ran out, kept until the change that fails their attempts is durable.
  std::vector<LostWorker> pending_lost_ ABSL_GUARDED_BY(mu_);
  int64_t restarts_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, int64_t> restarts_by_cause_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<std::string, double>> finished_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<std::string, double>> recovery_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::Time> last_tick_ ABSL_GUARDED_BY(mu_);        // Monotonic(), at the start of the last Tick
  std::optional<absl::Time> mass_expiry_since_ ABSL_GUARDED_BY(mu_);  // Note [Lease safety]
  double last_pass_seconds_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<double> queue_waits_ ABSL_GUARDED_BY(mu_);
  // Note [Heartbeats beside the lock]: each alive worker's current credential (a copy of its
  // binding's) and its newest heartbeat (Monotonic).
  struct Beat {
    std::string credential;
    absl::Time at;
  };
  mutable absl::Mutex beats_mu_ ABSL_ACQUIRED_AFTER(mu_);
  std::map<std::string, Beat> beats_ ABSL_GUARDED_BY(beats_mu_);
  int64_t heartbeats_deferred_ ABSL_GUARDED_BY(beats_mu_) = 0;
};

}  // namespace vsdm::server
