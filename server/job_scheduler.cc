#include "server/job_scheduler.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_format.h"

namespace vsdm::server {

bool JobScheduler::Before(const QueuedJob& a, const QueuedJob& b) {
  if (a.priority != b.priority) return a.priority > b.priority;
  if (a.submit_time != b.submit_time) return a.submit_time < b.submit_time;
  return a.job_id < b.job_id;
}

namespace {

struct Need {
  int slots = 0, devices = 0;
};
Need NeedOf(const QueuedJob& j) { return {j.trainers + 1, j.cuda ? j.trainers : 0}; }

// Places the gang on `workers` (changed only on success): device ranks first on the workers
// with the most free devices, then the rest on the workers with the most free slots, so a gang
// lands on as few workers as it can. Rank 0 (the store host) is the first trainer. O(ranks x
// workers); the caller rejects jobs larger than the free total before calling.
bool TryPlace(const QueuedJob& job, std::vector<WorkerCapacity>& w, Placement* out) {
  std::vector<RankPlacement> ranks;
  std::vector<std::pair<int, bool>> taken;  // (worker index, device) to roll back
  auto take = [&](bool device) -> bool {
    int best = -1;
    for (int i = 0; i < static_cast<int>(w.size()); ++i) {
      if (w[i].free_slots < 1 || (device && w[i].free_devices < 1)) continue;
      if (best < 0 || (device ? w[i].free_devices > w[best].free_devices : w[i].free_slots > w[best].free_slots))
        best = i;
    }
    if (best < 0) return false;
    --w[best].free_slots;
    if (device) --w[best].free_devices;
    taken.emplace_back(best, device);
    ranks.push_back({static_cast<int>(ranks.size()), w[best].worker_id, device});
    return true;
  };
  bool ok = true;
  for (int r = 0; ok && r < job.trainers; ++r) ok = take(job.cuda);
  ok = ok && take(false);  // the variational rank
  if (!ok) {
    for (auto [i, device] : taken) {
      ++w[i].free_slots;
      if (device) ++w[i].free_devices;
    }
    return false;
  }
  out->job_id = job.job_id;
  out->ranks = std::move(ranks);
  return true;
}

std::string Plural(int n, const char* what) { return absl::StrFormat("%d %s%s", n, what, n == 1 ? "" : "s"); }

using Pending = std::pair<PendingKind, std::string>;  // a kind and the reason a person reads

// One Plan call: the free capacity left as jobs are placed, the quota counts, the holder.
struct Pass {
  const SchedulerOptions& options;
  absl::Time now;
  std::vector<WorkerCapacity> workers;  // by id; free counts shrink as jobs are placed
  Need total, free;                     // over `workers`
  std::map<std::string, int> running;   // per owner, placements of this pass included
  const QueuedJob* holder = nullptr;    // the job holding the queue (starvation guard)
  SchedulePlan plan;
};

Pass StartPass(const SchedulerOptions& options, absl::Time now, std::vector<WorkerCapacity> workers,
               const std::map<std::string, int>& running_per_owner) {
  std::sort(workers.begin(), workers.end(),
            [](const WorkerCapacity& a, const WorkerCapacity& b) { return a.worker_id < b.worker_id; });
  Pass p{options, now, std::move(workers), {}, {}, running_per_owner, nullptr, {}};
  for (const auto& w : p.workers) {
    p.total.slots += w.total_slots;
    p.total.devices += w.total_devices;
    p.free.slots += w.free_slots;
    p.free.devices += w.free_devices;
  }
  return p;
}

// Why `job` may not even try to be placed now (backoff, behind the holder, quota); nullopt if it may.
std::optional<Pending> Blocked(const QueuedJob& job, Pass& p) {
  if (p.now < job.not_before) {
    return Pending{PendingKind::kBackoff,
                   absl::StrFormat("restart backoff, eligible in %s",
                                   absl::FormatDuration(absl::Ceil(job.not_before - p.now, absl::Seconds(1))))};
  }
  if (p.holder != nullptr) {
    return Pending{PendingKind::kBehindHolder,
                   absl::StrFormat("behind %s, which has waited over %s and holds the queue until it fits",
                                   p.holder->job_id, absl::FormatDuration(p.options.reserve_after))};
  }
  const int max = p.options.max_running_per_owner;
  if (max > 0 && !job.owner.empty() && p.running[job.owner] >= max) {
    return Pending{PendingKind::kQuota, absl::StrFormat("owner %s has %s running (quota %d)", job.owner,
                                                        Plural(p.running[job.owner], "job"), max)};
  }
  return std::nullopt;
}

// Places `job` if the free capacity holds it (then counts it against the quota and the totals).
bool Place(const QueuedJob& job, Pass& p) {
  const Need need = NeedOf(job);
  Placement placement;
  if (need.slots > p.free.slots || need.devices > p.free.devices || !TryPlace(job, p.workers, &placement)) return false;
  p.plan.placements.push_back(std::move(placement));
  if (!job.owner.empty()) ++p.running[job.owner];
  p.free.slots -= need.slots;
  p.free.devices -= need.devices;
  return true;
}

// Why `job` did not fit now; it starts holding the queue if it could fit the cluster and has
// waited reserve_after (Note [Backfill with a starvation guard]).
Pending NoRoom(const QueuedJob& job, Pass& p) {
  const Need need = NeedOf(job);
  const std::string workers = Plural(static_cast<int>(p.workers.size()), "worker");
  std::string why =
      need.devices > 0
          ? absl::StrFormat(
                "needs %s and %s at once (%d trainers + 1 variational rank); %d slots and %d "
                "devices free of %d and %d on %s",
                Plural(need.slots, "slot"), Plural(need.devices, "device"), job.trainers, p.free.slots, p.free.devices,
                p.total.slots, p.total.devices, workers)
          : absl::StrFormat("needs %s at once (%d trainers + 1 variational rank); %d free of %d on %s",
                            Plural(need.slots, "slot"), job.trainers, p.free.slots, p.total.slots, workers);
  if (need.slots > p.total.slots || need.devices > p.total.devices)
    return {PendingKind::kNeverFits, why + "; the registered workers can never hold it together"};
  if (p.now - job.queued_since < p.options.reserve_after) return {PendingKind::kNoRoom, why};
  p.holder = &job;
  return {PendingKind::kHoldingQueue,
          why + absl::StrFormat("; waited over %s, so it holds the queue (no job behind it starts first)",
                                absl::FormatDuration(p.options.reserve_after))};
}

}  // namespace

const char* PendingKindName(PendingKind kind) {
  switch (kind) {
    case PendingKind::kBackoff:
      return "backoff";
    case PendingKind::kQuota:
      return "quota";
    case PendingKind::kBehindHolder:
      return "behind_holder";
    case PendingKind::kNoRoom:
      return "no_room";
    case PendingKind::kHoldingQueue:
      return "holding_queue";
    case PendingKind::kNeverFits:
      return "never_fits";
    case PendingKind::kNoStorePort:
      return "no_store_port";
  }
  return "unknown";  // not reached: -Wswitch names a kind missing above
}

SchedulePlan JobScheduler::Plan(std::vector<QueuedJob> queue, std::vector<WorkerCapacity> workers,
                                const std::map<std::string, int>& running_per_owner, absl::Time now) const {
  std::sort(queue.begin(), queue.end(), Before);
  Pass pass = StartPass(options_, now, std::move(workers), running_per_owner);
  int position = 0;
  for (const QueuedJob& job : queue) {
    ++position;
    std::optional<Pending> why = Blocked(job, pass);
    if (!why && Place(job, pass)) continue;
    if (!why) why = NoRoom(job, pass);
    pass.plan.pending_kinds[job.job_id] = why->first;
    pass.plan.pending_reasons[job.job_id] =
        absl::StrFormat("queue position %d of %d: %s", position, static_cast<int>(queue.size()), why->second);
  }
  return std::move(pass.plan);
}

}  // namespace vsdm::server
