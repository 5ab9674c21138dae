#include "server/job_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"

namespace vsdm::server {
namespace fs = std::filesystem;

namespace {

void Log(const std::string& line) { std::cerr << "vsdm-coordinator: job store: " << line << std::endl; }

// Note [Fsync failure is fatal]: after fsync reports an error, Linux may already have dropped
// the dirty pages and marked them clean, so a retried fsync succeeds with the data gone (the
// PostgreSQL "fsyncgate" of 2018). In WAL mode it is worse than one lost commit: the next commit
// appends frames after the ones that may be missing, WAL recovery stops at the first frame whose
// checksum fails, and so it would drop later commits that were acknowledged. PostgreSQL 12 made
// an fsync failure a PANIC (data_sync_retry=off) and recovers from its WAL at restart; so do we:
// abort before anyone is acknowledged, and the restarted coordinator reads what the disk really
// holds. (A failed checkpoint fsync is safe to retry, since the checkpoint copies the WAL frames
// again, and SQLite's auto-checkpoint ignores it; what reaches us is the commit's fsync.)
void FatalOnFsyncError(int rc, sqlite3* db, const std::string& what) {
  if (rc != SQLITE_IOERR_FSYNC && rc != SQLITE_IOERR_DIR_FSYNC) return;
  const char* file = db ? sqlite3_db_filename(db, "main") : nullptr;
  Log(absl::StrCat("FATAL: fsync failed in ", what, " of ", file ? file : "the job store", " (",
                   sqlite3_errstr(rc), "): the kernel may have dropped the data, so a retry could "
                   "acknowledge writes that are lost. Aborting; a restart recovers from what is on disk "
                   "(Note [Fsync failure is fatal])"));
  std::abort();
}

// The canonical code of a SQLite result: storage faults (full, I/O, read-only, locked) are
// UNAVAILABLE (nothing written; retry), corruption is DATA_LOSS.
absl::StatusCode CodeOf(int rc) {
  switch (rc & 0xff) {
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_NOMEM:
    case SQLITE_PROTOCOL:
    case SQLITE_NOLFS:
      return absl::StatusCode::kUnavailable;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::StatusCode::kDataLoss;
    default:
      return absl::StatusCode::kInternal;
  }
}

bool IsCorruption(int rc) { return (rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB; }

// The Status of a failed call that returned `rc`.
absl::Status SqlError(sqlite3* db, int rc, const std::string& what) {
  return absl::Status(CodeOf(rc), absl::StrCat("sqlite ", what, ": ", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
}

// The same on the store's connection, where a failed fsync aborts.
absl::Status SqlStatus(sqlite3* db, int rc, const std::string& what) {
  FatalOnFsyncError(rc, db, what);
  return SqlError(db, rc, what);
}

absl::Status Exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  if (rc == SQLITE_OK) return absl::OkStatus();
  FatalOnFsyncError(rc, db, sql);
  std::string msg = err ? err : sqlite3_errstr(rc);
  sqlite3_free(err);
  return absl::Status(CodeOf(rc), absl::StrCat("sqlite: ", msg, " in ", sql));
}

// A prepared statement, finalised on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) { rc_ = sqlite3_prepare_v2(db, sql, -1, &s_, nullptr); }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  bool ok() const { return rc_ == SQLITE_OK; }
  int rc() const { return rc_; }  // of the prepare
  sqlite3_stmt* get() { return s_; }
  void Text(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void Blob(int i, const std::string& v) {
    sqlite3_bind_blob(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void Int(int i, int64_t v) { sqlite3_bind_int64(s_, i, v); }
  std::string ColumnBlob(int i) {
    const void* p = sqlite3_column_blob(s_, i);
    return std::string(static_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(s_, i)));
  }
  std::string ColumnText(int i) {
    const unsigned char* p = sqlite3_column_text(s_, i);
    return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(s_, i))) : "";
  }
  int64_t ColumnInt(int i) { return sqlite3_column_int64(s_, i); }
  // Runs a statement that returns no rows, then resets it for the next bindings.
  absl::Status Done(const std::string& what) {
    const int rc = sqlite3_step(s_);
    sqlite3_reset(s_);
    return rc == SQLITE_DONE ? absl::OkStatus() : SqlStatus(db_, rc, what);
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* s_ = nullptr;
  int rc_ = SQLITE_ERROR;
};

int64_t NowNanos() { return absl::ToUnixNanos(absl::Now()); }

google::protobuf::Timestamp TimestampOfNanos(int64_t nanos) {
  google::protobuf::Timestamp t;
  t.set_seconds(nanos / 1'000'000'000);
  t.set_nanos(static_cast<int32_t>(nanos % 1'000'000'000));
  return t;
}

// A row of jobs or events that did not decode (Note [Storage faults]).
struct BadRow {
  size_t index = 0;  // of its placeholder in the load's result
  int64_t rowid = 0;
  std::string job_id;
  std::optional<int64_t> seq;  // events only
  std::string raw;
};

const char* const kSchema[] = {
    "CREATE TABLE IF NOT EXISTS jobs(job_id TEXT PRIMARY KEY, request_id TEXT NOT NULL, "
    "state INTEGER NOT NULL, owner TEXT NOT NULL, submit_nanos INTEGER NOT NULL, body BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS jobs_submit ON jobs(submit_nanos, job_id)",
    "CREATE TABLE IF NOT EXISTS events(job_id TEXT NOT NULL, seq INTEGER NOT NULL, "
    "body BLOB NOT NULL, PRIMARY KEY(job_id, seq))",
    // Rows that did not decode, kept for a person to look at (LoadJobs, LoadEvents).
    "CREATE TABLE IF NOT EXISTS quarantine(id INTEGER PRIMARY KEY, source_table TEXT NOT NULL, "
    "source_rowid INTEGER NOT NULL, job_id TEXT NOT NULL, seq INTEGER, raw BLOB NOT NULL, "
    "reason TEXT NOT NULL, time_nanos INTEGER NOT NULL)",
    // Probe's row: the last time a probe committed.
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value BLOB NOT NULL)",
};

}  // namespace

struct SqliteJobStore::Impl {
  std::string path;       // DIR/vsdm.db
  sqlite3* db = nullptr;  // used by the writer thread, and by loads under `read_mu`
  absl::Mutex read_mu;

  struct Pending {
    StoreWrite w;
    bool probe = false;  // Probe's write: the `meta` row, not `w`
    absl::Status status;
    bool done = false;
  };
  absl::Mutex mu;
  std::deque<std::shared_ptr<Pending>> queue ABSL_GUARDED_BY(mu);
  bool stop ABSL_GUARDED_BY(mu) = false;
  int64_t commits ABSL_GUARDED_BY(mu) = 0;
  int64_t writes ABSL_GUARDED_BY(mu) = 0;
  int64_t quarantined ABSL_GUARDED_BY(mu) = 0;
  absl::Status last ABSL_GUARDED_BY(mu);  // of the last transaction (Note [Storage faults])
  std::optional<std::chrono::steady_clock::time_point> last_ok ABSL_GUARDED_BY(mu);  // its commit, if OK
  std::thread writer;

  ~Impl() { sqlite3_close(db); }

  absl::Status Open(const SqliteStoreOptions& options);
  absl::Status CheckIntegrity();
  absl::Status EnableWal();
  absl::Status Corrupt(const std::string& detail) const;

  absl::Status Apply(const StoreWrite& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(read_mu);
  absl::Status ApplyProbe() ABSL_EXCLUSIVE_LOCKS_REQUIRED(read_mu);
  absl::Status CommitBatch(const std::deque<std::shared_ptr<Pending>>& batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(read_mu);
  void WriterLoop();
  absl::Status Submit(std::shared_ptr<Pending> p);

  absl::Status ScanJobs(std::vector<StoredJob>* out, std::vector<BadRow>* bad) ABSL_EXCLUSIVE_LOCKS_REQUIRED(read_mu);
  absl::Status ScanEvents(const std::string& job_id, int64_t after, std::vector<v1::JobEvent>* out,
                          std::vector<BadRow>* bad) ABSL_EXCLUSIVE_LOCKS_REQUIRED(read_mu);
  void Quarantine(const BadRow& b, const char* table, const std::string& replacement, std::optional<int> state)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(read_mu);
};

absl::Status SqliteJobStore::Impl::Apply(const StoreWrite& w) {
  Stmt job(db,
           "INSERT OR REPLACE INTO jobs(job_id, request_id, state, owner, submit_nanos, body) "
           "VALUES(?, ?, ?, ?, ?, ?)");
  Stmt ev(db, "INSERT OR REPLACE INTO events(job_id, seq, body) VALUES(?, ?, ?)");
  if (!job.ok()) return SqlStatus(db, job.rc(), "prepare");
  if (!ev.ok()) return SqlStatus(db, ev.rc(), "prepare");
  for (const auto& j : w.jobs) {
    std::string body;
    j.job.SerializeToString(&body);
    job.Text(1, j.job.job_id());
    job.Text(2, j.request_id);
    job.Int(3, j.job.state());
    job.Text(4, j.job.owner());
    job.Int(5, j.job.submit_time().seconds() * 1'000'000'000LL + j.job.submit_time().nanos());
    job.Blob(6, body);
    VSDM_RETURN_IF_ERROR(job.Done("insert job"));
  }
  for (const auto& e : w.events) {
    std::string body;
    e.SerializeToString(&body);
    ev.Text(1, e.job_id());
    ev.Int(2, e.sequence());
    ev.Blob(3, body);
    VSDM_RETURN_IF_ERROR(ev.Done("insert event"));
  }
  if (w.deleted.empty()) return absl::OkStatus();
  Stmt del_job(db, "DELETE FROM jobs WHERE job_id = ?");
  Stmt del_ev(db, "DELETE FROM events WHERE job_id = ?");
  if (!del_job.ok()) return SqlStatus(db, del_job.rc(), "prepare delete");
  if (!del_ev.ok()) return SqlStatus(db, del_ev.rc(), "prepare delete");
  for (const std::string& id : w.deleted) {
    del_job.Text(1, id);
    del_ev.Text(1, id);
    VSDM_RETURN_IF_ERROR(del_job.Done("delete job"));
    VSDM_RETURN_IF_ERROR(del_ev.Done("delete events"));
  }
  return absl::OkStatus();
}

absl::Status SqliteJobStore::Impl::ApplyProbe() {
  Stmt q(db, "INSERT OR REPLACE INTO meta(key, value) VALUES('probe', ?)");
  if (!q.ok()) return SqlStatus(db, q.rc(), "prepare probe");
  q.Int(1, NowNanos());
  return q.Done("probe");
}

// One transaction for the batch, each caller's write under a savepoint so one bad write fails
// alone. Sets every Pending's status; returns the store's health after it: the transaction's
// status, or the first storage fault of a single write.
absl::Status SqliteJobStore::Impl::CommitBatch(const std::deque<std::shared_ptr<Pending>>& batch) {
  absl::Status s = Exec(db, "BEGIN IMMEDIATE");
  std::vector<absl::Status> each(batch.size());
  for (size_t i = 0; i < batch.size() && s.ok(); ++i) {
    s = Exec(db, "SAVEPOINT w");
    if (!s.ok()) break;
    each[i] = batch[i]->probe ? ApplyProbe() : Apply(batch[i]->w);
    if (!each[i].ok()) {
      Exec(db, "ROLLBACK TO w").IgnoreError();
      Exec(db, "RELEASE w").IgnoreError();
    } else {
      s = Exec(db, "RELEASE w");
    }
    // Some errors (full disk, I/O) roll back the whole transaction: then nothing of this
    // batch is on disk, and continuing would autocommit later writes one by one.
    if (sqlite3_get_autocommit(db))
      s = each[i].ok() ? absl::UnavailableError("sqlite: transaction rolled back") : each[i];
  }
  if (s.ok()) s = Exec(db, "COMMIT");
  if (!s.ok() && !sqlite3_get_autocommit(db)) Exec(db, "ROLLBACK").IgnoreError();
  absl::Status health = s;
  for (size_t i = 0; i < batch.size(); ++i) {
    batch[i]->status = s.ok() ? each[i] : s;
    const bool fault = absl::IsUnavailable(each[i]) || absl::IsDataLoss(each[i]);
    if (health.ok() && fault) health = each[i];
  }
  return health;
}

void SqliteJobStore::Impl::WriterLoop() {
  for (;;) {
    std::deque<std::shared_ptr<Pending>> batch;
    {
      absl::MutexLock lock(&mu);
      mu.Await(absl::Condition(
          +[](Impl* i) ABSL_EXCLUSIVE_LOCKS_REQUIRED(i->mu) { return i->stop || !i->queue.empty(); }, this));
      if (queue.empty() && stop) return;
      batch.swap(queue);
    }
    absl::Status health;
    {
      absl::MutexLock rl(&read_mu);
      health = CommitBatch(batch);
    }
    absl::MutexLock lock(&mu);
    ++commits;
    writes += std::count_if(batch.begin(), batch.end(), [](const auto& p) { return !p->probe; });
    last = health;
    if (health.ok()) last_ok = std::chrono::steady_clock::now();
    for (auto& p : batch) p->done = true;
  }
}

absl::Status SqliteJobStore::Impl::Submit(std::shared_ptr<Pending> p) {
  absl::MutexLock lock(&mu);
  if (stop) return absl::UnavailableError("job store is closing");
  queue.push_back(p);
  mu.Await(absl::Condition(+[](Pending* x) { return x->done; }, p.get()));
  return p->status;
}

absl::Status SqliteJobStore::Impl::Corrupt(const std::string& detail) const {
  return absl::DataLossError(absl::StrCat(
      "job store ", path, " is corrupt (", detail, "); refusing to start. Restore it from a backup: with the "
      "coordinator stopped, copy a file made by `vsdm-coordinator backup --data-dir DIR --out FILE` to ", path,
      " and remove ", path, "-wal and ", path, "-shm; or salvage what is readable with `sqlite3 ", path,
      " .recover`"));
}

// PRAGMA quick_check (the b-trees, not the indexes' contents: fast at open). Rows that do not
// decode are not its business: the loads quarantine them.
absl::Status SqliteJobStore::Impl::CheckIntegrity() {
  Stmt q(db, "PRAGMA quick_check(5)");
  if (!q.ok()) return IsCorruption(q.rc()) ? Corrupt(sqlite3_errmsg(db)) : SqlStatus(db, q.rc(), "quick_check");
  std::vector<std::string> lines;
  int rc;
  while ((rc = sqlite3_step(q.get())) == SQLITE_ROW) lines.push_back(q.ColumnText(0));
  if (rc != SQLITE_DONE) return IsCorruption(rc) ? Corrupt(sqlite3_errmsg(db)) : SqlStatus(db, rc, "quick_check");
  if (lines.size() == 1 && lines[0] == "ok") return absl::OkStatus();
  return Corrupt(absl::StrCat("quick_check: ", absl::StrJoin(lines, "; ")));
}

// Refuses anything but WAL: group commit (one fsync per batch), and reads (loads, a backup)
// that do not block the writer, depend on it. SQLite silently keeps the old mode when the VFS
// has no shared memory, which is also the sign of a network filesystem, where its locks (and
// ours, Note [Instance lock]) are least to be trusted.
absl::Status SqliteJobStore::Impl::EnableWal() {
  Stmt q(db, "PRAGMA journal_mode=WAL");
  if (!q.ok()) return SqlStatus(db, q.rc(), "journal_mode");
  const int rc = sqlite3_step(q.get());
  if (rc != SQLITE_ROW) return SqlStatus(db, rc, "journal_mode=WAL");
  const std::string mode = q.ColumnText(0);
  if (mode == "wal") return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "job store ", path, ": SQLite kept journal_mode '", mode, "' instead of 'wal' (its filesystem gives no "
      "shared memory, as most network filesystems); refusing to start: put --data-dir on a local filesystem"));
}

absl::Status SqliteJobStore::Impl::Open(const SqliteStoreOptions& options) {
  const int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                                 options.vfs.empty() ? nullptr : options.vfs.c_str());
  if (rc != SQLITE_OK) return SqlStatus(db, rc, "open " + path);
  sqlite3_extended_result_codes(db, 1);  // SQLITE_IOERR_FSYNC, not just SQLITE_IOERR
  sqlite3_busy_timeout(db, 5000);
  VSDM_RETURN_IF_ERROR(CheckIntegrity());
  VSDM_RETURN_IF_ERROR(EnableWal());
  VSDM_RETURN_IF_ERROR(Exec(db, "PRAGMA synchronous=FULL"));
  for (const char* sql : kSchema) VSDM_RETURN_IF_ERROR(Exec(db, sql));
  return absl::OkStatus();
}

SqliteJobStore::SqliteJobStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SqliteJobStore::~SqliteJobStore() {
  {
    absl::MutexLock lock(&impl_->mu);
    impl_->stop = true;
  }
  if (impl_->writer.joinable()) impl_->writer.join();
}

absl::StatusOr<std::unique_ptr<SqliteJobStore>> SqliteJobStore::Open(const std::string& dir,
                                                                     const SqliteStoreOptions& options) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("data dir ", dir, ": ", ec.message()));
  auto impl = std::make_unique<Impl>();
  impl->path = (fs::path(dir) / "vsdm.db").string();
  VSDM_RETURN_IF_ERROR(impl->Open(options));
  Impl* raw = impl.get();
  impl->writer = std::thread([raw] { raw->WriterLoop(); });
  return std::unique_ptr<SqliteJobStore>(new SqliteJobStore(std::move(impl)));
}

absl::Status SqliteJobStore::Write(StoreWrite w) {
  auto p = std::make_shared<Impl::Pending>();
  p->w = std::move(w);
  return impl_->Submit(std::move(p));
}

absl::Status SqliteJobStore::Probe(absl::Duration fresh) {
  {
    absl::MutexLock lock(&impl_->mu);
    if (impl_->last.ok() && impl_->last_ok &&
        std::chrono::steady_clock::now() - *impl_->last_ok < absl::ToChronoNanoseconds(fresh))
      return absl::OkStatus();
  }
  auto p = std::make_shared<Impl::Pending>();
  p->probe = true;
  impl_->Submit(std::move(p)).IgnoreError();  // its outcome is in `last`
  return last_write_status();
}

absl::Status SqliteJobStore::last_write_status() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->last;
}

// Moves a row that does not decode to the quarantine table and puts `replacement` (the
// placeholder's body) in its place, in one transaction. A failure is logged, not returned: the
// load goes on with the placeholder, and the next start tries again.
void SqliteJobStore::Impl::Quarantine(const BadRow& b, const char* table, const std::string& replacement,
                                      std::optional<int> state) {
  const std::string what =
      b.seq ? absl::StrCat("event ", *b.seq, " of job ", b.job_id) : absl::StrCat("job ", b.job_id);
  const std::string reason = absl::StrCat("the ", table, " row's body (", b.raw.size(), " bytes) does not decode");
  absl::Status s = Exec(db, "BEGIN IMMEDIATE");
  if (s.ok()) {
    Stmt ins(db, "INSERT INTO quarantine(source_table, source_rowid, job_id, seq, raw, reason, time_nanos) "
                 "VALUES(?, ?, ?, ?, ?, ?, ?)");
    Stmt upd(db, state ? "UPDATE jobs SET body = ?1, state = ?3 WHERE rowid = ?2"
                       : "UPDATE events SET body = ?1 WHERE rowid = ?2");
    ins.Text(1, table);
    ins.Int(2, b.rowid);
    ins.Text(3, b.job_id);
    if (b.seq) ins.Int(4, *b.seq);
    ins.Blob(5, b.raw);
    ins.Text(6, reason);
    ins.Int(7, NowNanos());
    upd.Blob(1, replacement);
    upd.Int(2, b.rowid);
    if (state) upd.Int(3, *state);
    s = !ins.ok() ? SqlStatus(db, ins.rc(), "prepare quarantine")
        : !upd.ok() ? SqlStatus(db, upd.rc(), "prepare quarantine")
                    : ins.Done("quarantine");
    if (s.ok()) s = upd.Done("replace quarantined row");
  }
  if (s.ok()) s = Exec(db, "COMMIT");
  if (!s.ok() && !sqlite3_get_autocommit(db)) Exec(db, "ROLLBACK").IgnoreError();
  if (s.ok()) {
    absl::MutexLock lock(&mu);
    ++quarantined;
  }
  Log(s.ok() ? absl::StrCat(what, ": ", reason, "; moved it to the quarantine table of ", path,
                            state ? " and failed the job" : " and put a \"quarantined\" event in its place")
             : absl::StrCat(what, ": ", reason, "; could not quarantine it (", s.message(),
                            "), going on without it; the next start tries again"));
}

absl::Status SqliteJobStore::Impl::ScanJobs(std::vector<StoredJob>* out, std::vector<BadRow>* bad) {
  Stmt q(db, "SELECT rowid, job_id, request_id, owner, submit_nanos, body FROM jobs ORDER BY submit_nanos, job_id");
  if (!q.ok()) return SqlStatus(db, q.rc(), "prepare load");
  int rc;
  while ((rc = sqlite3_step(q.get())) == SQLITE_ROW) {
    StoredJob j;
    j.request_id = q.ColumnText(2);
    std::string raw = q.ColumnBlob(5);
    if (!j.job.ParseFromString(raw)) {
      // The placeholder: the columns stored beside the body still say whose job it was.
      j.job.Clear();
      j.job.set_job_id(q.ColumnText(1));
      j.job.set_owner(q.ColumnText(3));
      j.job.set_state(v1::JOB_STATE_FAILED);
      *j.job.mutable_submit_time() = TimestampOfNanos(q.ColumnInt(4));
      *j.job.mutable_end_time() = TimestampOfNanos(NowNanos());
      j.job.set_message(absl::StrCat("its stored record (", raw.size(), " bytes) did not decode; moved to the "
                                     "quarantine table of ", path));
      bad->push_back({out->size(), q.ColumnInt(0), j.job.job_id(), std::nullopt, std::move(raw)});
    }
    out->push_back(std::move(j));
  }
  return rc == SQLITE_DONE ? absl::OkStatus() : SqlStatus(db, rc, "load jobs");
}

absl::Status SqliteJobStore::Impl::ScanEvents(const std::string& job_id, int64_t after,
                                              std::vector<v1::JobEvent>* out, std::vector<BadRow>* bad) {
  Stmt q(db, "SELECT rowid, seq, body FROM events WHERE job_id = ? AND seq > ? ORDER BY seq");
  if (!q.ok()) return SqlStatus(db, q.rc(), "prepare events");
  q.Text(1, job_id);
  q.Int(2, after);
  int rc;
  while ((rc = sqlite3_step(q.get())) == SQLITE_ROW) {
    v1::JobEvent e;
    std::string raw = q.ColumnBlob(2);
    if (!e.ParseFromString(raw)) {
      e.Clear();
      e.set_job_id(job_id);
      e.set_sequence(q.ColumnInt(1));
      *e.mutable_time() = TimestampOfNanos(NowNanos());
      e.set_kind("quarantined");
      e.set_message(absl::StrCat("this event's stored record (", raw.size(), " bytes) did not decode; moved to "
                                 "the quarantine table of ", path));
      bad->push_back({out->size(), q.ColumnInt(0), job_id, e.sequence(), std::move(raw)});
    }
    out->push_back(std::move(e));
  }
  return rc == SQLITE_DONE ? absl::OkStatus() : SqlStatus(db, rc, "load events");
}

absl::StatusOr<std::vector<StoredJob>> SqliteJobStore::LoadJobs() {
  absl::MutexLock rl(&impl_->read_mu);
  std::vector<StoredJob> out;
  std::vector<BadRow> bad;
  VSDM_RETURN_IF_ERROR(impl_->ScanJobs(&out, &bad));
  for (const BadRow& b : bad)  // after the scan: no writes under a running SELECT of the same table
    impl_->Quarantine(b, "jobs", out[b.index].job.SerializeAsString(), v1::JOB_STATE_FAILED);
  return out;
}

absl::StatusOr<std::vector<v1::JobEvent>> SqliteJobStore::LoadEvents(const std::string& job_id, int64_t after) {
  absl::MutexLock rl(&impl_->read_mu);
  std::vector<v1::JobEvent> out;
  std::vector<BadRow> bad;
  VSDM_RETURN_IF_ERROR(impl_->ScanEvents(job_id, after, &out, &bad));
  for (const BadRow& b : bad) impl_->Quarantine(b, "events", out[b.index].SerializeAsString(), std::nullopt);
  return out;
}

int64_t SqliteJobStore::commits() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->commits;
}
int64_t SqliteJobStore::writes() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->writes;
}
int64_t SqliteJobStore::quarantined() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->quarantined;
}

// --- DataDirLock (Note [Instance lock])

namespace {

std::string ReadHolder(int fd) {
  char buf[256];
  const ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
  std::string s(buf, n > 0 ? static_cast<size_t>(n) : 0);
  s = std::string(absl::StripTrailingAsciiWhitespace(s));
  return s.empty() ? "pid unknown" : s;
}

}  // namespace

absl::StatusOr<std::unique_ptr<DataDirLock>> DataDirLock::Acquire(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("data dir ", dir, ": ", ec.message()));
  const std::string path = (fs::path(dir) / "LOCK").string();
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot create ", path, ": ", std::strerror(errno)));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    const std::string holder = ReadHolder(fd);
    ::close(fd);
    if (err == EWOULDBLOCK)
      return absl::FailedPreconditionError(absl::StrCat("data dir ", dir, " is in use by another vsdm-coordinator (",
                                                        holder, "); refusing to start"));
    return absl::InternalError(absl::StrCat("cannot lock ", path, ": ", std::strerror(err),
                                            " (a filesystem without locks is no place for --data-dir); refusing to start"));
  }
  // Only to name the holder in another process's refusal: a failure here (a full disk) is harmless.
  const std::string text = absl::StrCat("pid ", ::getpid(), ", started ", absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone()), "\n");
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()))
    Log(absl::StrCat("could not write the pid into ", path, ": ", std::strerror(errno), " (the lock is held)"));
  return std::unique_ptr<DataDirLock>(new DataDirLock(fd));
}

DataDirLock::~DataDirLock() { ::close(fd_); }

// --- BackupJobStore

namespace {

// An open connection, closed on scope exit.
struct Db {
  sqlite3* db = nullptr;
  ~Db() { sqlite3_close(db); }
  absl::Status Open(const std::string& path, int flags) {
    const int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
    if (rc != SQLITE_OK) return SqlError(db, rc, "open " + path);
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, 5000);
    return absl::OkStatus();
  }
};

absl::Status Fsync(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return absl::InternalError(absl::StrCat("open ", path, ": ", std::strerror(errno)));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  return rc == 0 ? absl::OkStatus() : absl::InternalError(absl::StrCat("fsync ", path, ": ", std::strerror(err)));
}

// Copies every page of `src` into `dst` (sqlite3_backup_*): one step copies all, reading one
// snapshot; it is retried while the source is busy.
absl::Status CopyPages(sqlite3* src, sqlite3* dst) {
  sqlite3_backup* b = sqlite3_backup_init(dst, "main", src, "main");
  if (!b) return SqlError(dst, sqlite3_extended_errcode(dst), "backup_init");
  int rc;
  while ((rc = sqlite3_backup_step(b, -1)) == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const int finish = sqlite3_backup_finish(b);
  if (rc != SQLITE_DONE) return SqlError(nullptr, rc, "backup_step");
  return finish == SQLITE_OK ? absl::OkStatus() : SqlError(dst, finish, "backup_finish");
}

// quick_check of the copy, and what it holds.
absl::StatusOr<BackupResult> CheckCopy(sqlite3* db, const std::string& what) {
  {
    Stmt q(db, "PRAGMA quick_check(5)");
    if (!q.ok()) return SqlError(db, q.rc(), "quick_check of " + what);
    std::vector<std::string> lines;
    while (sqlite3_step(q.get()) == SQLITE_ROW) lines.push_back(q.ColumnText(0));
    if (lines.size() != 1 || lines[0] != "ok")
      return absl::DataLossError(absl::StrCat(what, " fails quick_check: ", absl::StrJoin(lines, "; ")));
  }
  Stmt q(db, "SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM events)");
  if (!q.ok()) return SqlError(db, q.rc(), "count in " + what);
  const int rc = sqlite3_step(q.get());
  if (rc != SQLITE_ROW) return SqlError(db, rc, "count in " + what);
  BackupResult r;
  r.jobs = q.ColumnInt(0);
  r.events = q.ColumnInt(1);
  return r;
}

absl::StatusOr<BackupResult> BackupToTemp(const std::string& src_path, const std::string& tmp) {
  Db src, dst;
  // Read-write without CREATE: a read-only connection could not open a WAL database whose
  // coordinator is stopped (it needs the -shm file); it writes nothing but what SQLite's own
  // recovery of a crashed WAL would.
  VSDM_RETURN_IF_ERROR(src.Open(src_path, SQLITE_OPEN_READWRITE));
  VSDM_RETURN_IF_ERROR(dst.Open(tmp, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE));
  VSDM_RETURN_IF_ERROR(CopyPages(src.db, dst.db));
  return CheckCopy(dst.db, "the copy " + tmp);
}

}  // namespace

absl::StatusOr<BackupResult> BackupJobStore(const std::string& dir, const std::string& out) {
  const std::string src_path = (fs::path(dir) / "vsdm.db").string();
  std::error_code ec;
  if (!fs::is_regular_file(src_path, ec)) return absl::NotFoundError(absl::StrCat("no job store at ", src_path));
  const std::string tmp = absl::StrCat(out, ".tmp-", ::getpid());
  for (const char* suffix : {"", "-journal", "-wal", "-shm"}) fs::remove(tmp + suffix, ec);
  absl::StatusOr<BackupResult> r = BackupToTemp(src_path, tmp);  // its connections are closed here
  absl::Status s = r.status();
  if (s.ok()) s = Fsync(tmp, O_RDONLY);
  if (s.ok() && ::rename(tmp.c_str(), out.c_str()) != 0)
    s = absl::InternalError(absl::StrCat("rename ", tmp, " to ", out, ": ", std::strerror(errno)));
  if (!s.ok()) {
    for (const char* suffix : {"", "-journal", "-wal", "-shm"}) fs::remove(tmp + suffix, ec);
    return s;
  }
  const fs::path parent = fs::path(out).parent_path();
  VSDM_RETURN_IF_ERROR(Fsync(parent.empty() ? "." : parent.string(), O_RDONLY | O_DIRECTORY));
  r->bytes = static_cast<int64_t>(fs::file_size(out, ec));
  return r;
}

struct InMemoryJobStore::State {
  absl::Mutex mu;
  std::map<std::string, StoredJob> jobs;
  std::vector<std::string> order;
  std::map<std::string, std::map<int64_t, v1::JobEvent>> events;
  bool fail = false;
};

InMemoryJobStore::InMemoryJobStore() : state_(std::make_unique<State>()) {}
InMemoryJobStore::~InMemoryJobStore() = default;

absl::Status InMemoryJobStore::Write(StoreWrite w) {
  absl::MutexLock lock(&state_->mu);
  if (state_->fail) return absl::UnavailableError("job store: injected write failure");
  for (auto& j : w.jobs) {
    const std::string id = j.job.job_id();
    if (!state_->jobs.count(id)) state_->order.push_back(id);
    state_->jobs[id] = std::move(j);
  }
  for (auto& e : w.events) state_->events[e.job_id()][e.sequence()] = std::move(e);
  for (const std::string& id : w.deleted) {
    state_->jobs.erase(id);
    state_->events.erase(id);
    state_->order.erase(std::remove(state_->order.begin(), state_->order.end(), id), state_->order.end());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<StoredJob>> InMemoryJobStore::LoadJobs() {
  absl::MutexLock lock(&state_->mu);
  std::vector<StoredJob> out;
  for (const auto& id : state_->order) out.push_back(state_->jobs[id]);
  return out;
}

absl::StatusOr<std::vector<v1::JobEvent>> InMemoryJobStore::LoadEvents(const std::string& job_id, int64_t after) {
  absl::MutexLock lock(&state_->mu);
  std::vector<v1::JobEvent> out;
  for (const auto& [seq, e] : state_->events[job_id])
    if (seq > after) out.push_back(e);
  return out;
}

void InMemoryJobStore::FailWrites(bool fail) {
  absl::MutexLock lock(&state_->mu);
  state_->fail = fail;
}

}  // namespace vsdm::server
