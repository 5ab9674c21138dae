#include "server/job_scheduler.h"

#include <algorithm>

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

}  // namespace

SchedulePlan JobScheduler::Plan(std::vector<QueuedJob> queue, std::vector<WorkerCapacity> workers,
                                const std::map<std::string, int>& running_per_owner, absl::Time now) const {
  SchedulePlan plan;
  std::sort(queue.begin(), queue.end(), Before);
  std::sort(workers.begin(), workers.end(),
            [](const WorkerCapacity& a, const WorkerCapacity& b) { return a.worker_id < b.worker_id; });
  int total_slots = 0, total_devices = 0;
  for (const auto& w : workers) {
    total_slots += w.total_slots;
    total_devices += w.total_devices;
  }
  std::map<std::string, int> running = running_per_owner;
  int free_slots = 0, free_devices = 0;
  for (const auto& w : workers) {
    free_slots += w.free_slots;
    free_devices += w.free_devices;
  }
  const QueuedJob* holder = nullptr;  // the job holding the queue (starvation guard)
  int position = 0;
  for (const QueuedJob& job : queue) {
    ++position;
    const Need need = NeedOf(job);
    auto pending = [&](const std::string& kind, const std::string& why) {
      plan.pending_kinds[job.job_id] = kind;
      plan.pending_reasons[job.job_id] = absl::StrFormat("queue position %d of %d: %s", position,
                                                         static_cast<int>(queue.size()), why);
    };
    if (now < job.not_before) {
      pending("backoff", absl::StrFormat("restart backoff, eligible in %s",
                              absl::FormatDuration(absl::Ceil(job.not_before - now, absl::Seconds(1)))));
      continue;
    }
    if (holder != nullptr) {
      pending("behind_holder", absl::StrFormat("behind %s, which has waited over %s and holds the queue until it fits",
                              holder->job_id, absl::FormatDuration(options_.reserve_after)));
      continue;
    }
    if (options_.max_running_per_owner > 0 && !job.owner.empty() &&
        running[job.owner] >= options_.max_running_per_owner) {
      pending("quota", absl::StrFormat("owner %s has %s running (quota %d)", job.owner,
                              Plural(running[job.owner], "job"), options_.max_running_per_owner));
      continue;
    }
    Placement p;
    if (need.slots <= free_slots && need.devices <= free_devices && TryPlace(job, workers, &p)) {
      plan.placements.push_back(std::move(p));
      if (!job.owner.empty()) ++running[job.owner];
      free_slots -= need.slots;
      free_devices -= need.devices;
      continue;
    }
    const bool can_ever_fit = need.slots <= total_slots && need.devices <= total_devices;
    std::string why =
        need.devices > 0
            ? absl::StrFormat("needs %s and %s at once (%d trainers + 1 variational rank); %d slots and %d "
                              "devices free of %d and %d on %s",
                              Plural(need.slots, "slot"), Plural(need.devices, "device"), job.trainers,
                              free_slots, free_devices, total_slots, total_devices,
                              Plural(static_cast<int>(workers.size()), "worker"))
            : absl::StrFormat("needs %s at once (%d trainers + 1 variational rank); %d free of %d on %s",
                              Plural(need.slots, "slot"), job.trainers, free_slots, total_slots,
                              Plural(static_cast<int>(workers.size()), "worker"));
    std::string kind = "no_room";
    if (!can_ever_fit) {
      kind = "never_fits";
      why += "; the registered workers can never hold it together";
    } else if (now - job.queued_since >= options_.reserve_after) {
      holder = &job;
      kind = "holding_queue";
      why += absl::StrFormat("; waited over %s, so it holds the queue (no job behind it starts first)",
                             absl::FormatDuration(options_.reserve_after));
    }
    pending(kind, why);
  }
  return plan;
}

}  // namespace vsdm::server
