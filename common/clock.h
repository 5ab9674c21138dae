// Time as an injected dependency: logic asks a Clock, never the system. RealClock reads the
// system; FakeClock is advanced by hand in tests (no sleeps).
//
// Note [Two clocks]: Now() is the wall clock, for what people read (timestamps in jobs and
// events). Monotonic() never jumps: leases, backoffs, deadlines and grace periods use it only,
// so an NTP step, `date -s` or a VM's resync of the wall clock neither expires every lease at
// once nor keeps dead workers alive (review H6; etcd's lessor does the same). Its values are
// absl::Time anchored at the wall time the clock was made, comparable only with each other.
#pragma once

#include <chrono>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace vsdm {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
  virtual absl::Time Monotonic() const = 0;
};

class RealClock : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  absl::Time Monotonic() const override {
    return anchor_wall_ + absl::FromChrono(std::chrono::steady_clock::now() - anchor_steady_);
  }

 private:
  const absl::Time anchor_wall_ = absl::Now();
  const std::chrono::steady_clock::time_point anchor_steady_ = std::chrono::steady_clock::now();
};

// Thread-safe.
class FakeClock : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000)) : now_(start) {}
  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_ + wall_offset_;
  }
  absl::Time Monotonic() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  // Both clocks move on.
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }
  // Only the wall clock jumps (an NTP step, `date -s`).
  void StepWall(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    wall_offset_ += d;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  absl::Duration wall_offset_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
};

}  // namespace vsdm
