#include "core/npy.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace vsdm::core {
namespace {

TEST(NpyTest, RoundTripAndHeaderAlignment) {
  std::string path =
      (std::filesystem::temp_directory_path() / ("vsdm_npy_" + std::to_string(::getpid()) + ".npy")).string();
  torch::Tensor t = torch::arange(12, torch::kFloat32).reshape({4, 3});
  std::string bytes = EncodeNpy(t);
  EXPECT_EQ(bytes.size() % 16, (12 * 4) % 16);  // header padded to 64
  EXPECT_EQ((bytes.size() - 48) % 64, 0u);
  ASSERT_TRUE(WriteNpy(path, t).ok());
  auto back = ReadNpy(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(torch::equal(*back, t));
  std::filesystem::remove(path);
}

TEST(NpyTest, RejectsGarbage) {
  std::string path = (std::filesystem::temp_directory_path() / "vsdm_npy_bad.npy").string();
  FILE* f = fopen(path.c_str(), "w");
  fputs("hello", f);
  fclose(f);
  EXPECT_EQ(ReadNpy(path).status().code(), absl::StatusCode::kInvalidArgument);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace vsdm::core
