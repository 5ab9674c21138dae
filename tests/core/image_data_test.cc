#include "core/image_data.h"

#include <png.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/core/temp_dir_test.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace vsdm::core {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

void PutBe32(std::string* out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out->push_back(static_cast<char>((v >> s) & 0xff));
}

// IDX bytes: magic, the dims, then `payload`.
std::string Idx(uint32_t magic, const std::vector<uint32_t>& dims, const std::string& payload) {
  std::string out;
  PutBe32(&out, magic);
  for (uint32_t d : dims) PutBe32(&out, d);
  return out + payload;
}

// `n` bytes 0, 1, 2, ... (mod 256).
std::string Ramp(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i % 256);
  return s;
}

// A .npy file: format 1.0 with the given descr/shape, then `data`.
std::string Npy(const std::string& descr, const std::string& shape, const std::string& data, bool fortran = false) {
  std::string header = absl::StrCat("{'descr': '", descr, "', 'fortran_order': ", fortran ? "True" : "False",
                                    ", 'shape': ", shape, ", }");
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::string out("\x93NUMPY\x01\x00", 8);
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>(header.size() >> 8));
  return out + header + data;
}

template <typename T>
std::string Raw(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

class ImageDataTest : public TempDirTest {
 protected:
  std::string WriteGz(const std::string& name, const std::string& bytes) {
    const std::string path = Path(name);
    gzFile f = gzopen(path.c_str(), "wb");
    EXPECT_NE(f, nullptr);
    EXPECT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
    gzclose(f);
    return path;
  }
  // A PNG of w x h, grey (channels 1) or RGB (3), pixel bytes from `seed` upward.
  void WritePng(const std::string& name, int w, int h, int channels, int seed) {
    const std::string path = Path(name);
    fs::create_directories(fs::path(path).parent_path());
    std::vector<uint8_t> px(static_cast<size_t>(w) * h * channels);
    for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>((seed + i) % 256);
    png_image img;
    std::memset(&img, 0, sizeof(img));
    img.version = PNG_IMAGE_VERSION;
    img.width = w;
    img.height = h;
    img.format = channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    ASSERT_TRUE(png_image_write_to_file(&img, path.c_str(), 0, px.data(), 0, nullptr)) << img.message;
  }
};

std::string Message(const absl::Status& s) { return std::string(s.message()); }

// ---- IDX ----------------------------------------------------------------------------------------

TEST_F(ImageDataTest, ReadsGzipIdxWithSiblingLabels) {
  const std::string images = WriteGz("train-images-idx3-ubyte.gz", Idx(0x803, {3, 2, 4}, Ramp(24)));
  WriteGz("train-labels-idx1-ubyte.gz", Idx(0x801, {3}, std::string("\x07\x00\x02", 3)));
  absl::StatusOr<ImageSet> set = ReadImages(images);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->images.sizes(), (std::vector<int64_t>{3, 1, 2, 4}));
  EXPECT_EQ(set->images.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(set->images.is_contiguous());
  EXPECT_FLOAT_EQ(set->images[0][0][0][0].item<float>(), -1.0f);               // byte 0
  EXPECT_FLOAT_EQ(set->images[2][0][1][3].item<float>(), 23 / 127.5f - 1.0f);  // byte 23
  ASSERT_TRUE(set->has_labels());
  EXPECT_EQ(set->labels.scalar_type(), torch::kInt64);
  EXPECT_EQ(std::vector<int64_t>(set->labels.data_ptr<int64_t>(), set->labels.data_ptr<int64_t>() + 3),
            (std::vector<int64_t>{7, 0, 2}));
  EXPECT_EQ(set->source, images);
}

TEST_F(ImageDataTest, ReadsPlainIdxWithLabelsAndWithout) {
  const std::string images = Write("t10k-images-idx3-ubyte", Idx(0x803, {2, 3, 3}, Ramp(18)));
  absl::StatusOr<ImageSet> bare = ReadImages(images);
  ASSERT_TRUE(bare.ok()) << bare.status();
  EXPECT_FALSE(bare->has_labels());
  Write("t10k-labels-idx1-ubyte", Idx(0x801, {2}, std::string("\x05\x09", 2)));
  absl::StatusOr<ImageSet> set = ReadImages(images);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->images.sizes(), (std::vector<int64_t>{2, 1, 3, 3}));
  EXPECT_FLOAT_EQ(set->images.max().item<float>(), 17 / 127.5f - 1.0f);
  ASSERT_TRUE(set->has_labels());
  EXPECT_EQ(set->labels[1].item<int64_t>(), 9);
  absl::StatusOr<torch::Tensor> labels = ReadIdxLabels(Path("t10k-labels-idx1-ubyte"));
  ASSERT_TRUE(labels.ok()) << labels.status();
  EXPECT_EQ(labels->size(0), 2);
}

TEST_F(ImageDataTest, RefusesIdxWithWrongMagic) {
  const std::string path = Write("a.idx", Idx(0x801, {3, 2, 2}, Ramp(12)));
  absl::StatusOr<ImageSet> set = ReadImages(path);
  ASSERT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(set.status()),
            absl::StrCat("problem.dataset: ", path, ": wrong magic 0x00000801 (want 0x00000803, IDX images)"));
  absl::StatusOr<torch::Tensor> labels = ReadIdxLabels(Write("b.idx", Idx(0x803, {1, 1, 1}, "x")));
  EXPECT_THAT(Message(labels.status()), HasSubstr("wrong magic 0x00000803 (want 0x00000801, IDX labels)"));
}

TEST_F(ImageDataTest, RefusesTruncatedIdx) {
  const std::string path = WriteGz("short-images-idx3-ubyte.gz", Idx(0x803, {100, 28, 28}, Ramp(73 * 784 + 392)));
  absl::StatusOr<ImageSet> set = ReadImages(path);
  ASSERT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(set.status()),
            absl::StrCat("problem.dataset: ", path, ": truncated: header says 100 images of 28x28, file holds 73.5"));
  // A header alone, a huge header (no overflow, no allocation) and a truncated gzip stream.
  EXPECT_THAT(Message(ReadImages(Write("h.idx", "\x00\x00\x08")).status()), HasSubstr("truncated"));
  EXPECT_THAT(Message(ReadImages(Write("big.idx", Idx(0x803, {0xffffffff, 0xffffffff, 0xffffffff}, ""))).status()),
              HasSubstr("more than 2147483648 bytes"));
  std::string gz;
  {
    std::ifstream in(path, std::ios::binary);
    gz.assign(std::istreambuf_iterator<char>(in), {});
  }
  const std::string cut = Write("cut-images-idx3-ubyte.gz", gz.substr(0, gz.size() / 2));
  EXPECT_THAT(Message(ReadImages(cut).status()), HasSubstr(cut + ": truncated gzip stream"));
  const std::string garbage = Write("junk.gz", std::string("\x1f\x8b\x08\x00garbagegarbage", 18));
  EXPECT_THAT(Message(ReadImages(garbage).status()), HasSubstr(garbage + ": "));
}

// In a death-test child: caps the address space at 256 MiB above what the process maps now, reads
// `path` with ReadIdxLabels and exits 0 if the refusal is the gzip length check, 1 otherwise.
[[noreturn]] void ReadLabelsUnderAddressSpaceCapAndExit(const std::string& path) {
  std::ifstream statm("/proc/self/statm");
  uint64_t pages = 0;
  statm >> pages;
  rlimit lim;
  lim.rlim_cur = lim.rlim_max = pages * static_cast<uint64_t>(sysconf(_SC_PAGESIZE)) + (uint64_t{256} << 20);
  setrlimit(RLIMIT_AS, &lim);
  const absl::Status s = ReadIdxLabels(path).status();
  const bool length_check = s.code() == absl::StatusCode::kInvalidArgument &&
                            absl::StrContains(s.message(), "corrupt gzip data (incorrect length check)");
  std::_Exit(length_check ? 0 : 1);
}

// Found by fuzz/idx_fuzzer.cc (issue 16): the gzip trailer's ISIZE was trusted as a reserve size,
// so a file claiming 2^31 - 1 bytes (14 bytes were enough) made the loader reserve 2 GiB. With the
// address space capped at 256 MiB above what the process maps, the refusal must still be the
// stream's own length check, not an allocation failure (INTERNAL std::bad_alloc).
TEST_F(ImageDataTest, GzipTrailerSizeDoesNotDecideTheAllocation) {
  // A valid gzip stream of 3 IDX labels whose trailer (ISIZE, the last 4 bytes) claims 2^31 - 1.
  std::ifstream in(WriteGz("lying-labels-idx1-ubyte.gz", Idx(0x801, {3}, "\x01\x02\x03")), std::ios::binary);
  std::string gz((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  gz.replace(gz.size() - 4, 4, "\xff\xff\xff\x7f");
  const std::string path = Write("lying-labels-idx1-ubyte.gz", gz);
  EXPECT_EXIT(ReadLabelsUnderAddressSpaceCapAndExit(path), ::testing::ExitedWithCode(0), "");
}

TEST_F(ImageDataTest, RefusesLabelCountMismatch) {
  const std::string images = Write("x-images-idx3-ubyte", Idx(0x803, {3, 2, 2}, Ramp(12)));
  const std::string labels = Write("x-labels-idx1-ubyte", Idx(0x801, {2}, std::string("\x01\x02", 2)));
  absl::StatusOr<ImageSet> set = ReadImages(images);
  ASSERT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(set.status()),
              HasSubstr(absl::StrCat("problem.dataset: ", labels, ": 2 labels, but ", images, " holds 3 images")));
  Write("x-labels-idx1-ubyte", Idx(0x801, {3}, std::string("\x01\x02", 2)));  // says 3, holds 2
  EXPECT_THAT(Message(ReadImages(images).status()),
              HasSubstr(labels + ": truncated: header says 3 labels, file holds 2"));
}

TEST_F(ImageDataTest, RefusesMissingPath) {
  absl::StatusOr<ImageSet> set = ReadImages(Path("nope.npy"));
  ASSERT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(set.status()), HasSubstr(absl::StrCat("problem.dataset: ", Path("nope.npy"), ": no such file")));
}

// ---- .npy ---------------------------------------------------------------------------------------

TEST_F(ImageDataTest, ReadsNpyUint8Nhw) {
  const std::string path = Write("u8.npy", Npy("|u1", "(2, 3, 4)", Ramp(24)));
  absl::StatusOr<ImageSet> set = ReadImages(path);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->images.sizes(), (std::vector<int64_t>{2, 1, 3, 4}));
  EXPECT_FALSE(set->has_labels());
  EXPECT_FLOAT_EQ(set->images[1][0][2][3].item<float>(), 23 / 127.5f - 1.0f);
}

TEST_F(ImageDataTest, ReadsNpyFloat32Nchw) {
  std::vector<float> v(2 * 3 * 2 * 2);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i) / (v.size() - 1);
  const std::string path = Write("f4.npy", Npy("<f4", "(2, 3, 2, 2)", Raw(v)));
  absl::StatusOr<ImageSet> set = ReadImages(path);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->images.sizes(), (std::vector<int64_t>{2, 3, 2, 2}));
  EXPECT_FLOAT_EQ(set->images.min().item<float>(), -1.0f);
  EXPECT_FLOAT_EQ(set->images.max().item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(set->images[0][1][0][0].item<float>(), 2 * v[4] - 1);
}

TEST_F(ImageDataTest, ReadsNpyFloat64NhwcAsNchw) {
  // [N=2, H=2, W=4, C=3]: element (n, h, w, c) holds (n*100 + h*10 + w + c*0.001) / 300.
  std::vector<double> v;
  for (int n = 0; n < 2; ++n)
    for (int h = 0; h < 2; ++h)
      for (int w = 0; w < 4; ++w)
        for (int c = 0; c < 3; ++c) v.push_back((n * 100 + h * 10 + w + c * 0.001) / 300.0);
  const std::string path = Write("f8.npy", Npy("<f8", "(2, 2, 4, 3)", Raw(v)));
  absl::StatusOr<ImageSet> set = ReadImages(path);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->images.sizes(), (std::vector<int64_t>{2, 3, 2, 4}));
  EXPECT_EQ(set->images.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(set->images.is_contiguous());
  EXPECT_NEAR(set->images[1][2][1][3].item<float>(), 2 * (100 + 10 + 3 + 0.002) / 300.0 - 1, 1e-6);
  EXPECT_NEAR(set->images[0][1][0][2].item<float>(), 2 * (2 + 0.001) / 300.0 - 1, 1e-6);
}

TEST_F(ImageDataTest, RefusesNpyFloatOutsideUnitRange) {
  const std::string path = Write("wide.npy", Npy("<f4", "(1, 2, 2)", Raw(std::vector<float>{-0.5f, 0, 1, 2})));
  absl::StatusOr<ImageSet> set = ReadImages(path);
  ASSERT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(set.status()), HasSubstr(path + ": float pixels must lie in [0, 1]: found min -0.5, max 2"));
  const std::string nan = Write("nan.npy", Npy("<f4", "(1, 1, 2)", Raw(std::vector<float>{NAN, 0.5f})));
  EXPECT_THAT(Message(ReadImages(nan).status()), HasSubstr(nan + ": float pixels hold NaN"));
}

TEST_F(ImageDataTest, RefusesNpyUnsupportedDtype) {
  const std::string path = Write("i8.npy", Npy("<i8", "(1, 2, 2)", Raw(std::vector<int64_t>{0, 1, 2, 3})));
  absl::StatusOr<ImageSet> set = ReadImages(path);
  ASSERT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(set.status()),
            absl::StrCat("problem.dataset: ", path, ": .npy dtype <i8 not supported (uint8, float32 or float64)"));
  const std::string be = Write("be.npy", Npy(">f4", "(1, 1, 1)", Raw(std::vector<float>{0})));
  EXPECT_THAT(Message(ReadImages(be).status()), HasSubstr(be + ": .npy dtype >f4 not supported"));
}

TEST_F(ImageDataTest, RefusesNpyUnsupportedShapes) {
  const std::string flat = Write("flat.npy", Npy("|u1", "(3, 4)", Ramp(12)));
  EXPECT_THAT(Message(ReadImages(flat).status()), HasSubstr(flat + ": unsupported shape (3, 4)"));
  const std::string c5 = Write("c5.npy", Npy("|u1", "(1, 5, 2, 5)", Ramp(50)));
  EXPECT_THAT(Message(ReadImages(c5).status()),
              HasSubstr(c5 + ": unsupported shape (1, 5, 2, 5): channels (dim 1 or the last) must be 1 or 3"));
  const std::string five = Write("five.npy", Npy("|u1", "(1, 1, 1, 1, 1)", Ramp(1)));
  EXPECT_THAT(Message(ReadImages(five).status()), HasSubstr(five + ": unsupported shape (1, 1, 1, 1, 1)"));
  const std::string empty = Write("empty.npy", Npy("|u1", "(0, 2, 2)", ""));
  EXPECT_THAT(Message(ReadImages(empty).status()), HasSubstr(empty + ": empty shape (0, 2, 2)"));
  const std::string huge = Write("huge.npy", Npy("|u1", "(999999999999, 999999999999, 999999999999)", ""));
  EXPECT_THAT(Message(ReadImages(huge).status()), HasSubstr(huge + ": shape"));
  const std::string short_data = Write("short.npy", Npy("<f4", "(2, 2, 2)", Raw(std::vector<float>{0, 0, 0})));
  EXPECT_THAT(Message(ReadImages(short_data).status()),
              HasSubstr(short_data + ": truncated: shape (2, 2, 2) of <f4 needs 32 bytes of data, file holds 12"));
  const std::string cut_header = Write("cut.npy", Npy("|u1", "(1, 1, 1)", "x").substr(0, 20));
  EXPECT_THAT(Message(ReadImages(cut_header).status()), HasSubstr(cut_header + ": truncated .npy header"));
}

TEST_F(ImageDataTest, RefusesNpyFortranOrder) {
  const std::string path = Write("f.npy", Npy("|u1", "(1, 2, 2)", Ramp(4), /*fortran=*/true));
  absl::StatusOr<ImageSet> set = ReadImages(path);
  ASSERT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(set.status()), HasSubstr(path + ": .npy fortran_order True not supported (C order only)"));
}

// ---- PNG folders --------------------------------------------------------------------------------

TEST_F(ImageDataTest, ReadsGreyPngFolderInNameOrder) {
  WritePng("grey/b.png", 5, 3, 1, 100);
  WritePng("grey/a.png", 5, 3, 1, 0);
  Write("grey/notes.txt", "not an image");
  absl::StatusOr<ImageSet> set = ReadImages(Path("grey"));
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->images.sizes(), (std::vector<int64_t>{2, 1, 3, 5}));
  EXPECT_FLOAT_EQ(set->images[0][0][0][0].item<float>(), -1.0f);                // a.png, byte 0
  EXPECT_FLOAT_EQ(set->images[1][0][2][4].item<float>(), 114 / 127.5f - 1.0f);  // b.png, byte 100 + 14
  EXPECT_EQ(set->source, Path("grey"));
}

TEST_F(ImageDataTest, ReadsRgbPngFolder) {
  WritePng("rgb/0.png", 4, 2, 3, 0);
  WritePng("rgb/1.png", 4, 2, 3, 50);
  absl::StatusOr<ImageSet> set = ReadImages(Path("rgb"));
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->images.sizes(), (std::vector<int64_t>{2, 3, 2, 4}));
  EXPECT_TRUE(set->images.is_contiguous());
  // Pixel (h=1, w=2) of 1.png is bytes 50 + (1*4 + 2)*3 + c.
  for (int c = 0; c < 3; ++c)
    EXPECT_FLOAT_EQ(set->images[1][c][1][2].item<float>(), (50 + 18 + c) / 127.5f - 1.0f) << c;
}

TEST_F(ImageDataTest, RefusesPngFolderWithMixedSizes) {
  WritePng("mixed/a.png", 28, 28, 1, 0);
  WritePng("mixed/b.png", 32, 32, 1, 0);
  absl::StatusOr<ImageSet> set = ReadImages(Path("mixed"));
  ASSERT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(set.status()),
            absl::StrCat("problem.dataset: ", Path("mixed"), ": mixed sizes: b.png is 32x32, a.png is 28x28"));
}

TEST_F(ImageDataTest, RefusesEmptyPngFolderAndBrokenPng) {
  Write("empty/readme.txt", "no pictures here");
  absl::StatusOr<ImageSet> set = ReadImages(Path("empty"));
  ASSERT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(set.status()), HasSubstr(Path("empty") + ": no .png files in the folder"));
  Write("broken/x.png", "\x89PNG but not really");
  EXPECT_THAT(Message(ReadImages(Path("broken")).status()), HasSubstr(Path("broken/x.png") + ": not a readable PNG"));
}

// ---- digits -------------------------------------------------------------------------------------

std::string DigitsPath() { return std::string(VSDM_SOURCE_DIR) + "/data/images/digits8x8.csv.gz"; }

TEST_F(ImageDataTest, ReadsVendoredDigits) {
  absl::StatusOr<ImageSet> set = ReadDigitsCsv(DigitsPath());
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->images.sizes(), (std::vector<int64_t>{1797, 1, 8, 8}));
  EXPECT_FLOAT_EQ(set->images.min().item<float>(), -1.0f);  // pixel 0
  EXPECT_FLOAT_EQ(set->images.max().item<float>(), 1.0f);   // pixel 16
  ASSERT_TRUE(set->has_labels());
  EXPECT_EQ(set->labels.min().item<int64_t>(), 0);
  EXPECT_EQ(set->labels.max().item<int64_t>(), 9);
  EXPECT_EQ(std::get<0>(at::_unique(set->labels)).size(0), 10);
  // First line: 0,0,5,13,... label 0.
  EXPECT_FLOAT_EQ(set->images[0][0][0][2].item<float>(), 5 / 8.0f - 1.0f);
  EXPECT_EQ(set->labels[0].item<int64_t>(), 0);
}

TEST_F(ImageDataTest, RefusesDigitsBadLines) {
  std::string good;
  for (int i = 0; i < 64; ++i) absl::StrAppend(&good, i % 17, ",");
  const std::string fields = Write("fields.csv", absl::StrCat(good, "3\n", good, "3,4\n"));
  absl::StatusOr<ImageSet> set = ReadDigitsCsv(fields);
  ASSERT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(set.status()), absl::StrCat("problem.dataset: ", fields,
                                                ": line 2: 66 fields (want 65: 64 pixels 0..16, then the label)"));
  const std::string short_line = Write("short.csv", absl::StrCat(good, "3\n1,2,3\n"));
  EXPECT_THAT(Message(ReadDigitsCsv(short_line).status()),
              HasSubstr(short_line + ": line 2: 3 fields (want 65: 64 pixels 0..16, then the label)"));
  std::string hot = good;
  hot.replace(0, 1, "17");
  const std::string range = WriteGz("range.csv.gz", absl::StrCat(good, "1\n", good, "2\n", hot, "3\n"));
  EXPECT_THAT(Message(ReadDigitsCsv(range).status()),
              HasSubstr(range + ": line 3, field 1: pixel 17 out of range 0..16"));
  const std::string label = Write("label.csv", absl::StrCat(good, "10\n"));
  EXPECT_THAT(Message(ReadDigitsCsv(label).status()), HasSubstr(label + ": line 1: label 10 out of range 0..9"));
  const std::string word = Write("word.csv", absl::StrCat(good, "x\n"));
  EXPECT_THAT(Message(ReadDigitsCsv(word).status()), HasSubstr(word + ": line 1, field 65: 'x' is not an integer"));
}

// ---- LoadImageData ------------------------------------------------------------------------------

ImageDataPaths RepoPaths() {
  ImageDataPaths p;
  p.data_dir = std::string(VSDM_SOURCE_DIR) + "/data";
  return p;
}

// One exact integer per digits image (pixels 0..16 weighted by fixed integers), sorted: equal for
// equal multisets of images.
torch::Tensor SortedKeys(const torch::Tensor& images) {
  torch::Tensor px = images.flatten(1).add(1).mul(8).round().to(torch::kInt64);
  torch::Tensor w = torch::arange(px.size(1), torch::kInt64).mul(7919).remainder(1 << 20).add(1);
  return std::get<0>(px.mul(w).sum(1).sort());
}

TEST_F(ImageDataTest, DigitsSplitIsDisjointAndSeeded) {
  absl::StatusOr<ImageData> a = LoadImageData("digits", RepoPaths(), 0.2, 7);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->name, "digits");
  EXPECT_EQ(a->split, "seeded 0.2");
  EXPECT_EQ(a->classes, 10);
  EXPECT_EQ(a->test.size(), 359);  // round(1797 * 0.2)
  EXPECT_EQ(a->train.size(), 1797 - 359);
  EXPECT_EQ(a->train.labels.size(0), a->train.size());
  // train + test is exactly the whole set (a partition, no image in both).
  absl::StatusOr<ImageSet> all = ReadDigitsCsv(DigitsPath());
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(torch::equal(SortedKeys(torch::cat({a->train.images, a->test.images})), SortedKeys(all->images)));

  absl::StatusOr<ImageData> again = LoadImageData("digits", RepoPaths(), 0.2, 7);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(torch::equal(a->test.images, again->test.images));
  EXPECT_TRUE(torch::equal(a->train.labels, again->train.labels));
  absl::StatusOr<ImageData> other = LoadImageData("digits", RepoPaths(), 0.2, 8);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(torch::equal(a->test.images, other->test.images));
}

TEST_F(ImageDataTest, ImagesPathSplitHoldsEachImageOnce) {
  // Image i is filled with value i: the split's ids must be disjoint and cover 0..9.
  std::string data;
  for (int i = 0; i < 10; ++i) data.append(4, static_cast<char>(i));
  const std::string path = Write("ids.npy", Npy("|u1", "(10, 2, 2)", data));
  absl::StatusOr<ImageData> d = LoadImageData("images:" + path, RepoPaths(), 0.3, 1);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->name, "images:" + path);
  EXPECT_EQ(d->classes, 0);
  EXPECT_FALSE(d->train.has_labels());
  ASSERT_EQ(d->test.size(), 3);
  ASSERT_EQ(d->train.size(), 7);
  auto ids = [](const ImageSet& s) {
    return s.images.select(1, 0).select(1, 0).select(1, 0).add(1).mul(127.5).round().to(torch::kInt64);
  };
  torch::Tensor all = std::get<0>(torch::cat({ids(d->train), ids(d->test)}).sort());
  EXPECT_TRUE(torch::equal(all, torch::arange(10, torch::kInt64)));
  // Small sets keep at least one image on each side.
  const std::string two = Write("two.npy", Npy("|u1", "(2, 1, 1)", Ramp(2)));
  absl::StatusOr<ImageData> t = LoadImageData("images:" + two, RepoPaths(), 0.01, 1);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->test.size(), 1);
  EXPECT_EQ(t->train.size(), 1);
  const std::string one = Write("one.npy", Npy("|u1", "(1, 1, 1)", Ramp(1)));
  EXPECT_THAT(Message(LoadImageData("images:" + one, RepoPaths(), 0.1, 1).status()),
              HasSubstr(one + ": 1 image(s): a seeded train/test split needs at least 2"));
}

TEST_F(ImageDataTest, TrainLimitKeepsFirstTrainingImages) {
  absl::StatusOr<ImageData> full = LoadImageData("digits", RepoPaths(), 0.1, 3);
  absl::StatusOr<ImageData> lim = LoadImageData("digits", RepoPaths(), 0.1, 3, 100);
  ASSERT_TRUE(full.ok() && lim.ok());
  EXPECT_EQ(lim->train.size(), 100);
  EXPECT_EQ(lim->train.labels.size(0), 100);
  EXPECT_TRUE(torch::equal(lim->train.images, full->train.images.slice(0, 0, 100)));
  EXPECT_TRUE(torch::equal(lim->test.images, full->test.images));  // test untouched
  EXPECT_EQ(lim->classes, 10);
  absl::StatusOr<ImageData> big = LoadImageData("digits", RepoPaths(), 0.1, 3, 100000);
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->train.size(), full->train.size());
}

TEST_F(ImageDataTest, LoadsFashionMnistOfficialSplit) {
  ImageDataPaths paths;  // the Debian location
  if (!fs::exists(paths.fashion_mnist_dir + "/train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist not installed (scripts/install-deps.sh)";
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<ImageData> d = LoadImageData("fashion_mnist", paths, 0.1, 0);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 5.0);
  EXPECT_EQ(d->split, "official");
  EXPECT_EQ(d->classes, 10);
  EXPECT_EQ(d->train.images.sizes(), (std::vector<int64_t>{60000, 1, 28, 28}));
  EXPECT_EQ(d->test.images.sizes(), (std::vector<int64_t>{10000, 1, 28, 28}));
  EXPECT_EQ(d->train.labels.size(0), 60000);
  EXPECT_EQ(d->test.labels.size(0), 10000);
  EXPECT_GE(d->train.images.min().item<float>(), -1.0f);
  EXPECT_LE(d->train.images.max().item<float>(), 1.0f);
  // Each class holds 6000 training images.
  EXPECT_TRUE(torch::equal(torch::bincount(d->train.labels), torch::full({10}, 6000, torch::kInt64)));
}

TEST_F(ImageDataTest, FashionMnistMissingFilesSayHowToInstall) {
  ImageDataPaths paths;
  paths.fashion_mnist_dir = Path("no-fashion");
  absl::StatusOr<ImageData> d = LoadImageData("fashion_mnist", paths, 0.1, 0);
  ASSERT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(d.status()), HasSubstr(absl::StrCat("problem.dataset: ", Path("no-fashion"),
                                                          "/train-images-idx3-ubyte.gz: not found")));
  EXPECT_THAT(Message(d.status()), HasSubstr("apt-get install dataset-fashion-mnist"));
  EXPECT_THAT(Message(d.status()), HasSubstr("scripts/install-deps.sh"));
}

TEST_F(ImageDataTest, RefusesUnknownDatasetAndBadPaths) {
  absl::StatusOr<ImageData> d = LoadImageData("cifar10", RepoPaths(), 0.1, 0);
  ASSERT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(d.status()), HasSubstr("problem.dataset: \"cifar10\" is not an image dataset"));
  EXPECT_EQ(LoadImageData("images:", RepoPaths(), 0.1, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(LoadImageData("images:" + Path("gone"), RepoPaths(), 0.1, 0).status()),
              HasSubstr(Path("gone") + ": no such file"));
  ImageDataPaths no_data;
  no_data.data_dir = Path("nodata");
  EXPECT_THAT(Message(LoadImageData("digits", no_data, 0.1, 0).status()),
              HasSubstr(Path("nodata") + "/images/digits8x8.csv.gz: no such file"));
  EXPECT_THAT(Message(LoadImageData("digits", RepoPaths(), 1.5, 0).status()), HasSubstr("problem.test_fraction"));
}

// ---- small helpers ------------------------------------------------------------------------------

TEST_F(ImageDataTest, NamesImageDatasets) {
  EXPECT_TRUE(IsImageDataset("fashion_mnist"));
  EXPECT_TRUE(IsImageDataset("digits"));
  EXPECT_TRUE(IsImageDataset("images:/data/faces"));
  EXPECT_FALSE(IsImageDataset("two_moons"));
  EXPECT_FALSE(IsImageDataset("images"));
}

TEST_F(ImageDataTest, ToUnitRangeMapsAndClamps) {
  torch::Tensor x = torch::tensor({-2.0f, -1.0f, 0.0f, 1.0f, 3.0f});
  EXPECT_TRUE(torch::allclose(ToUnitRange(x), torch::tensor({0.0f, 0.0f, 0.5f, 1.0f, 1.0f})));
  EXPECT_FALSE(ToUnitRange(torch::Tensor()).defined());
}

TEST_F(ImageDataTest, SelectTakesRowsOfImagesAndLabels) {
  ImageSet s;
  s.images = torch::arange(4 * 4, torch::kFloat32).reshape({4, 1, 2, 2});
  s.labels = torch::tensor({10, 11, 12, 13}, torch::kInt64);
  s.source = "src";
  ImageSet t = s.Select(torch::tensor({3, 1}, torch::kInt64));
  EXPECT_EQ(t.size(), 2);
  EXPECT_EQ(t.labels[0].item<int64_t>(), 13);
  EXPECT_FLOAT_EQ(t.images[1][0][0][0].item<float>(), 4.0f);
  EXPECT_EQ(t.source, "src");
  s.labels = torch::Tensor();
  EXPECT_FALSE(s.Select(torch::tensor({0}, torch::kInt64)).has_labels());
}

}  // namespace
}  // namespace vsdm::core
