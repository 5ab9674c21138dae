// The durable job store: SqliteJobStore across reopening and under concurrent writers (Note
// [Group commit]).
#include "server/job_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <thread>
#include <vector>

namespace vsdm::server {
namespace {
namespace fs = std::filesystem;

TEST(SqliteJobStoreTest, WritesSurviveReopeningAndConcurrentWritersShareCommits) {
  const std::string dir = (fs::temp_directory_path() / ("vsdm_store_" + std::to_string(::getpid()))).string();
  fs::remove_all(dir);
  {
    auto store = SqliteJobStore::Open(dir);
    ASSERT_TRUE(store.ok()) << store.status();
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t)
      threads.emplace_back([&, t] {
        for (int i = 0; i < 25; ++i) {
          StoredJob j;
          j.job.set_job_id("job-" + std::to_string(t * 100 + i));
          j.job.set_state(v1::JOB_STATE_QUEUED);
          j.request_id = "r" + std::to_string(t * 100 + i);
          v1::JobEvent e;
          e.set_job_id(j.job.job_id());
          e.set_sequence(1);
          e.set_kind("submitted");
          ASSERT_TRUE((*store)->Write({{j}, {e}, {}}).ok());
        }
      });
    for (auto& th : threads) th.join();
    EXPECT_EQ((*store)->writes(), 200);
    EXPECT_LE((*store)->commits(), 200);
  }
  auto store = SqliteJobStore::Open(dir);
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
  store = SqliteJobStore::Open(dir);
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->LoadJobs()->size(), 198u);
  EXPECT_TRUE((*store)->LoadEvents("job-705", 0)->empty());
  EXPECT_EQ((*store)->LoadEvents("job-706", 0)->size(), 1u);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace vsdm::server
