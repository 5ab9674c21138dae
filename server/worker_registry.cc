#include "server/worker_registry.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace vsdm::server {

absl::Status WorkerRegistry::Register(const std::string& id, const WorkerResourcesInfo& r) {
  if (id.empty()) return absl::InvalidArgumentError("worker_id: must not be empty");
  if (r.slots < 0) return absl::InvalidArgumentError(absl::StrCat("resources.slots: must be >= 0, got ", r.slots));
  if (r.devices < 0)
    return absl::InvalidArgumentError(absl::StrCat("resources.devices: must be >= 0, got ", r.devices));
  const absl::Time now = clock_.Monotonic();
  WorkerInfo& w = workers_[id];
  w.worker_id = id;
  w.resources = r;
  w.state = WorkerState::kAlive;
  w.lease_expiry = now + lease_;
  return absl::OkStatus();
}

absl::Status WorkerRegistry::Heartbeat(const std::string& id) {
  auto it = workers_.find(id);
  if (it == workers_.end()) return absl::NotFoundError(absl::StrCat("worker ", id, " is not registered"));
  if (it->second.state != WorkerState::kAlive)
    return absl::NotFoundError(absl::StrCat("worker ", id, " lost its lease; register again"));
  it->second.lease_expiry = clock_.Monotonic() + lease_;
  return absl::OkStatus();
}

void WorkerRegistry::RenewFrom(const std::string& id, absl::Time beat) {
  auto it = workers_.find(id);
  if (it == workers_.end() || it->second.state != WorkerState::kAlive) return;
  it->second.lease_expiry = std::max(it->second.lease_expiry, beat + lease_);
}

std::vector<std::string> WorkerRegistry::Expired() const {
  std::vector<std::string> out;
  const absl::Time now = clock_.Monotonic();
  for (const auto& [id, w] : workers_)
    if (w.state == WorkerState::kAlive && now >= w.lease_expiry) out.push_back(id);
  return out;
}

void WorkerRegistry::ExtendLeases(absl::Duration d) {
  for (auto& [id, w] : workers_)
    if (w.state == WorkerState::kAlive) w.lease_expiry += d;
}

std::vector<LostWorker> WorkerRegistry::ExpireLeases() {
  std::vector<LostWorker> lost;
  const absl::Time now = clock_.Monotonic();
  for (auto& [id, w] : workers_) {
    if (w.state != WorkerState::kAlive || now < w.lease_expiry) continue;
    w.state = WorkerState::kLost;
    lost.push_back({id, std::move(w.ranks)});
    w.ranks.clear();
  }
  return lost;
}

absl::Status WorkerRegistry::Assign(const std::string& worker_id, const std::string& attempt_id, int rank,
                                    bool device) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end() || it->second.state != WorkerState::kAlive)
    return absl::FailedPreconditionError(absl::StrCat("worker ", worker_id, " is not alive"));
  WorkerInfo& w = it->second;
  int used_slots = static_cast<int>(w.ranks.size()), used_devices = 0;
  for (const auto& r : w.ranks) used_devices += r.device ? 1 : 0;
  if (used_slots >= w.resources.slots || (device && used_devices >= w.resources.devices))
    return absl::FailedPreconditionError(
        absl::StrCat("worker ", worker_id, " has no free ", device ? "device" : "slot"));
  w.ranks.push_back({attempt_id, rank, device});
  return absl::OkStatus();
}

void WorkerRegistry::ReleaseAttempt(const std::string& attempt_id) {
  for (auto& [id, w] : workers_)
    w.ranks.erase(
        std::remove_if(w.ranks.begin(), w.ranks.end(), [&](const RankSlot& r) { return r.attempt_id == attempt_id && !r.draining; }),
        w.ranks.end());
}

void WorkerRegistry::DrainRank(const std::string& worker_id, const std::string& attempt_id, int rank) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return;
  for (RankSlot& r : it->second.ranks)
    if (r.attempt_id == attempt_id && r.rank == rank) r.draining = true;
}

int WorkerRegistry::ReleaseDrained(const std::string& worker_id,
                                   const std::set<std::pair<std::string, int>>& running) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return 0;
  auto& ranks = it->second.ranks;
  const size_t before = ranks.size();
  ranks.erase(std::remove_if(ranks.begin(), ranks.end(),
                             [&](const RankSlot& r) { return r.draining && !running.count({r.attempt_id, r.rank}); }),
              ranks.end());
  return static_cast<int>(before - ranks.size());
}

std::vector<WorkerCapacity> WorkerRegistry::Capacity() const {
  std::vector<WorkerCapacity> out;
  for (const auto& [id, w] : workers_) {
    if (w.state != WorkerState::kAlive) continue;
    int used_devices = 0;
    for (const auto& r : w.ranks) used_devices += r.device ? 1 : 0;
    out.push_back({id, std::max(0, w.resources.slots - static_cast<int>(w.ranks.size())),
                   std::max(0, w.resources.devices - used_devices), w.resources.slots, w.resources.devices});
  }
  return out;
}

const WorkerInfo* WorkerRegistry::Find(const std::string& id) const {
  auto it = workers_.find(id);
  return it == workers_.end() ? nullptr : &it->second;
}

int WorkerRegistry::CountInState(WorkerState s) const {
  int n = 0;
  for (const auto& [id, w] : workers_) n += w.state == s ? 1 : 0;
  return n;
}

}  // namespace vsdm::server
