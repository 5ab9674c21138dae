#include "server/job_store.h"

#include <algorithm>

#include <sqlite3.h>

#include <deque>
#include <filesystem>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace vsdm::server {
namespace fs = std::filesystem;

namespace {

absl::Status SqlError(sqlite3* db, const std::string& what) {
  return absl::InternalError(absl::StrCat("sqlite ", what, ": ", db ? sqlite3_errmsg(db) : "no database"));
}

absl::Status Exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "?";
    sqlite3_free(err);
    return absl::InternalError(absl::StrCat("sqlite: ", msg, " in ", sql));
  }
  return absl::OkStatus();
}

// A prepared statement, finalised on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { ok_ = sqlite3_prepare_v2(db, sql, -1, &s_, nullptr) == SQLITE_OK; }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  bool ok() const { return ok_; }
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

 private:
  sqlite3_stmt* s_ = nullptr;
  bool ok_ = false;
};

}  // namespace

struct SqliteJobStore::Impl {
  sqlite3* db = nullptr;  // used by the writer thread, and by loads under `read_mu`
  absl::Mutex read_mu;

  struct Pending {
    StoreWrite w;
    absl::Status status;
    bool done = false;
  };
  absl::Mutex mu;
  std::deque<std::shared_ptr<Pending>> queue ABSL_GUARDED_BY(mu);
  bool stop ABSL_GUARDED_BY(mu) = false;
  int64_t commits ABSL_GUARDED_BY(mu) = 0;
  int64_t writes ABSL_GUARDED_BY(mu) = 0;
  std::thread writer;

  absl::Status Apply(const StoreWrite& w) {
    Stmt job(db,
             "INSERT OR REPLACE INTO jobs(job_id, request_id, state, owner, submit_nanos, body) "
             "VALUES(?, ?, ?, ?, ?, ?)");
    Stmt ev(db, "INSERT OR REPLACE INTO events(job_id, seq, body) VALUES(?, ?, ?)");
    if (!job.ok() || !ev.ok()) return SqlError(db, "prepare");
    for (const auto& j : w.jobs) {
      std::string body;
      j.job.SerializeToString(&body);
      job.Text(1, j.job.job_id());
      job.Text(2, j.request_id);
      job.Int(3, j.job.state());
      job.Text(4, j.job.owner());
      job.Int(5, j.job.submit_time().seconds() * 1'000'000'000LL + j.job.submit_time().nanos());
      job.Blob(6, body);
      if (sqlite3_step(job.get()) != SQLITE_DONE) return SqlError(db, "insert job");
      sqlite3_reset(job.get());
    }
    for (const auto& e : w.events) {
      std::string body;
      e.SerializeToString(&body);
      ev.Text(1, e.job_id());
      ev.Int(2, e.sequence());
      ev.Blob(3, body);
      if (sqlite3_step(ev.get()) != SQLITE_DONE) return SqlError(db, "insert event");
      sqlite3_reset(ev.get());
    }
    if (w.deleted.empty()) return absl::OkStatus();
    Stmt del_job(db, "DELETE FROM jobs WHERE job_id = ?");
    Stmt del_ev(db, "DELETE FROM events WHERE job_id = ?");
    if (!del_job.ok() || !del_ev.ok()) return SqlError(db, "prepare delete");
    for (const std::string& id : w.deleted) {
      del_job.Text(1, id);
      del_ev.Text(1, id);
      if (sqlite3_step(del_job.get()) != SQLITE_DONE || sqlite3_step(del_ev.get()) != SQLITE_DONE)
        return SqlError(db, "delete job");
      sqlite3_reset(del_job.get());
      sqlite3_reset(del_ev.get());
    }
    return absl::OkStatus();
  }

  void WriterLoop() {
    for (;;) {
      std::deque<std::shared_ptr<Pending>> batch;
      {
        absl::MutexLock lock(&mu);
        mu.Await(absl::Condition(
            +[](Impl* i) ABSL_EXCLUSIVE_LOCKS_REQUIRED(i->mu) { return i->stop || !i->queue.empty(); }, this));
        if (queue.empty() && stop) return;
        batch.swap(queue);
      }
      absl::Status s;
      {
        absl::MutexLock rl(&read_mu);
        s = Exec(db, "BEGIN IMMEDIATE");
        // Each caller's write is applied under a savepoint, so one bad write fails alone.
        std::vector<absl::Status> each(batch.size());
        if (s.ok()) {
          for (size_t i = 0; i < batch.size() && s.ok(); ++i) {
            s = Exec(db, "SAVEPOINT w");
            if (!s.ok()) break;
            each[i] = Apply(batch[i]->w);
            if (!each[i].ok()) {
              Exec(db, "ROLLBACK TO w").IgnoreError();
              Exec(db, "RELEASE w").IgnoreError();
            } else {
              s = Exec(db, "RELEASE w");
            }
            // Some errors (full disk, I/O) roll back the whole transaction: then nothing of this
            // batch is on disk, and continuing would autocommit later writes one by one.
            if (sqlite3_get_autocommit(db))
              s = each[i].ok() ? absl::InternalError("sqlite: transaction rolled back") : each[i];
          }
          if (s.ok()) s = Exec(db, "COMMIT");
          if (!s.ok() && !sqlite3_get_autocommit(db)) Exec(db, "ROLLBACK").IgnoreError();
        }
        for (size_t i = 0; i < batch.size(); ++i) batch[i]->status = s.ok() ? each[i] : s;
      }
      absl::MutexLock lock(&mu);
      ++commits;
      writes += static_cast<int64_t>(batch.size());
      for (auto& p : batch) p->done = true;
    }
  }
};

SqliteJobStore::SqliteJobStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SqliteJobStore::~SqliteJobStore() {
  {
    absl::MutexLock lock(&impl_->mu);
    impl_->stop = true;
  }
  if (impl_->writer.joinable()) impl_->writer.join();
  sqlite3_close(impl_->db);
}

absl::StatusOr<std::unique_ptr<SqliteJobStore>> SqliteJobStore::Open(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("data dir ", dir, ": ", ec.message()));
  auto impl = std::make_unique<Impl>();
  const std::string path = (fs::path(dir) / "vsdm.db").string();
  if (sqlite3_open_v2(path.c_str(), &impl->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK) {
    absl::Status s = SqlError(impl->db, "open " + path);
    sqlite3_close(impl->db);
    return s;
  }
  sqlite3_busy_timeout(impl->db, 5000);
  for (const char* sql : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL",
                          "CREATE TABLE IF NOT EXISTS jobs(job_id TEXT PRIMARY KEY, request_id TEXT NOT NULL, "
                          "state INTEGER NOT NULL, owner TEXT NOT NULL, submit_nanos INTEGER NOT NULL, "
                          "body BLOB NOT NULL)",
                          "CREATE INDEX IF NOT EXISTS jobs_submit ON jobs(submit_nanos, job_id)",
                          "CREATE TABLE IF NOT EXISTS events(job_id TEXT NOT NULL, seq INTEGER NOT NULL, "
                          "body BLOB NOT NULL, PRIMARY KEY(job_id, seq))"}) {
    if (absl::Status s = Exec(impl->db, sql); !s.ok()) {
      sqlite3_close(impl->db);
      return s;
    }
  }
  Impl* raw = impl.get();
  impl->writer = std::thread([raw] { raw->WriterLoop(); });
  return std::unique_ptr<SqliteJobStore>(new SqliteJobStore(std::move(impl)));
}

absl::Status SqliteJobStore::Write(StoreWrite w) {
  auto p = std::make_shared<Impl::Pending>();
  p->w = std::move(w);
  absl::MutexLock lock(&impl_->mu);
  if (impl_->stop) return absl::UnavailableError("job store is closing");
  impl_->queue.push_back(p);
  impl_->mu.Await(absl::Condition(
      +[](Impl::Pending* x) { return x->done; }, p.get()));
  return p->status;
}

absl::StatusOr<std::vector<StoredJob>> SqliteJobStore::LoadJobs() {
  absl::MutexLock rl(&impl_->read_mu);
  Stmt q(impl_->db, "SELECT request_id, body FROM jobs ORDER BY submit_nanos, job_id");
  if (!q.ok()) return SqlError(impl_->db, "prepare load");
  std::vector<StoredJob> out;
  int rc;
  while ((rc = sqlite3_step(q.get())) == SQLITE_ROW) {
    StoredJob j;
    j.request_id = q.ColumnText(0);
    if (!j.job.ParseFromString(q.ColumnBlob(1))) return absl::DataLossError("job store: unreadable job record");
    out.push_back(std::move(j));
  }
  if (rc != SQLITE_DONE) return SqlError(impl_->db, "load jobs");
  return out;
}

absl::StatusOr<std::vector<v1::JobEvent>> SqliteJobStore::LoadEvents(const std::string& job_id, int64_t after) {
  absl::MutexLock rl(&impl_->read_mu);
  Stmt q(impl_->db, "SELECT body FROM events WHERE job_id = ? AND seq > ? ORDER BY seq");
  if (!q.ok()) return SqlError(impl_->db, "prepare events");
  q.Text(1, job_id);
  q.Int(2, after);
  std::vector<v1::JobEvent> out;
  int rc;
  while ((rc = sqlite3_step(q.get())) == SQLITE_ROW) {
    v1::JobEvent e;
    if (!e.ParseFromString(q.ColumnBlob(0))) return absl::DataLossError("job store: unreadable event");
    out.push_back(std::move(e));
  }
  if (rc != SQLITE_DONE) return SqlError(impl_->db, "load events");
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
