// The threads the coordinator's gRPC handlers run on, off gRPC's own reactor threads (review M7):
// a fixed pool with a bounded queue. See Note [Handlers off the reactor].
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace vsdm::server {

// Note [Handlers off the reactor]: gRPC's callback API runs a handler on one of the few threads
// that also poll the server's sockets and answer every other call, health checks included. A
// handler that blocks there (on the manager's mutex held across a group commit, on a disk that
// stalls) takes one of them, and a handful of such calls stop the whole server until the disk
// recovers. So every unary handler and every artifact read of the coordinator runs on a
// HandlerPool instead: the reactor thread hands the call over and returns at once, and the call
// is finished from the pool thread. The queue is bounded: past max_queued waiting calls a new
// call is refused at once (RESOURCE_EXHAUSTED, which clients retry) instead of memory growing
// behind a stuck disk. Heartbeats have a pool of their own, so handlers blocked on the disk
// cannot hold one up either, and a heartbeat never waits long on that mutex (Note [Heartbeats
// beside the lock] in job_manager.h): leases stay renewed through a stall.
class HandlerPool {
 public:
  // REQUIRES: threads >= 1, max_queued >= 1.
  HandlerPool(int threads, int max_queued);
  // Runs what is already queued, then joins the threads. Run after the destructor has begun
  // is refused.
  ~HandlerPool();
  HandlerPool(const HandlerPool&) = delete;
  HandlerPool& operator=(const HandlerPool&) = delete;

  // Queues `work` for a pool thread; false (and `work` dropped unrun) when max_queued calls are
  // already waiting or the pool is stopping. Thread-safe; `work` runs with no lock of the pool held.
  bool Run(std::function<void()> work);

  // RESOURCE_EXHAUSTED saying the pool is full (what a call that Run refused ends with).
  absl::Status BusyError() const;

  // Calls waiting for a thread, and threads running one (for /metrics). Thread-safe.
  int queued() const;
  int busy() const;
  // Calls refused so far because the queue was full.
  int64_t refused() const;

 private:
  void Loop();

  const size_t max_queued_;
  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  int busy_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t refused_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace vsdm::server
