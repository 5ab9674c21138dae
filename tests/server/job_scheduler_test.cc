#include "server/job_scheduler.h"

#include <gtest/gtest.h>

#include <cctype>
#include <set>

namespace vsdm::server {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

QueuedJob Job(const std::string& id, int trainers, int64_t priority = 0,
              absl::Duration submitted = absl::ZeroDuration()) {
  QueuedJob j;
  j.job_id = id;
  j.trainers = trainers;
  j.priority = priority;
  j.submit_time = kT0 + submitted;
  j.queued_since = kT0 + submitted;
  return j;
}

WorkerCapacity Worker(const std::string& id, int free_slots, int total_slots, int free_devices = 0,
                      int total_devices = 0) {
  return {id, free_slots, free_devices, total_slots, total_devices};
}

std::vector<std::string> Placed(const SchedulePlan& p) {
  std::vector<std::string> ids;
  for (const auto& x : p.placements) ids.push_back(x.job_id);
  return ids;
}

TEST(JobSchedulerTest, PlacesAWholeGangAcrossWorkersOrNothing) {
  JobScheduler s;
  // 2 trainers + 1 variational rank = 3 slots; 2 + 2 free: fits across both workers.
  auto plan = s.Plan({Job("a", 2)}, {Worker("w1", 2, 2), Worker("w2", 2, 2)}, {}, kT0);
  ASSERT_EQ(Placed(plan), std::vector<std::string>{"a"});
  ASSERT_EQ(plan.placements[0].ranks.size(), 3u);
  for (int r = 0; r < 3; ++r) EXPECT_EQ(plan.placements[0].ranks[r].rank, r);
  // 1 + 1 free: the gang does not fit and nothing is placed.
  plan = s.Plan({Job("a", 2)}, {Worker("w1", 1, 2), Worker("w2", 1, 2)}, {}, kT0);
  EXPECT_TRUE(plan.placements.empty());
  EXPECT_NE(plan.pending_reasons.at("a").find("needs 3 slots at once (2 trainers + 1 variational rank); 2 free of 4"),
            std::string::npos)
      << plan.pending_reasons.at("a");
}

TEST(JobSchedulerTest, CudaTrainersNeedADeviceEachAndTheVariationalRankDoesNot) {
  JobScheduler s;
  QueuedJob j = Job("g", 2);
  j.cuda = true;
  auto plan = s.Plan({j}, {Worker("cpu", 4, 4), Worker("gpu", 2, 2, 2, 2)}, {}, kT0);
  ASSERT_EQ(Placed(plan), std::vector<std::string>{"g"});
  const auto& r = plan.placements[0].ranks;
  EXPECT_EQ(r[0].worker_id, "gpu");
  EXPECT_TRUE(r[0].device);
  EXPECT_EQ(r[1].worker_id, "gpu");
  EXPECT_EQ(r[2].worker_id, "cpu");
  EXPECT_FALSE(r[2].device);
  plan = s.Plan({j}, {Worker("cpu", 4, 4), Worker("gpu", 2, 2, 1, 2)}, {}, kT0);
  EXPECT_TRUE(plan.placements.empty());
  EXPECT_NE(plan.pending_reasons.at("g").find("2 devices"), std::string::npos);
}

TEST(JobSchedulerTest, HigherPriorityFirstThenEarlierSubmit) {
  JobScheduler s;
  // Room for exactly one 2-slot job.
  auto plan = s.Plan({Job("old-low", 1, 0, absl::Seconds(1)), Job("new-high", 1, 5, absl::Seconds(9)),
                      Job("older-low", 1, 0, absl::Seconds(0))},
                     {Worker("w", 2, 2)}, {}, kT0 + absl::Seconds(10));
  EXPECT_EQ(Placed(plan), std::vector<std::string>{"new-high"});
  EXPECT_NE(plan.pending_reasons.at("older-low").find("queue position 2 of 3"), std::string::npos);
  EXPECT_NE(plan.pending_reasons.at("old-low").find("queue position 3 of 3"), std::string::npos);
  plan = s.Plan({Job("old-low", 1, 0, absl::Seconds(1)), Job("older-low", 1, 0, absl::Seconds(0))}, {Worker("w", 2, 2)},
                {}, kT0 + absl::Seconds(10));
  EXPECT_EQ(Placed(plan), std::vector<std::string>{"older-low"});
}

TEST(JobSchedulerTest, SmallJobsBackfillAroundABigJobThatDoesNotFitYet) {
  JobScheduler s(SchedulerOptions{absl::Minutes(10)});
  // big (4 slots) is first in line but only 3 are free; small (2 slots) runs now.
  auto plan = s.Plan({Job("big", 3, 0, absl::Seconds(0)), Job("small", 1, 0, absl::Seconds(1))},
                     {Worker("w1", 2, 2), Worker("w2", 1, 2)}, {}, kT0 + absl::Minutes(1));
  EXPECT_EQ(Placed(plan), std::vector<std::string>{"small"});
  EXPECT_EQ(plan.pending_reasons.count("big"), 1u);
}

TEST(JobSchedulerTest, ABigJobThatWaitedPastTheGuardHoldsTheQueueSoItCannotStarve) {
  JobScheduler s(SchedulerOptions{absl::Minutes(10)});
  const absl::Time later = kT0 + absl::Minutes(11);
  auto plan = s.Plan({Job("big", 3, 0, absl::Seconds(0)), Job("small", 1, 0, absl::Minutes(5))},
                     {Worker("w1", 2, 2), Worker("w2", 1, 2)}, {}, later);
  EXPECT_TRUE(plan.placements.empty());
  EXPECT_NE(plan.pending_reasons.at("big").find("holds the queue"), std::string::npos);
  EXPECT_NE(plan.pending_reasons.at("small").find("behind big"), std::string::npos);
  EXPECT_EQ(plan.pending_kinds.at("big"), PendingKind::kHoldingQueue);
  EXPECT_EQ(plan.pending_kinds.at("small"), PendingKind::kBehindHolder);
  // Once enough slots have drained, the big job starts first.
  plan = s.Plan({Job("big", 3, 0, absl::Seconds(0)), Job("small", 1, 0, absl::Minutes(5))},
                {Worker("w1", 2, 2), Worker("w2", 2, 2)}, {}, later);
  EXPECT_EQ(Placed(plan), std::vector<std::string>{"big"});
}

TEST(JobSchedulerTest, AJobThatCanNeverFitDoesNotHoldTheQueue) {
  JobScheduler s(SchedulerOptions{absl::Minutes(10)});
  auto plan = s.Plan({Job("huge", 7, 0, absl::Seconds(0)), Job("small", 1, 0, absl::Seconds(1))},
                     {Worker("w1", 2, 2), Worker("w2", 2, 2)}, {}, kT0 + absl::Hours(5));
  EXPECT_EQ(Placed(plan), std::vector<std::string>{"small"});
  EXPECT_NE(plan.pending_reasons.at("huge").find("can never hold it"), std::string::npos);
  EXPECT_EQ(plan.pending_kinds.at("huge"), PendingKind::kNeverFits);
}

TEST(JobSchedulerTest, BackoffAndOwnerQuotaKeepAJobQueuedWithAReason) {
  SchedulerOptions o;
  o.max_running_per_owner = 1;
  JobScheduler s(o);
  QueuedJob backoff = Job("b", 1);
  backoff.not_before = kT0 + absl::Seconds(30);
  QueuedJob alice1 = Job("a1", 1, 0, absl::Seconds(1)), alice2 = Job("a2", 1, 0, absl::Seconds(2));
  alice1.owner = alice2.owner = "alice";
  auto plan = s.Plan({backoff, alice1, alice2}, {Worker("w", 8, 8)}, {}, kT0);
  EXPECT_EQ(Placed(plan), std::vector<std::string>{"a1"});
  EXPECT_NE(plan.pending_reasons.at("b").find("restart backoff, eligible in 30s"), std::string::npos)
      << plan.pending_reasons.at("b");
  EXPECT_NE(plan.pending_reasons.at("a2").find("owner alice has 1 job running (quota 1)"), std::string::npos)
      << plan.pending_reasons.at("a2");
  EXPECT_EQ(plan.pending_kinds.at("a2"), PendingKind::kQuota);
  EXPECT_EQ(plan.pending_kinds.at("b"), PendingKind::kBackoff);
  plan = s.Plan({backoff}, {Worker("w", 8, 8)}, {}, kT0 + absl::Seconds(30));
  EXPECT_EQ(Placed(plan), std::vector<std::string>{"b"});
}

TEST(JobSchedulerTest, EveryQueuedJobGetsAReasonAndNoSlotIsGivenTwice) {
  JobScheduler s;
  std::vector<QueuedJob> q;
  for (int i = 0; i < 20; ++i) q.push_back(Job("j" + std::to_string(100 + i), 1 + i % 3, i % 2, absl::Seconds(i)));
  auto plan = s.Plan(q, {Worker("w1", 5, 5), Worker("w2", 4, 4), Worker("w3", 3, 3)}, {}, kT0 + absl::Minutes(1));
  std::map<std::string, int> used;
  for (const auto& p : plan.placements)
    for (const auto& r : p.ranks) ++used[r.worker_id];
  EXPECT_LE(used["w1"], 5);
  EXPECT_LE(used["w2"], 4);
  EXPECT_LE(used["w3"], 3);
  EXPECT_EQ(plan.placements.size() + plan.pending_reasons.size(), q.size());
  EXPECT_EQ(plan.pending_kinds.size(), plan.pending_reasons.size());
}

TEST(PendingKindTest, EveryKindIsListedOnceInOrderWithItsOwnLabel) {
  std::set<std::string> names;
  int expected = 0;
  for (PendingKind k : kAllPendingKinds) {
    EXPECT_EQ(static_cast<int>(k), expected++);  // declaration order, none skipped
    const std::string name = PendingKindName(k);
    EXPECT_NE(name, "unknown");
    EXPECT_TRUE(names.insert(name).second) << name;
    for (char c : name) EXPECT_TRUE(std::islower(static_cast<unsigned char>(c)) || c == '_') << name;
  }
  EXPECT_EQ(names, (std::set<std::string>{"backoff", "quota", "behind_holder", "no_room", "holding_queue", "never_fits",
                                          "no_store_port"}));
}

}  // namespace
}  // namespace vsdm::server
