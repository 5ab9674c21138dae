#include "common/file_util.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <thread>
#include <vector>

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

// Review H3/M3/L4: a planted link at the destination is replaced, not written through; the
// file is 0640; two writers of one path never share a temp file.
TEST(FileUtilTest, AtomicWriteReplacesAPlantedSymlinkAndIsNotWorldReadable) {
  namespace fs = std::filesystem;
  auto dir = fs::temp_directory_path() / ("vsdm_fu_link_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string victim = (dir / "victim").string();
  ASSERT_TRUE(AtomicWriteFile(victim, "precious").ok());
  fs::create_symlink(victim, dir / "spec.json");
  ASSERT_TRUE(AtomicWriteFile((dir / "spec.json").string(), "{}").ok());
  EXPECT_EQ(*ReadFile(victim), "precious");
  EXPECT_FALSE(fs::is_symlink(dir / "spec.json"));
  EXPECT_EQ(*ReadFile((dir / "spec.json").string()), "{}");
  EXPECT_EQ(fs::status(dir / "spec.json").permissions() & fs::perms::others_read, fs::perms::none);
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t)
    writers.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) EXPECT_TRUE(AtomicWriteFile((dir / "shared").string(), std::string(1000, 'a' + t)).ok());
    });
  for (auto& w : writers) w.join();
  const std::string last = *ReadFile((dir / "shared").string());
  EXPECT_EQ(last.size(), 1000u);
  EXPECT_EQ(last, std::string(1000, last[0]));  // never torn
  fs::remove_all(dir);
}

TEST(FileUtilTest, WriteIntoMissingDirectoryFails) {
  EXPECT_FALSE(AtomicWriteFile("/nonexistent-dir-vsdm/x", "a").ok());
  EXPECT_EQ(ReadFile("/nonexistent-dir-vsdm/x").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace vsdm
