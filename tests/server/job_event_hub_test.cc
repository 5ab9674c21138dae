// JobEventHub: replay then live events, in publish order and exactly once per stored event;
// unsubscribe; callbacks run with no lock held (they may call back into the hub); concurrent
// flushes keep the order.
#include "server/job_event_hub.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace vsdm::server {
namespace {

v1::JobEvent Event(const std::string& job, int64_t seq, const std::string& kind = "scheduled") {
  v1::JobEvent e;
  e.set_job_id(job);
  e.set_sequence(seq);
  e.set_kind(kind);
  return e;
}

// "kind:sequence" per event, for readable comparisons.
std::vector<std::string> Names(const std::vector<v1::JobEvent>& events) {
  std::vector<std::string> out;
  for (const auto& e : events) out.push_back(e.kind() + ":" + std::to_string(e.sequence()));
  return out;
}

class JobEventHubTest : public ::testing::Test {
 protected:
  // Subscribes to `job`, collecting into `got`; returns the subscription.
  int64_t Collect(const std::string& job, int64_t after, const std::vector<v1::JobEvent>& stored,
                  std::vector<v1::JobEvent>* got, std::vector<v1::JobEvent>* replay) {
    return hub_.Subscribe(
        job, after, stored, [got](const v1::JobEvent& e) { got->push_back(e); }, replay);
  }

  JobEventHub hub_;
};

TEST_F(JobEventHubTest, ReplaysStoredEventsAfterTheSequenceThenDeliversLiveOnesInPublishOrder) {
  const std::vector<v1::JobEvent> stored = {Event("j", 1, "submitted"), Event("j", 2), Event("j", 3, "requeued")};
  std::vector<v1::JobEvent> got, replay;
  Collect("j", 1, stored, &got, &replay);
  EXPECT_EQ(Names(replay), (std::vector<std::string>{"scheduled:2", "requeued:3"}));
  hub_.Publish(Event("j", 4));
  hub_.Publish(Event("j", 4, "progress"));
  hub_.Publish(Event("j", 5, "succeeded"));
  EXPECT_TRUE(got.empty()) << "Publish runs no callback";
  hub_.Flush();
  EXPECT_EQ(Names(got), (std::vector<std::string>{"scheduled:4", "progress:4", "succeeded:5"}));
}

TEST_F(JobEventHubTest, AStoredEventReachesASubscriberOnceAndProgressEventsAlways) {
  std::vector<v1::JobEvent> got, replay;
  Collect("j", 0, {Event("j", 1, "submitted"), Event("j", 2)}, &got, &replay);
  ASSERT_EQ(replay.size(), 2u);
  hub_.Publish(Event("j", 2));              // already replayed
  hub_.Publish(Event("j", 2, "progress"));  // progress carries the last stored sequence
  hub_.Publish(Event("j", 2, "progress"));
  hub_.Publish(Event("j", 3));
  hub_.Publish(Event("j", 3));  // a repeat
  hub_.Flush();
  EXPECT_EQ(Names(got), (std::vector<std::string>{"progress:2", "progress:2", "scheduled:3"}));
}

TEST_F(JobEventHubTest, OnlyTheWatchedJobsEventsArriveAndEachSubscriberGetsItsOwnCopy) {
  std::vector<v1::JobEvent> a, b, other, replay;
  Collect("j", 0, {}, &a, &replay);
  Collect("j", 0, {}, &b, &replay);
  Collect("k", 0, {}, &other, &replay);
  hub_.Publish(Event("j", 1));
  hub_.Publish(Event("k", 1));
  hub_.Publish(Event("j", 2));
  hub_.Flush();
  EXPECT_EQ(Names(a), (std::vector<std::string>{"scheduled:1", "scheduled:2"}));
  EXPECT_EQ(Names(b), Names(a));
  EXPECT_EQ(Names(other), (std::vector<std::string>{"scheduled:1"}));
  EXPECT_EQ(hub_.subscriptions(), 3);
}

TEST_F(JobEventHubTest, NothingPublishedAfterUnsubscribeArrives) {
  std::vector<v1::JobEvent> got, replay;
  const int64_t sub = Collect("j", 0, {}, &got, &replay);
  hub_.Publish(Event("j", 1));
  hub_.Flush();
  hub_.Unsubscribe(sub);
  hub_.Unsubscribe(sub);    // twice: ignored
  hub_.Unsubscribe(12345);  // unknown: ignored
  hub_.Publish(Event("j", 2));
  hub_.Flush();
  EXPECT_EQ(Names(got), (std::vector<std::string>{"scheduled:1"}));
  EXPECT_EQ(hub_.subscriptions(), 0);
}

// A callback that calls back into the hub would deadlock (absl::Mutex is not reentrant) if
// Flush held the hub's lock while running it.
TEST_F(JobEventHubTest, CallbacksRunWithNoLockHeldAndMayCallBackIntoTheHub) {
  std::vector<std::string> order;
  std::vector<v1::JobEvent> replay;
  int64_t sub = 0;
  sub = hub_.Subscribe(
      "j", 0, {},
      [&](const v1::JobEvent& e) {
        order.push_back("cb:" + std::to_string(e.sequence()));
        EXPECT_EQ(hub_.subscriptions(), 1);
        if (e.sequence() == 1) {
          hub_.Publish(Event("j", 2));  // queued behind what is being delivered
          hub_.Flush();                 // nested: returns, the running Flush delivers it
          order.push_back("nested flush returned");
        } else {
          hub_.Unsubscribe(sub);
        }
      },
      &replay);
  hub_.Publish(Event("j", 1));
  hub_.Flush();
  EXPECT_EQ(order, (std::vector<std::string>{"cb:1", "nested flush returned", "cb:2"}));
  EXPECT_EQ(hub_.subscriptions(), 0);
}

TEST_F(JobEventHubTest, ConcurrentPublishersAndFlushersDeliverEveryEventOnceInPublishOrder) {
  std::vector<int64_t> got;  // written by whichever thread delivers: one at a time
  std::vector<v1::JobEvent> replay;
  hub_.Subscribe(
      "j", 0, {}, [&](const v1::JobEvent& e) { got.push_back(e.sequence()); }, &replay);
  constexpr int kThreads = 4, kPerThread = 500;
  std::atomic<int64_t> next{1};
  std::mutex publish_mu;  // sequences are published in increasing order, as JobManager does
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        {
          std::lock_guard<std::mutex> lock(publish_mu);
          hub_.Publish(Event("j", next++));
        }
        hub_.Flush();
      }
    });
  for (auto& th : threads) th.join();
  ASSERT_EQ(got.size(), static_cast<size_t>(kThreads * kPerThread));
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], static_cast<int64_t>(i) + 1);
}

TEST_F(JobEventHubTest, WhenFlushReturnsEverythingPublishedBeforeItHasBeenDelivered) {
  std::atomic<int64_t> delivered{0};
  std::vector<v1::JobEvent> replay;
  hub_.Subscribe(
      "j", 0, {}, [&](const v1::JobEvent&) { ++delivered; }, &replay);
  std::atomic<int64_t> seq{1};
  std::vector<std::thread> threads;
  std::atomic<int> violations{0};
  std::mutex publish_mu;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i) {
        int64_t mine;
        {
          std::lock_guard<std::mutex> lock(publish_mu);
          mine = seq++;
          hub_.Publish(Event("j", mine));
        }
        hub_.Flush();
        if (delivered.load() < mine) ++violations;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(violations.load(), 0);
  EXPECT_EQ(delivered.load(), 400);
}

}  // namespace
}  // namespace vsdm::server
