// The durable record of jobs and their events. A write returns only once it is durable, so an
// acknowledged submit survives a crash of the coordinator. JobStore is the seam; SqliteJobStore
// (WAL mode, one file under --data-dir) is the real one, InMemoryJobStore the test double.
// DataDirLock keeps a second coordinator off the data dir; BackupJobStore copies the database
// while a coordinator runs on it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
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
  // Atomic and durable when it returns OK; when it fails nothing of `w` is stored. Thread-safe.
  virtual absl::Status Write(StoreWrite w) = 0;
  // Every job, in submit order. Thread-safe.
  virtual absl::StatusOr<std::vector<StoredJob>> LoadJobs() = 0;
  // One job's events with sequence > after_sequence, in order. Thread-safe.
  virtual absl::StatusOr<std::vector<v1::JobEvent>> LoadEvents(const std::string& job_id, int64_t after_sequence) = 0;
};

struct SqliteStoreOptions {
  std::string vfs;  // the SQLite VFS to open the file with; "" = the default (tests inject faults)
};

// Note [Group commit]: concurrent writers (one per in-flight RPC) queue their writes; one writer
// thread commits everything queued as one SQLite transaction (one fsync in WAL mode with
// synchronous=FULL) and then releases all of their callers. Nobody is acknowledged before the
// commit that holds their write, and under load many submits share one fsync.
//
// Note [Storage faults]: a transaction that fails for the storage (SQLITE_FULL, an I/O error, a
// read-only file: UNAVAILABLE; SQLITE_CORRUPT: DATA_LOSS) acknowledges nothing, and the store
// turns unwritable (last_write_status) until a later transaction commits: a caller's write or
// Probe's tiny one, so health notices recovery when nothing else writes. A failed fsync is
// different: it aborts the process (see FatalOnFsyncError in job_store.cc). A row that does not
// decode is quarantined (LoadJobs, LoadEvents) rather than failing the load.
class SqliteJobStore : public JobStore {
 public:
  // Opens (creating) DIR/vsdm.db and checks it: DATA_LOSS (naming the file and how to restore
  // it) when PRAGMA quick_check finds it corrupt or it is no database; FAILED_PRECONDITION when
  // SQLite cannot put it in WAL mode (a filesystem without shared memory, as most network
  // filesystems); UNAVAILABLE or INTERNAL when SQLite cannot open it. Takes no DataDirLock.
  static absl::StatusOr<std::unique_ptr<SqliteJobStore>> Open(const std::string& dir,
                                                              const SqliteStoreOptions& options = {});
  ~SqliteJobStore() override;

  // UNAVAILABLE (or DATA_LOSS for a corrupt file) when the transaction that held it failed.
  absl::Status Write(StoreWrite w) override;
  // A row whose body does not decode is moved to the `quarantine` table (its raw bytes, where it
  // was, why, when) and logged with its job id; in its place the job is FAILED with a message
  // saying so, which keeps its id from being handed out again.
  absl::StatusOr<std::vector<StoredJob>> LoadJobs() override;
  // An event that does not decode is quarantined the same way; in its place an event of kind
  // "quarantined" with the same sequence.
  absl::StatusOr<std::vector<v1::JobEvent>> LoadEvents(const std::string& job_id, int64_t after_sequence) override;

  // OK while the last transaction committed (or none was tried); else why it failed. Thread-safe.
  absl::Status last_write_status() const;
  bool writable() const { return last_write_status().ok(); }
  // Commits a tiny transaction (one row of table `meta`) unless one committed within `fresh`,
  // and returns last_write_status() after it. Blocks for the commit. Thread-safe.
  absl::Status Probe(absl::Duration fresh);

  // Commits so far and writes they held (for the group-commit figure in bench/).
  int64_t commits() const;
  int64_t writes() const;
  // Rows moved to the quarantine table by this process's loads.
  int64_t quarantined() const;

 private:
  struct Impl;
  explicit SqliteJobStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Note [Instance lock]: two coordinators on one data dir would hand out the same job ids, both
// schedule the same queued jobs and overwrite each other's rows (review H8). The first holds an
// exclusive flock on DIR/LOCK for its lifetime; the kernel drops it when the process dies
// (kill -9 included), so there is no stale lock to clean up, unlike a pid file alone. The file
// holds the holder's pid and start time, only to name it in the refusal. On NFS, Linux turns
// flock into a POSIX lock that the server arbitrates, so two hosts sharing the dir are refused
// too (as long as the NFS lock manager runs).
class DataDirLock {
 public:
  // Creates DIR (and DIR/LOCK, mode 0600) if needed and takes the lock. FAILED_PRECONDITION
  // "data dir DIR is in use by another vsdm-coordinator (pid N, started T); refusing to start"
  // when another open file holds it; INTERNAL when DIR or the file cannot be made.
  static absl::StatusOr<std::unique_ptr<DataDirLock>> Acquire(const std::string& dir);
  ~DataDirLock();  // releases the lock
  DataDirLock(const DataDirLock&) = delete;
  DataDirLock& operator=(const DataDirLock&) = delete;

 private:
  explicit DataDirLock(int fd) : fd_(fd) {}
  int fd_;
};

struct BackupResult {
  int64_t jobs = 0;    // rows in the copy's jobs table
  int64_t events = 0;  // rows in its events table
  int64_t bytes = 0;   // size of the copy
};

// Copies DIR/vsdm.db to `out` with SQLite's online backup API: a consistent snapshot read through
// SQLite's own locks, so it runs while a coordinator holds DIR's DataDirLock (and takes none).
// `out` is written atomically (a temp file beside it, fsync, rename, directory fsync) and only
// after PRAGMA quick_check passed on the copy. NOT_FOUND when DIR has no database; DATA_LOSS when
// the copy fails its check; UNAVAILABLE or INTERNAL for SQLite and file errors.
absl::StatusOr<BackupResult> BackupJobStore(const std::string& dir, const std::string& out);

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
