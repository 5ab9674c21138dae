// LogBook (Note [Live rank logs]): the coordinator's bounded tails of the ranks' logs.
#include "server/log_book.h"

#include <gtest/gtest.h>

namespace vsdm::server {
namespace {

v1::GetLogsResponse Read(const LogBook& book, const std::string& job, int attempt = 0,
                         std::map<int, int64_t> after = {}, std::optional<int> rank = std::nullopt) {
  v1::GetLogsResponse resp;
  book.Read(job, attempt, rank, after, &resp);
  return resp;
}

TEST(LogBookTest, ReadsEachRankFromItsCursorAndKeepsNothingTwice) {
  LogBook book;
  book.Append("j", 1, 0, 0, "a\nb\n");
  book.Append("j", 1, 2, 0, "var\n");
  book.Append("j", 1, 0, 2, "b\nc\n");  // a resend overlapping what is held: only "c\n" is new
  v1::GetLogsResponse r = Read(book, "j");
  EXPECT_EQ(r.attempt(), 1);
  ASSERT_EQ(r.chunks_size(), 2);
  EXPECT_EQ(r.chunks(0).rank(), 0);
  EXPECT_EQ(r.chunks(0).data(), "a\nb\nc\n");
  EXPECT_EQ(r.chunks(0).skipped(), 0);
  EXPECT_EQ(r.chunks(1).rank(), 2);
  EXPECT_EQ(r.chunks(1).data(), "var\n");
  // From cursors: only what is new; a rank with nothing new has no chunk.
  book.Append("j", 1, 0, 6, "d\n");
  r = Read(book, "j", 0, {{0, 6}, {2, 4}});
  ASSERT_EQ(r.chunks_size(), 1);
  EXPECT_EQ(r.chunks(0).offset(), 6);
  EXPECT_EQ(r.chunks(0).data(), "d\n");
  // One rank only.
  r = Read(book, "j", 0, {}, 2);
  ASSERT_EQ(r.chunks_size(), 1);
  EXPECT_EQ(r.chunks(0).rank(), 2);
  EXPECT_EQ(book.bytes(), 12);
  EXPECT_EQ(Read(book, "other").chunks_size(), 0);
  EXPECT_EQ(Read(book, "other").attempt(), 0);
}

TEST(LogBookTest, AGapAndATrimmedTailAreReportedAsSkippedBytes) {
  LogBookOptions o;
  o.tail_bytes = 10;
  LogBook book(o);
  book.Append("j", 1, 0, 0, "0123");
  book.Append("j", 1, 0, 100, "abcd");  // the agent's rate limit dropped 96 bytes
  v1::GetLogsResponse r = Read(book, "j", 1, {{0, 4}});
  ASSERT_EQ(r.chunks_size(), 1);
  EXPECT_EQ(r.chunks(0).offset(), 100);
  EXPECT_EQ(r.chunks(0).skipped(), 96);
  EXPECT_EQ(r.chunks(0).data(), "abcd");
  book.Append("j", 1, 0, 104, "efghij");  // 14 held > 10: the oldest 4 go
  r = Read(book, "j");
  ASSERT_EQ(r.chunks_size(), 1);
  EXPECT_EQ(r.chunks(0).offset(), 100);
  EXPECT_EQ(r.chunks(0).skipped(), 100);  // a reader from byte 0 is told of all it cannot have
  EXPECT_EQ(r.chunks(0).data(), "abcdefghij");
  EXPECT_EQ(book.bytes(), 10);
}

TEST(LogBookTest, KeepsTheNewestAttemptsAndReadsTheNewestByDefault) {
  LogBookOptions o;
  o.attempts_per_job = 2;
  LogBook book(o);
  for (int a = 1; a <= 3; ++a) book.Append("j", a, 0, 0, std::string(static_cast<size_t>(a), 'x'));
  v1::GetLogsResponse r = Read(book, "j");
  EXPECT_EQ(r.attempt(), 3);
  ASSERT_EQ(r.attempts_size(), 2);
  EXPECT_EQ(r.attempts(0), 2);
  EXPECT_EQ(r.attempts(1), 3);
  EXPECT_EQ(Read(book, "j", 2).chunks(0).data(), "xx");
  EXPECT_EQ(Read(book, "j", 1).chunks_size(), 0);  // gone
  book.Append("j", 1, 0, 0, "late");               // older than every attempt kept: dropped
  EXPECT_EQ(Read(book, "j", 1).chunks_size(), 0);
  EXPECT_EQ(Read(book, "j").attempts_size(), 2);
  EXPECT_EQ(book.bytes(), 5);
}

TEST(LogBookTest, TheTotalBoundDropsTheLeastRecentlyWrittenJobFirst) {
  LogBookOptions o;
  o.total_bytes = 10;
  LogBook book(o);
  book.Append("old", 1, 0, 0, "123456");
  book.Append("new", 1, 0, 0, "abcdef");  // 12 > 10: "old" goes
  EXPECT_EQ(Read(book, "old").chunks_size(), 0);
  EXPECT_EQ(Read(book, "new").chunks(0).data(), "abcdef");
  EXPECT_EQ(book.bytes(), 6);
}

TEST(LogBookTest, AReadReturnsAtMostReplyBytesInAllAndTheRestNext) {
  LogBookOptions o;
  o.chunk_bytes = 4;
  o.reply_bytes = 6;
  LogBook book(o);
  for (int r = 0; r < 3; ++r) book.Append("j", 1, r, 0, "abcd");
  v1::GetLogsResponse first = Read(book, "j");
  ASSERT_EQ(first.chunks_size(), 2);  // 4 + 2 bytes
  EXPECT_EQ(first.chunks(1).data(), "ab");
  v1::GetLogsResponse next = Read(book, "j", 0, {{0, 4}, {1, 2}});
  ASSERT_EQ(next.chunks_size(), 2);
  EXPECT_EQ(next.chunks(0).data(), "cd");
  EXPECT_EQ(next.chunks(1).rank(), 2);
  EXPECT_EQ(next.chunks(1).data(), "abcd");
}

TEST(LogBookTest, AReadReturnsAtMostChunkBytesPerRank) {
  LogBookOptions o;
  o.chunk_bytes = 4;
  LogBook book(o);
  book.Append("j", 1, 0, 0, "0123456789");
  v1::GetLogsResponse r = Read(book, "j");
  EXPECT_EQ(r.chunks(0).data(), "0123");
  r = Read(book, "j", 0, {{0, 8}});
  EXPECT_EQ(r.chunks(0).data(), "89");
}

}  // namespace
}  // namespace vsdm::server
