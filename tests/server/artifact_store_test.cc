// The coordinator's artifact store: the checkpoints that carry a job between workers with no
// shared disk (paging, "nothing newer", pruning to the newest two) and its path checks.
#include "server/artifact_store.h"

#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "common/file_util.h"
#include "common/train_protocol.h"

namespace vsdm::server {
namespace {
namespace fs = std::filesystem;
namespace tp = train_protocol;

class ArtifactStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = (fs::temp_directory_path() / ("vsdm_artifact_store_test_" + std::to_string(::getpid()))).string();
    fs::remove_all(root_);
  }
  void TearDown() override { fs::remove_all(root_); }
  // Uploads `data` as checkpoint `round` of job j1 in chunks of 3 bytes, as an agent would.
  void Upload(int64_t round, const std::string& data) {
    const std::string path = std::string(tp::kCheckpointDir) + "/" + tp::CheckpointFileName(round);
    for (size_t off = 0; off < data.size() || off == 0; off += 3) {
      ASSERT_TRUE(store_.AppendChunk("j1", path, static_cast<int64_t>(off), data.substr(off, 3), off + 3 >= data.size())
                      .ok());
      if (data.empty()) break;
    }
  }
  std::string root_;
  ArtifactStore store_{(fs::temp_directory_path() / ("vsdm_artifact_store_test_" + std::to_string(::getpid()))).string()};
};

TEST_F(ArtifactStoreTest, ServesTheNewestCheckpointInPagesAndNothingWhenTheCallerHasItsRound) {
  auto none = store_.ReadCheckpoint("j1", 0, 0, 0, 4);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->round(), 0);
  Upload(10, "ten-bytes!");
  Upload(30, "thirty, eleven");
  auto first = store_.ReadCheckpoint("j1", 0, 0, 0, 4);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->round(), 30);
  EXPECT_EQ(first->size(), 14);
  EXPECT_EQ(first->data(), "thir");
  auto last = store_.ReadCheckpoint("j1", 0, 30, 12, 4);
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->data(), "en");
  EXPECT_EQ(last->offset(), 12);
  EXPECT_EQ(store_.ReadCheckpoint("j1", 30, 0, 0, 4)->round(), 0);  // the caller has round 30
  EXPECT_EQ(store_.ReadCheckpoint("j1", 99, 0, 0, 4)->round(), 0);
  EXPECT_EQ(store_.ReadCheckpoint("j1", 0, 30, 15, 4).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_.ReadCheckpoint("j1", 0, 20, 0, 4).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_.ReadCheckpoint("..", 0, 0, 0, 4).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ArtifactStoreTest, PruningKeepsTheNewestTwoAndDropsStalePartialUploads) {
  Upload(10, "a");
  Upload(20, "b");
  Upload(30, "c");
  const fs::path dir = fs::path(root_) / "j1" / tp::kCheckpointDir;
  ASSERT_TRUE(AtomicWriteFile((dir / (tp::CheckpointFileName(5) + ".part")).string(), "half").ok());
  ASSERT_TRUE(AtomicWriteFile((dir / "notes.txt").string(), "kept").ok());
  store_.PruneCheckpoints("j1", 2);
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(dir)) left.push_back(e.path().filename().string());
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{tp::CheckpointFileName(20), tp::CheckpointFileName(30), "notes.txt"}));
  store_.PruneCheckpoints("no-such-job", 2);  // nothing to do, no error
}

}  // namespace
}  // namespace vsdm::server
