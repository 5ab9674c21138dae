#include "core/npy.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "tests/core/temp_dir_test.h"

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

// Refusals of malformed headers found by fuzz/npy_fuzzer.cc (issue 16); each crashed ReadNpy
// before. The inputs are also in fuzz/corpus/npy/.
class NpyReadTest : public TempDirTest {
 protected:
  // A format-1.0 (or 2.0) .npy file with header dict `dict` and then `data`.
  std::string WriteNpy(const std::string& name, const std::string& dict, const std::string& data, int version = 1) {
    const std::string header = dict + "\n";
    std::string bytes = std::string("\x93NUMPY", 6) + static_cast<char>(version) + '\0';
    const size_t len = header.size();
    bytes += static_cast<char>(len & 0xff);
    bytes += static_cast<char>((len >> 8) & 0xff);
    if (version != 1) bytes += std::string{static_cast<char>((len >> 16) & 0xff), static_cast<char>(len >> 24)};
    return Write(name, bytes + header + data);
  }
  static std::string Dict(const std::string& shape) {
    return "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
  }
  static std::string Message(const absl::Status& s) { return std::string(s.message()); }
};

TEST_F(NpyReadTest, ReadsAnEmptyArray) {  // was a memcpy to a null pointer (UBSan)
  auto t = ReadNpy(WriteNpy("empty.npy", Dict("(0, 1, 2, 2)"), ""));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->sizes(), (std::vector<int64_t>{0, 1, 2, 2}));
}

TEST_F(NpyReadTest, RefusesADimensionTooLongToBeANumber) {  // was std::stoll throwing out_of_range
  const std::string path = WriteNpy("long.npy", Dict("(99999999999999999999,)"), "");
  auto t = ReadNpy(path);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(t.status()), path + ": shape '99999999999999999999' is not a dimension");
  EXPECT_EQ(Message(ReadNpy(WriteNpy("neg.npy", Dict("(-3,)"), "")).status()),
            Path("neg.npy") + ": shape '-3' is not a dimension");
}

TEST_F(NpyReadTest, RefusesAShapeWhoseSizeOverflows) {  // was a signed overflow, then a huge allocation
  const std::string path = WriteNpy("overflow.npy", Dict("(4294967296, 4294967296, 1)"), std::string(16, '\0'));
  auto t = ReadNpy(path);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(t.status()), path + ": data shorter than its shape");
}

TEST_F(NpyReadTest, ReadsALongHeaderWithoutRecursing) {  // was a stack overflow in std::regex
  const std::string path =
      WriteNpy("wide.npy", Dict("(" + std::string(200000, ' ') + "2,)"), std::string("\0\0\x80\x3f\0\0\0\x40", 8), 2);
  auto t = ReadNpy(path);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE(torch::equal(*t, torch::tensor({1.0f, 2.0f})));
}

TEST_F(NpyReadTest, RefusesOtherDtypesVersionsAndTruncation) {
  EXPECT_EQ(Message(ReadNpy(WriteNpy("i8.npy", "{'descr': '<i8', 'shape': (1,), }", std::string(8, '\0'))).status()),
            Path("i8.npy") + ": only float32/float64 .npy supported (descr '<i8')");
  EXPECT_EQ(Message(ReadNpy(WriteNpy("v9.npy", Dict("(1,)"), std::string(4, '\0'), 9)).status()),
            Path("v9.npy") + ": .npy format version 9 not supported (1.0, 2.0 or 3.0)");
  EXPECT_EQ(Message(ReadNpy(WriteNpy("short.npy", Dict("(2, 2)"), std::string(12, '\0'))).status()),
            Path("short.npy") + ": data shorter than its shape");
  EXPECT_EQ(Message(ReadNpy(WriteNpy("noshape.npy", "{'descr': '<f4', 'shape': 3}", "")).status()),
            Path("noshape.npy") + ": no shape");
}

}  // namespace
}  // namespace vsdm::core
