// The durable record of jobs and their events. A write returns only once it is durable, so an
// acknowledged submit survives a crash of the coordinator. JobStore is the seam; SqliteJobStore
// (WAL mode, one file under --data-dir) is the real one, InMemoryJobStore the test double.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "vsdm/v1/job.pb.h"

namespace vsdm::server {

struct StoredJob {
  v1::Job job;
  std::string request_id;  // the submit's idempotency key ("" = none)
};

// One atomic write: jobs inserted or replaced (by job_id), events appended, and jobs deleted
// with their events (retention of finished jobs).
struct StoreWrite {
  std::vector<StoredJob> jobs;
  std::vector<v1::JobEvent> events;
  std::vector<std::string> deleted;
};

class JobStore {
 public:
  virtual ~JobStore() = default;
  // Atomic and durable when it returns OK. Thread-safe.
  virtual absl::Status Write(StoreWrite w) = 0;
  // Every job, in submit order. Thread-safe.
  virtual absl::StatusOr<std::vector<StoredJob>> LoadJobs() = 0;
  // One job's events with sequence > after_sequence, in order. Thread-safe.
  virtual absl::StatusOr<std::vector<v1::JobEvent>> LoadEvents(const std::string& job_id, int64_t after_sequence) = 0;
};

// Note [Group commit]: concurrent writers (one per in-flight RPC) queue their writes; one writer
// thread commits everything queued as one SQLite transaction (one fsync in WAL mode with
// synchronous=FULL) and then releases all of their callers. Nobody is acknowledged before the
// commit that holds their write, and under load many submits share one fsync.
class SqliteJobStore : public JobStore {
 public:
  // Opens (creating) DIR/vsdm.db. INTERNAL when SQLite cannot.
  static absl::StatusOr<std::unique_ptr<SqliteJobStore>> Open(const std::string& dir);
  ~SqliteJobStore() override;

  absl::Status Write(StoreWrite w) override;
  absl::StatusOr<std::vector<StoredJob>> LoadJobs() override;
  absl::StatusOr<std::vector<v1::JobEvent>> LoadEvents(const std::string& job_id, int64_t after_sequence) override;

  // Commits so far and writes they held (for the group-commit figure in bench/).
  int64_t commits() const;
  int64_t writes() const;

 private:
  struct Impl;
  explicit SqliteJobStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class InMemoryJobStore : public JobStore {
 public:
  InMemoryJobStore();
  ~InMemoryJobStore() override;
  absl::Status Write(StoreWrite w) override;
  absl::StatusOr<std::vector<StoredJob>> LoadJobs() override;
  absl::StatusOr<std::vector<v1::JobEvent>> LoadEvents(const std::string& job_id, int64_t after_sequence) override;
  // Makes the next writes fail (UNAVAILABLE) to test that nothing half-done is acknowledged.
  void FailWrites(bool fail);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace vsdm::server
