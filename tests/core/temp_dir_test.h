// A test fixture that owns a fresh temporary directory per test (removed after it, also on
// failure), with helpers to name and write files in it. Shared by the core tests that read or
// write files.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

namespace vsdm::core {

class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (std::filesystem::temp_directory_path() / "vsdm_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    dir_ = templ;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  // <dir>/<name>.
  std::string Path(const std::string& name) const { return (std::filesystem::path(dir_) / name).string(); }
  // Writes `bytes` to <dir>/<name> (creating folders on the way) and returns the path.
  std::string Write(const std::string& name, const std::string& bytes) {
    const std::string path = Path(name);
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }

  std::string dir_;
};

}  // namespace vsdm::core
