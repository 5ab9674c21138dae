#include "server/job_event_hub.h"

namespace vsdm::server {

int64_t JobEventHub::Subscribe(const std::string& job_id, int64_t after_sequence,
                               const std::vector<v1::JobEvent>& stored, EventCallback cb,
                               std::vector<v1::JobEvent>* replay) {
  int64_t last = after_sequence;
  for (const auto& e : stored) {
    if (e.sequence() <= after_sequence) continue;
    replay->push_back(e);
    last = e.sequence();
  }
  absl::MutexLock lock(&mu_);
  const int64_t id = next_sub_++;
  subs_[id] = {job_id, last, std::move(cb)};
  return id;
}

void JobEventHub::Unsubscribe(int64_t subscription) {
  absl::MutexLock lock(&mu_);
  subs_.erase(subscription);
}

void JobEventHub::Publish(const v1::JobEvent& e) {
  absl::MutexLock lock(&mu_);
  const bool stored = e.kind() != "progress";
  for (auto& [id, s] : subs_) {
    if (s.job_id != e.job_id()) continue;
    if (stored && e.sequence() <= s.last_sequence) continue;
    if (stored) s.last_sequence = e.sequence();
    outbox_.emplace_back(s.cb, e);
    ++queued_;
  }
}

bool JobEventHub::AwaitDelivered(int64_t target) {
  while (delivering_ && delivered_ < target) delivered_cv_.Wait(&mu_);
  return delivered_ >= target;
}

void JobEventHub::Flush() {
  mu_.Lock();
  const bool nested = delivering_ && deliverer_ == std::this_thread::get_id();
  if (nested || AwaitDelivered(queued_)) {  // nested: the running Flush delivers what is queued
    mu_.Unlock();
    return;
  }
  delivering_ = true;
  deliverer_ = std::this_thread::get_id();
  while (!outbox_.empty()) {
    Outbox batch;
    batch.swap(outbox_);
    mu_.Unlock();
    for (auto& [cb, e] : batch) cb(e);
    mu_.Lock();
    delivered_ += static_cast<int64_t>(batch.size());
    delivered_cv_.SignalAll();
  }
  delivering_ = false;
  deliverer_ = std::thread::id();
  delivered_cv_.SignalAll();
  mu_.Unlock();
}

int JobEventHub::subscriptions() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(subs_.size());
}

}  // namespace vsdm::server
