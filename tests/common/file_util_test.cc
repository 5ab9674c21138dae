#include "common/file_util.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace vsdm {
namespace {

TEST(FileUtilTest, AtomicWriteReplacesWholeFileAndLeavesNoTemp) {
  auto dir = std::filesystem::temp_directory_path() / ("vsdm_fu_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::string path = (dir / "f.txt").string();
  ASSERT_TRUE(AtomicWriteFile(path, "first version, long").ok());
  ASSERT_TRUE(AtomicWriteFile(path, "second").ok());
  auto got = ReadFile(path);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, "second");
  int entries = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
  std::filesystem::remove_all(dir);
}

TEST(FileUtilTest, WriteIntoMissingDirectoryFails) {
  EXPECT_FALSE(AtomicWriteFile("/nonexistent-dir-vsdm/x", "a").ok());
  EXPECT_EQ(ReadFile("/nonexistent-dir-vsdm/x").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace vsdm
