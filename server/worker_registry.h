// The workers the coordinator knows, their resources, the ranks placed on them, and their
// leases: a heartbeat renews a worker's lease; a lease that runs out marks the worker lost and
// hands back the ranks it held, so the coordinator can fail those attempts.
#pragma once

#include <map>
#include <set>
#include <utility>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "server/job_scheduler.h"

namespace vsdm::server {

struct WorkerResourcesInfo {
  int slots = 0;
  int devices = 0;
  int64_t memory_bytes = 0;
  std::string host;  // the address its ranks publish (rank 0's store)
};

enum class WorkerState { kAlive, kLost };

struct RankSlot {
  std::string attempt_id;
  int rank = 0;
  bool device = false;
  // Note [Slots drain]: the attempt has ended but the worker still runs the rank (it is inside
  // its SIGTERM grace, or has not heard of the abort). The slot stays taken until a heartbeat
  // no longer lists the rank, or the worker is lost, so a new rank never lands on a CPU or GPU a
  // dying one still holds (review M6).
  bool draining = false;
};

struct WorkerInfo {
  std::string worker_id;
  WorkerResourcesInfo resources;
  WorkerState state = WorkerState::kAlive;
  absl::Time lease_expiry;  // on the clock's Monotonic() time (Note [Two clocks])
  std::vector<RankSlot> ranks;
};

struct LostWorker {
  std::string worker_id;
  std::vector<RankSlot> ranks;  // what it held when its lease ran out
};

// Not thread-safe: the coordinator serialises calls. `clock` must outlive the registry.
class WorkerRegistry {
 public:
  WorkerRegistry(const Clock& clock, absl::Duration lease) : clock_(clock), lease_(lease) {}

  // Adds a worker, or refreshes a known (or lost) one under the same id with new resources and a
  // new lease. Ranks it held stay placed (an agent that restarted keeps running them).
  // INVALID_ARGUMENT for an empty id or negative resources.
  absl::Status Register(const std::string& worker_id, const WorkerResourcesInfo& resources);
  // Renews the lease. NOT_FOUND for an unknown or lost worker: it must register again.
  absl::Status Heartbeat(const std::string& worker_id);
  // A heartbeat taken at `beat` (Monotonic) while the registry was busy: the lease runs to
  // beat + lease unless it already runs later. Nothing for an unknown or lost worker.
  void RenewFrom(const std::string& worker_id, absl::Time beat);
  // Marks every alive worker whose lease has run out lost and releases its ranks.
  std::vector<LostWorker> ExpireLeases();
  // The alive workers whose lease has run out (what ExpireLeases would take), changing nothing.
  std::vector<std::string> Expired() const;
  // Pushes every alive worker's lease expiry `d` later (after the coordinator's own stall).
  void ExtendLeases(absl::Duration d);

  // Places one rank. FAILED_PRECONDITION when the worker is not alive or has no free slot (or
  // device).
  absl::Status Assign(const std::string& worker_id, const std::string& attempt_id, int rank, bool device);
  // Frees every rank of the attempt, wherever it is placed, but the draining ones.
  void ReleaseAttempt(const std::string& attempt_id);
  // Marks one placed rank draining (Note [Slots drain]); nothing when it is not placed there.
  void DrainRank(const std::string& worker_id, const std::string& attempt_id, int rank);
  // Frees the draining slots of `worker_id` whose (attempt, rank) is not in `running`; returns
  // how many.
  int ReleaseDrained(const std::string& worker_id, const std::set<std::pair<std::string, int>>& running);

  // Free capacity of the alive workers (for JobScheduler::Plan).
  std::vector<WorkerCapacity> Capacity() const;
  const WorkerInfo* Find(const std::string& worker_id) const;
  const std::map<std::string, WorkerInfo>& workers() const { return workers_; }
  int CountInState(WorkerState s) const;

 private:
  const Clock& clock_;
  absl::Duration lease_;
  std::map<std::string, WorkerInfo> workers_;
};

}  // namespace vsdm::server
