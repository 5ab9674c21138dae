// NextLogChunk (Note [Live rank logs]): what of a rank's log goes up, within its budget.
#include "worker/agent/log_forward.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

namespace vsdm::worker {
namespace {

namespace fs = std::filesystem;

class LogForwardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (fs::temp_directory_path() / ("vsdm_log_forward_" + std::to_string(::getpid()))).string();
    fs::remove(path_);
  }
  void TearDown() override { fs::remove(path_); }
  void Append(const std::string& s) { std::ofstream(path_, std::ios::app) << s; }
  // Takes every chunk there is now, as the agent would; their bytes in order.
  std::string Drain(LogCursor& c, absl::Time now, bool final = false) {
    std::string out;
    while (auto req = NextLogChunk(path_, c, now, final, o_)) {
      out += req->data();
      CommitLogChunk(c, *req);
    }
    return out;
  }
  std::string path_;
  LogForwardOptions o_;
  absl::Time t0_ = absl::FromUnixSeconds(1000);
};

TEST_F(LogForwardTest, SendsWhatIsNewInChunksFromTheCursor) {
  o_.chunk_bytes = 4;
  LogCursor c;
  EXPECT_FALSE(NextLogChunk(path_, c, t0_, false, o_));  // no file yet
  Append("0123456789");
  auto first = NextLogChunk(path_, c, t0_, false, o_);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->offset(), 0);
  EXPECT_EQ(first->data(), "0123");
  // Not committed (the call failed): the same bytes again.
  EXPECT_EQ(NextLogChunk(path_, c, t0_, false, o_)->data(), "0123");
  EXPECT_EQ(Drain(c, t0_), "0123456789");
  EXPECT_EQ(c.sent, 10);
  Append("ab");
  EXPECT_EQ(Drain(c, t0_), "ab");
}

TEST_F(LogForwardTest, AFloodIsCutToTheBudgetKeepingTheNewestBytes) {
  o_.chunk_bytes = 10;
  o_.rate = 10;  // bytes a second
  o_.burst = 20;
  LogCursor c;
  Append(std::string(100, 'o') + std::string(20, 'n'));
  EXPECT_EQ(Drain(c, t0_), std::string(20, 'n'));  // the burst: the newest 20 bytes
  EXPECT_EQ(c.sent, 120);
  Append(std::string(5, 'x'));
  EXPECT_EQ(Drain(c, t0_), "");                          // budget spent
  EXPECT_EQ(Drain(c, t0_ + absl::Seconds(1)), "xxxxx");  // 10 more a second
  // When the rank has exited, the rest goes past the budget (up to final_bytes).
  o_.final_bytes = 8;
  Append(std::string(30, 'e') + "last\n");
  const std::string rest = Drain(c, t0_ + absl::Seconds(1), /*final=*/true);
  EXPECT_EQ(rest, "eeelast\n");
}

TEST_F(LogForwardTest, ARefusedRankIsDoneAndAShrunkFileStartsOver) {
  LogCursor c;
  Append("abc");
  EXPECT_EQ(Drain(c, t0_), "abc");
  fs::remove(path_);
  Append("x");  // replaced by a shorter file
  EXPECT_EQ(Drain(c, t0_), "x");
  c.done = true;
  Append("y");
  EXPECT_FALSE(NextLogChunk(path_, c, t0_, false, o_));
}

}  // namespace
}  // namespace vsdm::worker
