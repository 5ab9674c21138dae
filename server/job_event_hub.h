// Job event subscriptions for the coordinator: who watches which job, the events queued for
// them, and their delivery in publish order with no lock held. JobManager publishes every stored
// event (and progress events) here after it is durable; WatchJob streams subscribe here.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "vsdm/v1/job.pb.h"

namespace vsdm::server {

// Thread-safe. Ordering and exactly-once are per hub: events reach each subscriber in the order
// they were published; a stored event (any kind but "progress") reaches a subscriber at most once,
// replay included; progress events carry the sequence of the last stored event and are always
// delivered.
class JobEventHub {
 public:
  using EventCallback = std::function<void(const v1::JobEvent&)>;

  // Subscribes `cb` to `job_id`'s events published from now on, and appends to `replay` the
  // events of `stored` (the job's stored events, in sequence order) after `after_sequence`.
  // A stored event published later with a sequence at or below the last one replayed (or
  // `after_sequence`) is not delivered again. Returns the subscription id (> 0).
  // REQUIRES: the caller serialises Subscribe with Publish for this job (JobManager holds its
  // lock across reading `stored` and both calls), so the replay and the live events leave no gap.
  int64_t Subscribe(const std::string& job_id, int64_t after_sequence, const std::vector<v1::JobEvent>& stored,
                    EventCallback cb, std::vector<v1::JobEvent>* replay) ABSL_LOCKS_EXCLUDED(mu_);
  // No event published after this returns reaches the subscription. One that is already queued
  // may still be delivered once, by a Flush that had taken it. Unknown ids are ignored.
  void Unsubscribe(int64_t subscription) ABSL_LOCKS_EXCLUDED(mu_);

  // Queues `e` for every subscriber of its job (no callback runs here).
  void Publish(const v1::JobEvent& e) ABSL_LOCKS_EXCLUDED(mu_);

  // Runs the callbacks of everything queued, in publish order, with no lock held, one deliverer
  // at a time. When it returns, every event published before the call has been delivered, except
  // when it is called from inside a callback: then it returns at once, and the Flush running that
  // callback delivers the rest. Callbacks may call Subscribe, Unsubscribe, Publish and Flush; they
  // must not block.
  void Flush() ABSL_LOCKS_EXCLUDED(mu_);

  // Live subscriptions (for tests and metrics).
  int subscriptions() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Subscription {
    std::string job_id;
    int64_t last_sequence = 0;  // of the last stored event it was given
    EventCallback cb;
  };
  using Outbox = std::vector<std::pair<EventCallback, v1::JobEvent>>;

  // Waits until nobody else delivers or everything up to `target` is delivered; true when there
  // is nothing left for this caller to deliver.
  bool AwaitDelivered(int64_t target) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::map<int64_t, Subscription> subs_ ABSL_GUARDED_BY(mu_);
  int64_t next_sub_ ABSL_GUARDED_BY(mu_) = 1;
  Outbox outbox_ ABSL_GUARDED_BY(mu_);
  int64_t queued_ ABSL_GUARDED_BY(mu_) = 0;     // callbacks ever queued
  int64_t delivered_ ABSL_GUARDED_BY(mu_) = 0;  // callbacks ever run (or taken by the deliverer)
  bool delivering_ ABSL_GUARDED_BY(mu_) = false;
  std::thread::id deliverer_ ABSL_GUARDED_BY(mu_);  // while delivering_
  absl::CondVar delivered_cv_;                      // delivered_ grew or delivering_ ended
};

}  // namespace vsdm::server
