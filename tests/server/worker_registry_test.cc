#include "server/worker_registry.h"

#include <gtest/gtest.h>

namespace vsdm::server {
namespace {

class WorkerRegistryTest : public ::testing::Test {
 protected:
  FakeClock clock_;
  WorkerRegistry reg_{clock_, absl::Seconds(10)};
};

TEST_F(WorkerRegistryTest, HeartbeatsKeepALeaseAndSilenceLosesIt) {
  ASSERT_TRUE(reg_.Register("w1", {4, 0, 0, "h1"}).ok());
  ASSERT_TRUE(reg_.Register("w2", {4, 0, 0, "h2"}).ok());
  for (int i = 0; i < 5; ++i) {
    clock_.Advance(absl::Seconds(6));
    ASSERT_TRUE(reg_.Heartbeat("w1").ok());
    if (i == 0) {
      ASSERT_TRUE(reg_.Heartbeat("w2").ok());
    }
    auto lost = reg_.ExpireLeases();
    if (i < 2) {
      EXPECT_TRUE(lost.empty()) << i;
    }
    if (i == 2) {  // w2's last heartbeat was 12 s ago
      ASSERT_EQ(lost.size(), 1u);
      EXPECT_EQ(lost[0].worker_id, "w2");
    }
  }
  EXPECT_EQ(reg_.CountInState(WorkerState::kAlive), 1);
  EXPECT_EQ(reg_.CountInState(WorkerState::kLost), 1);
  EXPECT_EQ(reg_.Heartbeat("w2").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(reg_.Heartbeat("nobody").code(), absl::StatusCode::kNotFound);
  // Registering again brings it back.
  ASSERT_TRUE(reg_.Register("w2", {4, 0, 0, "h2"}).ok());
  EXPECT_TRUE(reg_.Heartbeat("w2").ok());
  EXPECT_EQ(reg_.CountInState(WorkerState::kAlive), 2);
}

TEST_F(WorkerRegistryTest, ALostWorkerHandsBackTheRanksItHeld) {
  ASSERT_TRUE(reg_.Register("w1", {2, 0, 0, "h1"}).ok());
  ASSERT_TRUE(reg_.Register("w2", {2, 0, 0, "h2"}).ok());
  ASSERT_TRUE(reg_.Assign("w1", "job-1/1", 0, false).ok());
  ASSERT_TRUE(reg_.Assign("w1", "job-1/1", 1, false).ok());
  ASSERT_TRUE(reg_.Assign("w2", "job-1/1", 2, false).ok());
  EXPECT_EQ(reg_.Assign("w1", "job-2/1", 0, false).code(), absl::StatusCode::kFailedPrecondition);
  clock_.Advance(absl::Seconds(5));
  ASSERT_TRUE(reg_.Heartbeat("w2").ok());
  clock_.Advance(absl::Seconds(6));
  auto lost = reg_.ExpireLeases();
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_EQ(lost[0].worker_id, "w1");
  ASSERT_EQ(lost[0].ranks.size(), 2u);
  EXPECT_EQ(lost[0].ranks[0].attempt_id, "job-1/1");
  // Capacity lists alive workers only.
  auto cap = reg_.Capacity();
  ASSERT_EQ(cap.size(), 1u);
  EXPECT_EQ(cap[0].worker_id, "w2");
  EXPECT_EQ(cap[0].free_slots, 1);
  reg_.ReleaseAttempt("job-1/1");
  EXPECT_EQ(reg_.Capacity()[0].free_slots, 2);
  EXPECT_EQ(reg_.Assign("w1", "job-2/1", 0, false).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(WorkerRegistryTest, DevicesAreCountedSeparatelyFromSlots) {
  ASSERT_TRUE(reg_.Register("g", {3, 1, 0, "h"}).ok());
  ASSERT_TRUE(reg_.Assign("g", "a/1", 0, true).ok());
  EXPECT_EQ(reg_.Assign("g", "a/1", 1, true).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(reg_.Assign("g", "a/1", 1, false).ok());
  auto cap = reg_.Capacity();
  EXPECT_EQ(cap[0].free_slots, 1);
  EXPECT_EQ(cap[0].free_devices, 0);
}

TEST_F(WorkerRegistryTest, RefusesBadRegistrationsNamingTheField) {
  auto s = reg_.Register("", {1, 0, 0, "h"});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("worker_id"), std::string::npos);
  s = reg_.Register("w", {-1, 0, 0, "h"});
  EXPECT_NE(s.message().find("resources.slots"), std::string::npos);
  EXPECT_EQ(reg_.workers().size(), 0u);
}

}  // namespace
}  // namespace vsdm::server
