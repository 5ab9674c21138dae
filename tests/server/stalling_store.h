// A JobStore for tests whose writes block while it is stalled (a disk that stops answering under
// an fsync), over an InMemoryJobStore.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "server/job_store.h"

namespace vsdm::server {

class StallingStore : public JobStore {
 public:
  absl::Status Write(StoreWrite w) override {
    {
      absl::MutexLock lock(&mu_);
      ++blocked_;
      mu_.Await(absl::Condition(+[](bool* stalled) { return !*stalled; }, &stalled_));
      --blocked_;
    }
    return inner_.Write(std::move(w));
  }
  absl::StatusOr<std::vector<StoredJob>> LoadJobs() override { return inner_.LoadJobs(); }
  absl::StatusOr<std::vector<v1::JobEvent>> LoadEvents(const std::string& job_id, int64_t after) override {
    return inner_.LoadEvents(job_id, after);
  }
  // Writes from now on block until Stall(false).
  void Stall(bool on) {
    absl::MutexLock lock(&mu_);
    stalled_ = on;
  }
  // Waits until at least `n` writes are blocked.
  void AwaitBlockedWrites(int n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return blocked_ >= n; };
    mu_.Await(absl::Condition(&enough));
  }

 private:
  InMemoryJobStore inner_;
  absl::Mutex mu_;
  bool stalled_ ABSL_GUARDED_BY(mu_) = false;
  int blocked_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace vsdm::server
