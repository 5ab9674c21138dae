// AssignmentBook: assignments are delivered until the worker reports them running (or the
// attempt ends), aborts are handed out once, and store ports go round-robin through the range,
// never to two live attempts, back to the pool when an attempt ends.
#include "server/assignment_book.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

namespace vsdm::server {
namespace {

v1::Assignment Assignment(const std::string& attempt, int rank) {
  v1::Assignment a;
  a.set_attempt_id(attempt);
  a.set_rank(rank);
  return a;
}

std::vector<std::string> Ids(const std::vector<v1::Assignment>& as) {
  std::vector<std::string> out;
  for (const auto& a : as) out.push_back(a.attempt_id() + "#" + std::to_string(a.rank()));
  return out;
}

auto None() {
  return [](const v1::Assignment&) { return false; };
}

TEST(AssignmentBookTest, AssignmentsAreSentAgainUntilTheWorkerReportsThemDone) {
  AssignmentBook book(PortRange{29500, 29599});
  book.Assign("w1", Assignment("j/1", 0));
  book.Assign("w1", Assignment("j/1", 1));
  book.Assign("w2", Assignment("j/1", 2));
  EXPECT_EQ(Ids(book.Deliverable("w1", None())), (std::vector<std::string>{"j/1#0", "j/1#1"}));
  EXPECT_EQ(Ids(book.Deliverable("w1", None())), (std::vector<std::string>{"j/1#0", "j/1#1"}))
      << "a lost heartbeat response loses nothing";
  // w1 reports rank 0 running: it is dropped for good, rank 1 is still sent.
  auto running0 = [](const v1::Assignment& a) { return a.rank() == 0; };
  EXPECT_EQ(Ids(book.Deliverable("w1", running0)), (std::vector<std::string>{"j/1#1"}));
  EXPECT_EQ(Ids(book.Deliverable("w1", None())), (std::vector<std::string>{"j/1#1"}));
  EXPECT_EQ(Ids(book.Deliverable("w2", None())), (std::vector<std::string>{"j/1#2"}));
  EXPECT_TRUE(book.Deliverable("w3", None()).empty());
}

TEST(AssignmentBookTest, EndingAnAttemptDropsItsAssignmentsEverywhere) {
  AssignmentBook book(PortRange{29500, 29599});
  book.Assign("w1", Assignment("a/1", 0));
  book.Assign("w1", Assignment("b/1", 0));
  book.Assign("w2", Assignment("a/1", 1));
  book.EndAttempt("a/1");
  EXPECT_EQ(Ids(book.Deliverable("w1", None())), (std::vector<std::string>{"b/1#0"}));
  EXPECT_TRUE(book.Deliverable("w2", None()).empty());
}

TEST(AssignmentBookTest, AbortsAreHandedOutOnceSortedAndSurviveTheAttemptEnding) {
  AssignmentBook book(PortRange{29500, 29599});
  book.Abort("w1", "b/1");
  book.Abort("w1", "a/2");
  book.Abort("w1", "b/1");  // twice: once
  book.Abort("w2", "a/2");
  book.EndAttempt("a/2");
  EXPECT_EQ(book.TakeAborts("w1"), (std::vector<std::string>{"a/2", "b/1"}));
  EXPECT_TRUE(book.TakeAborts("w1").empty());
  EXPECT_EQ(book.TakeAborts("w2"), (std::vector<std::string>{"a/2"}));
  EXPECT_TRUE(book.TakeAborts("w9").empty());
}

TEST(AssignmentBookTest, PortsGoRoundRobinAndWrapAround) {
  AssignmentBook book(PortRange{40000, 40002});
  EXPECT_EQ(book.TakePort("a/1"), 40000);
  EXPECT_EQ(book.TakePort("b/1"), 40001);
  EXPECT_EQ(book.TakePort("a/1"), 40000) << "an attempt keeps its port";
  book.EndAttempt("a/1");
  // Round-robin: the next free one after the last handed out, not the lowest free one.
  EXPECT_EQ(book.TakePort("c/1"), 40002);
  EXPECT_EQ(book.TakePort("d/1"), 40000);  // wrapped around, 40000 was released
  EXPECT_EQ(book.ports_held(), 3);
}

TEST(AssignmentBookTest, APortHeldByALiveAttemptIsNeverHandedOutAgain) {
  AssignmentBook book(PortRange{40000, 40009});
  std::set<int> live;
  int ended = 0;
  // Many starts and ends, with long-lived attempts that stay across wraparounds.
  for (int i = 0; i < 200; ++i) {
    const std::string id = "j" + std::to_string(i) + "/1";
    std::optional<int> port = book.TakePort(id);
    ASSERT_TRUE(port.has_value()) << i;
    EXPECT_TRUE(live.insert(*port).second) << "port " << *port << " handed out twice";
    EXPECT_GE(*port, 40000);
    EXPECT_LE(*port, 40009);
    if (i % 3 != 0) {  // two in three end soon; every third lives on
      book.EndAttempt(id);
      live.erase(*port);
      ++ended;
    }
    if (live.size() == 10) break;
  }
  EXPECT_EQ(book.ports_held(), static_cast<int>(live.size()));
  EXPECT_GT(ended, 10);
}

TEST(AssignmentBookTest, WhenEveryPortIsHeldNoneIsHandedOutUntilOneIsReleased) {
  AssignmentBook book(PortRange{40000, 40001});
  ASSERT_TRUE(book.TakePort("a/1"));
  ASSERT_TRUE(book.TakePort("b/1"));
  EXPECT_FALSE(book.TakePort("c/1").has_value());
  EXPECT_FALSE(book.PortOf("c/1").has_value());
  book.EndAttempt("b/1");
  EXPECT_EQ(book.TakePort("c/1"), 40001);
  EXPECT_EQ(book.PortOf("c/1"), 40001);
  EXPECT_FALSE(book.PortOf("b/1").has_value());
}

TEST(AssignmentBookTest, HoldPortReservesARecoveredAttemptsPort) {
  AssignmentBook book(PortRange{40000, 40002});
  EXPECT_TRUE(book.HoldPort("old/3", 40000));
  EXPECT_TRUE(book.HoldPort("old/3", 40000));     // idempotent
  EXPECT_FALSE(book.HoldPort("other/1", 40000));  // held
  EXPECT_FALSE(book.HoldPort("other/1", 39999));  // outside the range
  EXPECT_EQ(book.TakePort("new/1"), 40001);
  EXPECT_EQ(book.TakePort("new2/1"), 40002);
  EXPECT_FALSE(book.TakePort("new3/1").has_value());
  book.EndAttempt("old/3");
  EXPECT_EQ(book.TakePort("new3/1"), 40000);
}

TEST(PortRangeTest, ParsesLoDashHiAndRefusesAnythingElseSayingWhy) {
  auto r = ParsePortRange("29500-29999");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->lo, 29500);
  EXPECT_EQ(r->hi, 29999);
  EXPECT_EQ(r->size(), 500);
  EXPECT_EQ(ParsePortRange("7-7")->size(), 1);
  for (const char* bad : {"", "29500", "29500-", "-29999", "a-b", "29500:29999", "1-2-3"}) {
    auto s = ParsePortRange(bad).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("LO-HI"), absl::string_view::npos) << bad << ": " << s;
  }
  for (const char* bad : {"0-10", "29999-29500", "65000-65536"}) {
    auto s = ParsePortRange(bad).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("1 <= LO <= HI <= 65535"), absl::string_view::npos) << bad << ": " << s;
  }
}

}  // namespace
}  // namespace vsdm::server
