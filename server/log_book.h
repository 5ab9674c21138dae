// Note [Live rank logs] (service.proto): the coordinator's bounded, in-memory tail of every
// rank's log, per job and attempt. Agents append the new bytes of their ranks' log files;
// GetLogs reads from per-rank cursors. Thread-safe (a mutex of its own: appends and reads never
// wait for JobManager's state lock or the disk).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "vsdm/v1/service.pb.h"

namespace vsdm::server {

struct LogBookOptions {
  int64_t tail_bytes = 1 << 20;  // kept per rank and attempt (the newest bytes)
  int attempts_per_job = 4;      // the newest attempts of a job with logs kept
  // Across jobs: past it, whole attempts go, the least recently written job's oldest first (so
  // one job with very many ranks can push out the others' logs: a bound on memory, not fairness).
  int64_t total_bytes = int64_t{256} << 20;
  int64_t chunk_bytes = 256 << 10;  // at most this much per rank in one read ...
  int64_t reply_bytes = 1 << 20;    // ... and this much in all (gRPC's default message limit is 4 MiB)
};

class LogBook {
 public:
  explicit LogBook(LogBookOptions options = {}) : options_(options) {}

  // `data` is the bytes at `offset` of rank `rank`'s log in attempt `attempt` of `job_id`. Bytes
  // already held (below the end of what is kept) are not kept twice; a gap after the end is
  // bytes dropped before they came here, which a reader is told of as skipped.
  void Append(const std::string& job_id, int attempt, int rank, int64_t offset, absl::string_view data)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Fills `resp`'s attempt, attempts and chunks (not state): of attempt `attempt` (0 = the newest
  // kept), each rank (or only `rank`) after its cursor in `after` (none: from byte 0), at most one
  // chunk of chunk_bytes per rank and reply_bytes in all (the rest comes with the next read),
  // only ranks with something new.
  void Read(const std::string& job_id, int attempt, std::optional<int> rank, const std::map<int, int64_t>& after,
            v1::GetLogsResponse* resp) const ABSL_LOCKS_EXCLUDED(mu_);

  int64_t bytes() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Segment {
    int64_t offset = 0;  // of data[0] in the rank's log
    std::string data;
    int64_t end() const { return offset + static_cast<int64_t>(data.size()); }
  };
  struct Tail {
    std::deque<Segment> segments;  // ascending, disjoint
    int64_t size = 0;              // bytes in segments
    int64_t end() const { return segments.empty() ? 0 : segments.back().end(); }
  };
  struct JobLogs {
    std::map<int, std::map<int, Tail>> attempts;  // attempt -> rank -> tail
    uint64_t last_write = 0;                      // of `clock_`, for the total bound
  };
  // Drops the front of `t` down to tail_bytes; returns the bytes dropped.
  int64_t Trim(Tail& t) const;
  // Drops whole attempts (oldest of the least recently written job first) until under total_bytes.
  void Evict() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static int64_t AttemptBytes(const std::map<int, Tail>& ranks);

  const LogBookOptions options_;
  mutable absl::Mutex mu_;
  std::map<std::string, JobLogs> jobs_ ABSL_GUARDED_BY(mu_);
  int64_t total_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t clock_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace vsdm::server
