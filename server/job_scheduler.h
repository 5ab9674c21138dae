// Gang scheduling as a pure function of (queue, free capacity, clock): which queued jobs start
// now and on which workers each rank runs, and for every job left queued a reason a person can
// read. No I/O, no locks, no clock of its own; the coordinator calls Plan on every pass.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace vsdm::server {

// What one worker can take right now.
struct WorkerCapacity {
  std::string worker_id;
  int free_slots = 0;    // training processes it can still start
  int free_devices = 0;  // GPUs not yet given to a rank
  int total_slots = 0;
  int total_devices = 0;
};

// A job waiting to run: it needs `trainers` + 1 ranks at once (the variational rank is a rank
// like the others); with `cuda`, each trainer rank also needs a device.
struct QueuedJob {
  std::string job_id;
  std::string owner;
  int64_t priority = 0;                          // higher first
  absl::Time submit_time;                        // ties: earlier first
  absl::Time queued_since;                       // when it (re)entered the queue: what the starvation guard ages
  absl::Time not_before = absl::InfinitePast();  // restart backoff
  int trainers = 1;
  bool cuda = false;
};

struct RankPlacement {
  int rank = 0;
  std::string worker_id;
  bool device = false;  // this rank holds one of the worker's devices
};

struct Placement {
  std::string job_id;
  std::vector<RankPlacement> ranks;  // rank 0 .. trainers (the last is the variational rank)
};

struct SchedulerOptions {
  // Note [Backfill with a starvation guard]: a job that cannot be placed does not block the jobs
  // behind it (they backfill the free slots), unless it fits the cluster's total capacity and has
  // waited this long since it entered the queue; then it holds the queue: no later job is placed
  // until it has started, so slots drain towards it as running jobs finish. Only the first such
  // job in queue order holds the queue, so a big job waits at most ~reserve_after plus the time
  // for enough running jobs to end, and small jobs are never blocked by one that cannot fit at
  // all.
  absl::Duration reserve_after = absl::Minutes(10);
  // Running jobs per owner; 0 = no quota.
  int max_running_per_owner = 0;
};

// Why a queued job waits, as a bounded set (the `reason` label of vsdm_jobs_pending).
enum class PendingKind {
  kBackoff,       // restart backoff after a failed attempt
  kQuota,         // its owner is at max_running_per_owner
  kBehindHolder,  // a starving job holds the queue (Note [Backfill with a starvation guard])
  kNoRoom,        // not enough free slots or devices now
  kHoldingQueue,  // it is the starving job holding the queue
  kNeverFits,     // the registered workers can never hold it together
  kNoStorePort,   // placed, but every TCPStore port of the range is held (set by JobManager)
};
// Every kind, in declaration order: iterate this (e.g. to pre-create every metric series) so a
// new kind cannot be forgotten.
inline constexpr PendingKind kAllPendingKinds[] = {
    PendingKind::kBackoff,      PendingKind::kQuota,     PendingKind::kBehindHolder, PendingKind::kNoRoom,
    PendingKind::kHoldingQueue, PendingKind::kNeverFits, PendingKind::kNoStorePort,
};
static_assert(sizeof(kAllPendingKinds) / sizeof(kAllPendingKinds[0]) ==
                  static_cast<size_t>(PendingKind::kNoStorePort) + 1,
              "kAllPendingKinds must list every PendingKind (keep the last one last)");
// The metric label: "backoff", "quota", "behind_holder", "no_room", "holding_queue",
// "never_fits", "no_store_port".
const char* PendingKindName(PendingKind kind);

struct SchedulePlan {
  std::vector<Placement> placements;                   // in queue order
  std::map<std::string, std::string> pending_reasons;  // every job left queued
  std::map<std::string, PendingKind> pending_kinds;    // the same jobs by kind of reason
};

class JobScheduler {
 public:
  explicit JobScheduler(SchedulerOptions options = {}) : options_(options) {}

  // `running_per_owner`: jobs each owner has running now (for the quota).
  SchedulePlan Plan(std::vector<QueuedJob> queue, std::vector<WorkerCapacity> workers,
                    const std::map<std::string, int>& running_per_owner, absl::Time now) const;

  // Queue order: priority (higher first), then submit time, then job id.
  static bool Before(const QueuedJob& a, const QueuedJob& b);

 private:
  SchedulerOptions options_;
};

}  // namespace vsdm::server
