// The durable job store: SqliteJobStore across reopening and under concurrent writers (Note
// [Group commit]), its storage faults (Note [Storage faults]: a full disk, a failed fsync, a
// filesystem without WAL, rows and files that do not decode), the data dir's instance lock (Note
// [Instance lock]) and the online backup. Faults come from a SQLite VFS that wraps the default
// one (FaultVfs below) and fails writes or fsyncs on demand.
#include "server/job_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

namespace vsdm::server {
namespace {
namespace fs = std::filesystem;

// --- FaultVfs: the default VFS, with xWrite failing SQLITE_FULL (a full disk) and xSync failing
// SQLITE_IOERR_FSYNC on demand, and optionally without shared memory (iVersion 1 methods: SQLite
// then cannot use WAL, as on most network filesystems).
std::atomic<bool> g_fail_writes{false};
std::atomic<bool> g_fail_syncs{false};
std::atomic<bool> g_no_shm{false};
sqlite3_vfs* g_real = nullptr;

namespace fault {
struct FaultFile {
  sqlite3_file base;
  sqlite3_file* real;  // the default VFS's file, allocated right after this struct
};
sqlite3_file* Real(sqlite3_file* f) { return reinterpret_cast<FaultFile*>(f)->real; }
#define VSDM_FORWARD(method, ...) Real(f)->pMethods->method(Real(f), ##__VA_ARGS__)

int Close(sqlite3_file* f) { return VSDM_FORWARD(xClose); }
int Read(sqlite3_file* f, void* b, int n, sqlite3_int64 o) { return VSDM_FORWARD(xRead, b, n, o); }
int Write(sqlite3_file* f, const void* b, int n, sqlite3_int64 o) {
  return g_fail_writes ? SQLITE_FULL : VSDM_FORWARD(xWrite, b, n, o);
}
int Truncate(sqlite3_file* f, sqlite3_int64 n) { return VSDM_FORWARD(xTruncate, n); }
int Sync(sqlite3_file* f, int flags) { return g_fail_syncs ? SQLITE_IOERR_FSYNC : VSDM_FORWARD(xSync, flags); }
int FileSize(sqlite3_file* f, sqlite3_int64* n) { return VSDM_FORWARD(xFileSize, n); }
int Lock(sqlite3_file* f, int l) { return VSDM_FORWARD(xLock, l); }
int Unlock(sqlite3_file* f, int l) { return VSDM_FORWARD(xUnlock, l); }
int CheckReserved(sqlite3_file* f, int* r) { return VSDM_FORWARD(xCheckReservedLock, r); }
int FileControl(sqlite3_file* f, int op, void* arg) { return VSDM_FORWARD(xFileControl, op, arg); }
int SectorSize(sqlite3_file* f) { return VSDM_FORWARD(xSectorSize); }
int DeviceChars(sqlite3_file* f) { return VSDM_FORWARD(xDeviceCharacteristics); }
int ShmMap(sqlite3_file* f, int pg, int sz, int extend, void volatile** p) {
  return VSDM_FORWARD(xShmMap, pg, sz, extend, p);
}
int ShmLock(sqlite3_file* f, int off, int n, int flags) { return VSDM_FORWARD(xShmLock, off, n, flags); }
void ShmBarrier(sqlite3_file* f) { VSDM_FORWARD(xShmBarrier); }
int ShmUnmap(sqlite3_file* f, int del) { return VSDM_FORWARD(xShmUnmap, del); }
int Fetch(sqlite3_file* f, sqlite3_int64 off, int n, void** p) { return VSDM_FORWARD(xFetch, off, n, p); }
int Unfetch(sqlite3_file* f, sqlite3_int64 off, void* p) { return VSDM_FORWARD(xUnfetch, off, p); }
#undef VSDM_FORWARD

const sqlite3_io_methods kWithShm = {3,           Close,  Read,     Write,      Truncate,   Sync,
                                     FileSize,    Lock,   Unlock,   CheckReserved, FileControl, SectorSize,
                                     DeviceChars, ShmMap, ShmLock,  ShmBarrier, ShmUnmap,   Fetch,
                                     Unfetch};
const sqlite3_io_methods kNoShm = {1,       Close,  Read,          Write,       Truncate,   Sync,       FileSize,
                                   Lock,    Unlock, CheckReserved, FileControl, SectorSize, DeviceChars,
                                   nullptr, nullptr,       nullptr,     nullptr,    nullptr,    nullptr};

int Open(sqlite3_vfs*, const char* name, sqlite3_file* f, int flags, int* out_flags) {
  auto* ff = reinterpret_cast<FaultFile*>(f);
  ff->real = reinterpret_cast<sqlite3_file*>(ff + 1);
  const int rc = g_real->xOpen(g_real, name, ff->real, flags, out_flags);
  const bool v3 = ff->real->pMethods && ff->real->pMethods->iVersion >= 3;
  ff->base.pMethods = !ff->real->pMethods ? nullptr : (g_no_shm || !v3) ? &kNoShm : &kWithShm;
  return rc;
}

}  // namespace fault

// Registers "vsdm-fault" once (not as the default).
const char* FaultVfs() {
  static sqlite3_vfs vfs = [] {
    g_real = sqlite3_vfs_find(nullptr);
    sqlite3_vfs v = *g_real;
    v.zName = "vsdm-fault";
    v.szOsFile = static_cast<int>(sizeof(fault::FaultFile)) + g_real->szOsFile;
    v.xOpen = fault::Open;
    v.pNext = nullptr;
    return v;
  }();
  static const int registered = sqlite3_vfs_register(&vfs, 0);
  (void)registered;
  return vfs.zName;
}

StoreWrite OneJob(const std::string& id, const std::string& request_id = "") {
  StoredJob j;
  j.job.set_job_id(id);
  j.job.set_state(v1::JOB_STATE_QUEUED);
  j.job.set_owner("alice");
  j.request_id = request_id;
  v1::JobEvent e;
  e.set_job_id(id);
  e.set_sequence(1);
  e.set_kind("submitted");
  return {{j}, {e}, {}};
}

class SqliteJobStoreTest : public ::testing::Test {
 protected:
  static constexpr const char* kDirEnv = "VSDM_STORE_TEST_DIR";
  void SetUp() override {
    // A death test's child (threadsafe style: this binary run again) uses its parent's dir, which
    // the parent's TearDown removes.
    if (const char* inherited = std::getenv(kDirEnv)) {
      dir_ = inherited;
      return;
    }
    dir_ = (fs::temp_directory_path() / ("vsdm_store_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::remove_all(dir_);
  }
  void TearDown() override {
    g_fail_writes = g_fail_syncs = g_no_shm = false;
    fs::remove_all(dir_);
  }
  // Runs `sql` on DIR/vsdm.db with a plain connection (no store open).
  void RawSql(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir_ + "/vsdm.db").c_str(), &db), SQLITE_OK);
    char* err = nullptr;
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
    sqlite3_free(err);
    sqlite3_close(db);
  }
  // The first column of the first row of `sql` on DIR/vsdm.db (-1 if none).
  int64_t RawInt(const std::string& sql) {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open((dir_ + "/vsdm.db").c_str(), &db), SQLITE_OK);
    sqlite3_stmt* q = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &q, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    const int64_t v = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0) : -1;
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
  }
  std::string dir_;
};

TEST_F(SqliteJobStoreTest, WritesSurviveReopeningAndConcurrentWritersShareCommits) {
  {
    auto store = SqliteJobStore::Open(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t)
      threads.emplace_back([&, t] {
        for (int i = 0; i < 25; ++i) {
          const int n = t * 100 + i;
          ASSERT_TRUE((*store)->Write(OneJob("job-" + std::to_string(n), "r" + std::to_string(n))).ok());
        }
      });
    for (auto& th : threads) th.join();
    EXPECT_EQ((*store)->writes(), 200);
    EXPECT_LE((*store)->commits(), 200);
  }
  auto store = SqliteJobStore::Open(dir_);
  ASSERT_TRUE(store.ok());
  auto jobs = (*store)->LoadJobs();
  ASSERT_TRUE(jobs.ok());
  EXPECT_EQ(jobs->size(), 200u);
  auto ev = (*store)->LoadEvents("job-705", 0);
  ASSERT_EQ(ev->size(), 1u);
  EXPECT_EQ((*ev)[0].kind(), "submitted");
  // Retention: a deleted job goes with its events, durably.
  StoreWrite del;
  del.deleted = {"job-705", "job-0"};
  ASSERT_TRUE((*store)->Write(del).ok());
  store->reset();
  store = SqliteJobStore::Open(dir_);
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->LoadJobs()->size(), 198u);
  EXPECT_TRUE((*store)->LoadEvents("job-705", 0)->empty());
  EXPECT_EQ((*store)->LoadEvents("job-706", 0)->size(), 1u);
}

// M5: a full disk made every write fail while the store (and so health) looked fine, forever.
// Now the write is UNAVAILABLE, the store says it is not writable, and a probe notices by itself
// when space is back; nothing refused is stored, nothing acknowledged is lost.
TEST_F(SqliteJobStoreTest, FullDiskRefusesWritesAndIsNoticedUntilAProbeCommitsAgain) {
  {
    auto store = SqliteJobStore::Open(dir_, {FaultVfs()});
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->Write(OneJob("job-1")).ok());
    EXPECT_TRUE((*store)->writable());
    const int64_t commits = (*store)->commits();
    EXPECT_TRUE((*store)->Probe(absl::Hours(1)).ok());  // a commit just succeeded: no probe write
    EXPECT_EQ((*store)->commits(), commits);

    g_fail_writes = true;
    const absl::Status refused = (*store)->Write(OneJob("job-2"));
    EXPECT_TRUE(absl::IsUnavailable(refused)) << refused;
    EXPECT_FALSE((*store)->writable());
    EXPECT_TRUE(absl::IsUnavailable((*store)->last_write_status())) << (*store)->last_write_status();
    EXPECT_FALSE((*store)->Probe(absl::Hours(1)).ok());  // unhealthy: it probes whatever `fresh` says
    EXPECT_FALSE((*store)->writable());

    g_fail_writes = false;  // space is back
    EXPECT_TRUE((*store)->Probe(absl::Hours(1)).ok());
    EXPECT_TRUE((*store)->writable());
    EXPECT_TRUE((*store)->Write(OneJob("job-3")).ok());
  }
  auto store = SqliteJobStore::Open(dir_);
  ASSERT_TRUE(store.ok()) << store.status();
  auto jobs = (*store)->LoadJobs();
  ASSERT_TRUE(jobs.ok());
  ASSERT_EQ(jobs->size(), 2u);
  EXPECT_EQ((*jobs)[0].job.job_id(), "job-1");
  EXPECT_EQ((*jobs)[1].job.job_id(), "job-3");
}

// M5: an fsync error was handled like any other and later commits were acknowledged; now it
// aborts the process before anyone is acknowledged (Note [Fsync failure is fatal]).
TEST_F(SqliteJobStoreTest, FailedFsyncAbortsTheProcess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // the store has a writer thread
  ::setenv(kDirEnv, dir_.c_str(), 1);
  EXPECT_DEATH(
      {
        auto store = SqliteJobStore::Open(dir_, {FaultVfs()});
        if (!store.ok()) std::exit(3);
        g_fail_syncs = true;
        (*store)->Write(OneJob("job-1")).IgnoreError();
        std::exit(4);  // not reached: the commit's fsync fails
      },
      "FATAL: fsync failed in COMMIT");
  ::unsetenv(kDirEnv);
}

// M5: the result of PRAGMA journal_mode=WAL was not checked: without shared memory SQLite stayed
// in rollback mode silently.
TEST_F(SqliteJobStoreTest, RefusesToOpenWhenSqliteCannotUseWal) {
  g_no_shm = true;
  auto store = SqliteJobStore::Open(dir_, {FaultVfs()});
  ASSERT_FALSE(store.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(store.status())) << store.status();
  EXPECT_NE(store.status().message().find("journal_mode 'delete' instead of 'wal'"), std::string::npos)
      << store.status();
}

// M5: one row that did not decode failed Recover and the coordinator refused to start. Now the
// row goes to the quarantine table (raw bytes kept), the job stays FAILED with a message (its
// id is not handed out again) and the rest loads.
TEST_F(SqliteJobStoreTest, QuarantinesRowsThatDoNotDecode) {
  {
    auto store = SqliteJobStore::Open(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    for (const char* id : {"job-1", "job-2", "job-3"}) {
      StoreWrite w = OneJob(id, std::string("req-") + id);
      v1::JobEvent second = w.events[0];
      second.set_sequence(2);
      second.set_kind("started");
      w.events.push_back(second);
      ASSERT_TRUE((*store)->Write(w).ok());
    }
  }
  RawSql("UPDATE jobs SET body = x'0aff' WHERE job_id = 'job-2'; "
         "UPDATE events SET body = x'0aff' WHERE job_id = 'job-3' AND seq = 2");
  {
    auto store = SqliteJobStore::Open(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    auto jobs = (*store)->LoadJobs();
    ASSERT_TRUE(jobs.ok()) << jobs.status();
    ASSERT_EQ(jobs->size(), 3u);
    const StoredJob& bad = (*jobs)[1];
    EXPECT_EQ(bad.job.job_id(), "job-2");
    EXPECT_EQ(bad.job.state(), v1::JOB_STATE_FAILED);
    EXPECT_EQ(bad.job.owner(), "alice");
    EXPECT_EQ(bad.request_id, "req-job-2");
    EXPECT_NE(bad.job.message().find("did not decode"), std::string::npos) << bad.job.message();
    EXPECT_EQ((*jobs)[2].job.state(), v1::JOB_STATE_QUEUED);
    auto events = (*store)->LoadEvents("job-3", 0);
    ASSERT_TRUE(events.ok()) << events.status();
    ASSERT_EQ(events->size(), 2u);
    EXPECT_EQ((*events)[0].kind(), "submitted");
    EXPECT_EQ((*events)[1].kind(), "quarantined");
    EXPECT_EQ((*events)[1].sequence(), 2);
    EXPECT_EQ((*store)->quarantined(), 2);
  }
  // The raw bytes are kept; the placeholders replaced the rows, so the next start is quiet.
  EXPECT_EQ(RawInt("SELECT count(*) FROM quarantine WHERE raw = x'0aff'"), 2);
  EXPECT_EQ(RawInt("SELECT count(*) FROM quarantine WHERE source_table = 'jobs' AND job_id = 'job-2' "
                   "AND reason LIKE '%does not decode%'"),
            1);
  EXPECT_EQ(RawInt("SELECT seq FROM quarantine WHERE source_table = 'events' AND job_id = 'job-3'"), 2);
  auto store = SqliteJobStore::Open(dir_);
  ASSERT_TRUE(store.ok());
  auto jobs = (*store)->LoadJobs();
  ASSERT_TRUE(jobs.ok());
  EXPECT_EQ((*jobs)[1].job.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ((*store)->LoadEvents("job-3", 0)->size(), 2u);
  EXPECT_EQ((*store)->quarantined(), 0);
}

// M5: no PRAGMA quick_check; a corrupt file now refuses the start with a message that names the
// file and how to restore it.
TEST_F(SqliteJobStoreTest, RefusesACorruptDatabaseNamingTheFileAndTheBackup) {
  {
    auto store = SqliteJobStore::Open(dir_);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Write(OneJob("job-1")).ok());
  }  // the last connection's close checkpoints the WAL into vsdm.db
  {
    std::fstream f(dir_ + "/vsdm.db", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4096);  // page 2: the root of table jobs
    const std::string garbage(64, '\xAA');
    f.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
  }
  auto store = SqliteJobStore::Open(dir_);
  ASSERT_FALSE(store.ok());
  EXPECT_TRUE(absl::IsDataLoss(store.status())) << store.status();
  EXPECT_NE(store.status().message().find(dir_ + "/vsdm.db is corrupt"), std::string::npos) << store.status();
  EXPECT_NE(store.status().message().find("vsdm-coordinator backup"), std::string::npos) << store.status();
}

// The online backup: taken while the store is open, written to and its dir locked, it is one
// consistent snapshot (each write holds one job and one event, so the counts agree) that a
// store opened on a restored copy loads.
TEST_F(SqliteJobStoreTest, BackupWhileWritingRestoresToTheSameJobs) {
  auto lock = DataDirLock::Acquire(dir_);
  ASSERT_TRUE(lock.ok()) << lock.status();
  auto store = SqliteJobStore::Open(dir_);
  ASSERT_TRUE(store.ok());
  for (int i = 0; i < 50; ++i) ASSERT_TRUE((*store)->Write(OneJob("job-" + std::to_string(i))).ok());
  std::thread writer([&] {
    for (int i = 50; i < 150; ++i) ASSERT_TRUE((*store)->Write(OneJob("job-" + std::to_string(i))).ok());
  });
  const std::string out = dir_ + "/backup/copy.db";
  fs::create_directories(dir_ + "/backup");
  auto r = BackupJobStore(dir_, out);
  writer.join();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GE(r->jobs, 50);
  EXPECT_LE(r->jobs, 150);
  EXPECT_EQ(r->events, r->jobs);
  EXPECT_EQ(r->bytes, static_cast<int64_t>(fs::file_size(out)));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_ + "/backup"), fs::directory_iterator()), 1);  // no temp left

  const std::string restored = dir_ + "/restored";
  fs::create_directories(restored);
  fs::copy_file(out, restored + "/vsdm.db");
  auto copy = SqliteJobStore::Open(restored);
  ASSERT_TRUE(copy.ok()) << copy.status();
  auto jobs = (*copy)->LoadJobs();
  ASSERT_TRUE(jobs.ok());
  EXPECT_EQ(static_cast<int64_t>(jobs->size()), r->jobs);
  EXPECT_EQ((*jobs)[0].job.job_id(), "job-0");
  EXPECT_EQ((*copy)->LoadEvents("job-49", 0)->size(), 1u);

  EXPECT_TRUE(absl::IsNotFound(BackupJobStore(dir_ + "/nothing-here", out).status()));
}

// H8: nothing kept a second coordinator off a data dir. The lock is per open file, so a second
// Acquire in this process is refused just as another process would be, naming the holder.
TEST_F(SqliteJobStoreTest, DataDirLockRefusesASecondHolderUntilReleased) {
  auto first = DataDirLock::Acquire(dir_);
  ASSERT_TRUE(first.ok()) << first.status();
  struct stat st {};
  ASSERT_EQ(::stat((dir_ + "/LOCK").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto second = DataDirLock::Acquire(dir_);
  ASSERT_FALSE(second.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(second.status())) << second.status();
  const std::string want = "data dir " + dir_ + " is in use by another vsdm-coordinator (pid " +
                           std::to_string(::getpid()) + ", started ";
  EXPECT_NE(second.status().message().find(want), std::string::npos) << second.status();
  EXPECT_NE(second.status().message().find("refusing to start"), std::string::npos);
  first->reset();
  EXPECT_TRUE(DataDirLock::Acquire(dir_).ok());
}

}  // namespace
}  // namespace vsdm::server
