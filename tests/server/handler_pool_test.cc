// HandlerPool (Note [Handlers off the reactor]): every queued call runs on the pool's threads,
// calls past the queue bound are refused at once, and the destructor runs what is queued.
#include "server/handler_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "absl/synchronization/notification.h"

namespace vsdm::server {
namespace {

TEST(HandlerPoolTest, RunsEveryQueuedCallOnItsOwnThreads) {
  std::atomic<int> ran{0};
  std::atomic<bool> on_caller{false};
  const std::thread::id caller = std::this_thread::get_id();
  {
    HandlerPool pool(2, 1000);
    for (int i = 0; i < 100; ++i)
      ASSERT_TRUE(pool.Run([&] {
        if (std::this_thread::get_id() == caller) on_caller = true;
        ++ran;
      }));
  }  // the destructor runs what is queued, then joins
  EXPECT_EQ(ran, 100);
  EXPECT_FALSE(on_caller);
}

TEST(HandlerPoolTest, PastItsQueueBoundACallIsRefusedAtOnceAndTheOthersStillRun) {
  absl::Notification release;
  absl::Notification started;
  std::atomic<int> ran{0};
  {
    HandlerPool pool(1, 2);
    ASSERT_TRUE(pool.Run([&] {
      started.Notify();
      release.WaitForNotification();  // the one thread is stuck (a stalled disk)
      ++ran;
    }));
    started.WaitForNotification();
    EXPECT_EQ(pool.busy(), 1);
    EXPECT_TRUE(pool.Run([&] { ++ran; }));
    EXPECT_TRUE(pool.Run([&] { ++ran; }));
    EXPECT_EQ(pool.queued(), 2);
    EXPECT_FALSE(pool.Run([&] { ran += 100; })) << "the third waiting call is over the bound";
    EXPECT_EQ(pool.refused(), 1);
    release.Notify();
  }
  EXPECT_EQ(ran, 3);
}

}  // namespace
}  // namespace vsdm::server
