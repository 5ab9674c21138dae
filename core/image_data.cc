#include "core/image_data.h"

#include <png.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace vsdm::core {
namespace fs = std::filesystem;
namespace {

// Note [Size caps]: no file, decompressed stream or pixel array may exceed 2^31 bytes. Every
// count read from a header is checked against the bytes actually present before anything is
// allocated, and products of dimensions are checked by division so they cannot overflow.
constexpr uint64_t kMaxBytes = uint64_t{1} << 31;
// The most one byte of deflate data can inflate to (RFC 1951: a 258-byte match in ~2 bits).
constexpr uint64_t kMaxDeflateRatio = 1032;

const char kInstallHint[] =
    "install Fashion-MNIST with `apt-get install dataset-fashion-mnist` (or scripts/install-deps.sh)";

// INVALID_ARGUMENT "problem.dataset: <file>: <what>".
template <typename... Args>
absl::Status Bad(const std::string& file, const Args&... what) {
  return absl::InvalidArgumentError(absl::StrCat("problem.dataset: ", file, ": ", what...));
}

// a * b, or false when it would pass kMaxBytes.
bool MulCapped(uint64_t a, uint64_t b, uint64_t* out) {
  if (a != 0 && b > kMaxBytes / a) return false;
  *out = a * b;
  return *out <= kMaxBytes;
}

uint32_t ReadBe32(const std::string& b, size_t at) {
  auto u = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(b[at + i])); };
  return (u(0) << 24) | (u(1) << 16) | (u(2) << 8) | u(3);
}

bool IsGzip(const std::string& b) {
  return b.size() >= 2 && static_cast<unsigned char>(b[0]) == 0x1f && static_cast<unsigned char>(b[1]) == 0x8b;
}

// The gzip stream `gz` inflated (concatenated members included), at most kMaxBytes.
absl::StatusOr<std::string> Gunzip(const std::string& path, const std::string& gz) {
  z_stream zs;
  std::memset(&zs, 0, sizeof(zs));
  if (inflateInit2(&zs, 15 + 16) != Z_OK) return absl::InternalError(absl::StrCat(path, ": inflateInit2 failed"));
  std::string out;
  if (gz.size() >= 4) {
    // ISIZE (the size mod 2^32 of the last member) is only a hint, and the file's to choose: a
    // 14-byte stream claiming 2^31 - 1 bytes reserved 2 GiB (found by fuzz/idx_fuzzer.cc). Deflate
    // never inflates more than 1032:1, so no honest trailer claims more than that.
    uint32_t isize;
    std::memcpy(&isize, gz.data() + gz.size() - 4, 4);
    out.reserve(std::min<uint64_t>({isize, kMaxDeflateRatio * gz.size(), kMaxBytes}));
  }
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gz.data()));
  zs.avail_in = static_cast<uInt>(gz.size());  // <= kMaxBytes < 2^32
  constexpr size_t kChunk = 1 << 18;
  std::string chunk(kChunk, '\0');
  absl::Status status;
  for (;;) {
    zs.next_out = reinterpret_cast<Bytef*>(chunk.data());
    zs.avail_out = kChunk;
    const int rc = inflate(&zs, Z_NO_FLUSH);
    out.append(chunk.data(), kChunk - zs.avail_out);
    if (out.size() > kMaxBytes) {
      status = Bad(path, "decompresses to more than ", kMaxBytes, " bytes");
      break;
    }
    if (rc == Z_STREAM_END) {
      if (zs.avail_in >= 2 && zs.next_in[0] == 0x1f && zs.next_in[1] == 0x8b) {  // another member
        inflateReset(&zs);
        continue;
      }
      break;  // trailing padding after the last member is ignored, as gzip(1) does
    }
    if (rc == Z_OK) continue;
    if (rc == Z_BUF_ERROR && zs.avail_in == 0) {
      status = Bad(path, "truncated gzip stream");
    } else {
      status = Bad(path, "corrupt gzip data (", zs.msg ? zs.msg : "zlib error", ")");
    }
    break;
  }
  inflateEnd(&zs);
  if (!status.ok()) return status;
  return out;
}

// The bytes of regular file `path`, inflated when they start with the gzip magic.
absl::StatusOr<std::string> ReadMaybeGz(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return Bad(path, "no such file");
  if (!fs::is_regular_file(path, ec)) return Bad(path, "not a regular file");
  const uintmax_t size = fs::file_size(path, ec);
  if (ec) return Bad(path, "cannot stat: ", ec.message());
  if (size > kMaxBytes) return Bad(path, "file of ", size, " bytes is larger than ", kMaxBytes);
  absl::StatusOr<std::string> bytes = ReadFile(path);
  if (!bytes.ok()) return Bad(path, "cannot read: ", bytes.status().message());
  if (IsGzip(*bytes)) return Gunzip(path, *bytes);
  return bytes;
}

// uint8 pixels -> float32 in [-1, 1] (x / 127.5 - 1).
torch::Tensor BytesToUnit(const uint8_t* data, std::vector<int64_t> shape) {
  torch::Tensor t = torch::from_blob(const_cast<uint8_t*>(data), shape, torch::kUInt8);
  return t.to(torch::kFloat32).div_(127.5).sub_(1.0).contiguous();
}

// ---- IDX ----------------------------------------------------------------------------------------

absl::StatusOr<torch::Tensor> DecodeIdxImages(const std::string& path, const std::string& b) {
  if (b.size() < 16) return Bad(path, "truncated: ", b.size(), " bytes, an IDX images header needs 16");
  const uint32_t magic = ReadBe32(b, 0);
  if (magic != 0x00000803) return Bad(path, absl::StrFormat("wrong magic 0x%08x (want 0x00000803, IDX images)", magic));
  const uint64_t n = ReadBe32(b, 4), h = ReadBe32(b, 8), w = ReadBe32(b, 12);
  if (n == 0 || h == 0 || w == 0) return Bad(path, "header says ", n, " images of ", h, "x", w, ": empty");
  uint64_t hw, total;
  if (!MulCapped(h, w, &hw) || !MulCapped(n, hw, &total))
    return Bad(path, "header says ", n, " images of ", h, "x", w, ": more than ", kMaxBytes, " bytes");
  const uint64_t have = b.size() - 16;
  if (have != total) {
    return Bad(path, have < total ? "truncated" : "trailing bytes",
               absl::StrFormat(": header says %d images of %dx%d, file holds %.6g", n, h, w,
                               static_cast<double>(have) / static_cast<double>(hw)));
  }
  return BytesToUnit(reinterpret_cast<const uint8_t*>(b.data()) + 16,
                     {static_cast<int64_t>(n), 1, static_cast<int64_t>(h), static_cast<int64_t>(w)});
}

absl::StatusOr<torch::Tensor> DecodeIdxLabels(const std::string& path, const std::string& b) {
  if (b.size() < 8) return Bad(path, "truncated: ", b.size(), " bytes, an IDX labels header needs 8");
  const uint32_t magic = ReadBe32(b, 0);
  if (magic != 0x00000801) return Bad(path, absl::StrFormat("wrong magic 0x%08x (want 0x00000801, IDX labels)", magic));
  const uint64_t n = ReadBe32(b, 4);
  const uint64_t have = b.size() - 8;
  if (have != n)
    return Bad(path, have < n ? "truncated" : "trailing bytes", ": header says ", n, " labels, file holds ", have);
  torch::Tensor t = torch::from_blob(const_cast<char*>(b.data()) + 8, {static_cast<int64_t>(n)}, torch::kUInt8);
  return t.to(torch::kInt64).contiguous();
}

// The labels file next to IDX images `path` ("images-idx3" -> "labels-idx1"), or "" if none.
std::string SiblingLabels(const std::string& path) {
  fs::path p(path);
  std::string name = p.filename().string();
  const size_t at = name.find("images-idx3");
  if (at == std::string::npos) return "";
  name.replace(at, std::strlen("images-idx3"), "labels-idx1");
  return (p.parent_path() / name).string();
}

absl::StatusOr<ImageSet> ReadIdxImageSet(const std::string& path, const std::string& bytes) {
  ImageSet set;
  set.source = path;
  VSDM_ASSIGN_OR_RETURN(set.images, DecodeIdxImages(path, bytes));
  const std::string labels = SiblingLabels(path);
  std::error_code ec;
  if (!labels.empty() && fs::exists(labels, ec)) {
    VSDM_ASSIGN_OR_RETURN(set.labels, ReadIdxLabels(labels));
    if (set.labels.size(0) != set.size())
      return Bad(labels, set.labels.size(0), " labels, but ", path, " holds ", set.size(), " images");
  }
  return set;
}

// ---- .npy ---------------------------------------------------------------------------------------

struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  std::vector<uint64_t> shape;
  size_t data_offset = 0;
};

// The position just after `'key':` (and spaces) in the header dict, or npos.
size_t FindValue(absl::string_view h, absl::string_view key) {
  size_t at = h.find(absl::StrCat("'", key, "'"));
  if (at == absl::string_view::npos) at = h.find(absl::StrCat("\"", key, "\""));
  if (at == absl::string_view::npos) return at;
  at = h.find(':', at + key.size() + 2);
  if (at == absl::string_view::npos) return at;
  ++at;
  while (at < h.size() && h[at] == ' ') ++at;
  return at < h.size() ? at : absl::string_view::npos;
}

std::string ShapeString(const std::vector<uint64_t>& shape) {
  return absl::StrCat("(", absl::StrJoin(shape, ", "), shape.size() == 1 ? ",)" : ")");
}

absl::StatusOr<NpyHeader> ParseNpyHeader(const std::string& path, const std::string& b) {
  if (b.size() < 10) return Bad(path, "truncated .npy header");
  const int major = static_cast<unsigned char>(b[6]);
  NpyHeader out;
  uint64_t hlen;
  if (major == 1) {
    hlen = static_cast<unsigned char>(b[8]) | (static_cast<unsigned char>(b[9]) << 8);
    out.data_offset = 10;
  } else if (major == 2 || major == 3) {
    if (b.size() < 12) return Bad(path, "truncated .npy header");
    hlen = 0;
    for (int i = 3; i >= 0; --i) hlen = (hlen << 8) | static_cast<unsigned char>(b[8 + i]);
    out.data_offset = 12;
  } else {
    return Bad(path, ".npy format version ", major, " not supported (1.0, 2.0 or 3.0)");
  }
  if (hlen > b.size() - out.data_offset) return Bad(path, "truncated .npy header");
  const absl::string_view h(b.data() + out.data_offset, hlen);
  out.data_offset += hlen;

  size_t at = FindValue(h, "descr");
  if (at == absl::string_view::npos || (h[at] != '\'' && h[at] != '"')) return Bad(path, ".npy header has no descr");
  const size_t end = h.find(h[at], at + 1);
  if (end == absl::string_view::npos) return Bad(path, ".npy header has no descr");
  out.descr = std::string(h.substr(at + 1, end - at - 1));

  at = FindValue(h, "fortran_order");
  if (at == absl::string_view::npos) return Bad(path, ".npy header has no fortran_order");
  out.fortran_order = h.substr(at, 4) == "True";

  at = FindValue(h, "shape");
  const size_t close = at == absl::string_view::npos ? at : h.find(')', at);
  if (at == absl::string_view::npos || h[at] != '(' || close == absl::string_view::npos)
    return Bad(path, ".npy header has no shape");
  std::vector<absl::string_view> parts = absl::StrSplit(h.substr(at + 1, close - at - 1), ',');
  for (size_t i = 0; i < parts.size(); ++i) {
    absl::string_view d = absl::StripAsciiWhitespace(parts[i]);
    if (d.empty() && i + 1 == parts.size() && i > 0) break;  // "(3,)"
    if (d.empty() && parts.size() == 1) break;               // "()"
    uint64_t v;
    if (d.size() > 12 || !absl::SimpleAtoi(d, &v)) return Bad(path, ".npy shape '", d, "' is not a dimension");
    out.shape.push_back(v);
  }
  return out;
}

// The layout of a 4-D array: true for [N,C,H,W], false for [N,H,W,C].
absl::StatusOr<bool> NpyIsNchw(const std::string& path, const std::vector<uint64_t>& s) {
  const bool first = s[1] == 1 || s[1] == 3, last = s[3] == 1 || s[3] == 3;
  // Both candidates (e.g. [N,3,W,3]) are ambiguous: NCHW wins, the layout torch itself uses.
  if (first) return true;
  if (last) return false;
  return Bad(path, "unsupported shape ", ShapeString(s), ": channels (dim 1 or the last) must be 1 or 3");
}

absl::StatusOr<ImageSet> DecodeNpyImages(const std::string& path, const std::string& b) {
  VSDM_ASSIGN_OR_RETURN(NpyHeader hdr, ParseNpyHeader(path, b));
  size_t esize;
  if (hdr.descr == "|u1" || hdr.descr == "<u1" || hdr.descr == ">u1") {
    esize = 1;
  } else if (hdr.descr == "<f4") {
    esize = 4;
  } else if (hdr.descr == "<f8") {
    esize = 8;
  } else {
    return Bad(path, ".npy dtype ", hdr.descr, " not supported (uint8, float32 or float64)");
  }
  if (hdr.fortran_order) return Bad(path, ".npy fortran_order True not supported (C order only)");
  const std::vector<uint64_t>& s = hdr.shape;
  if (s.size() != 3 && s.size() != 4)
    return Bad(path, "unsupported shape ", ShapeString(s), " (want [N,H,W], [N,C,H,W] or [N,H,W,C], C in {1, 3})");
  bool nchw = true;
  if (s.size() == 4) {
    VSDM_ASSIGN_OR_RETURN(nchw, NpyIsNchw(path, s));
  }
  uint64_t numel = 1;
  for (uint64_t d : s) {
    if (d == 0) return Bad(path, "empty shape ", ShapeString(s));
    if (!MulCapped(numel, d, &numel)) return Bad(path, "shape ", ShapeString(s), " is larger than ", kMaxBytes);
  }
  uint64_t need;
  if (!MulCapped(numel, esize, &need)) return Bad(path, "shape ", ShapeString(s), " is larger than ", kMaxBytes);
  const uint64_t have = b.size() - hdr.data_offset;
  if (have != need)
    return Bad(path, have < need ? "truncated" : "trailing bytes", ": shape ", ShapeString(s), " of ", hdr.descr,
               " needs ", need, " bytes of data, file holds ", have);
  std::vector<int64_t> shape(s.begin(), s.end());
  torch::Tensor x;
  if (esize == 1) {
    x = BytesToUnit(reinterpret_cast<const uint8_t*>(b.data()) + hdr.data_offset, shape);
  } else {
    x = torch::empty(shape, esize == 4 ? torch::kFloat32 : torch::kFloat64);
    std::memcpy(x.data_ptr(), b.data() + hdr.data_offset, need);  // the data may be unaligned
    if (x.isnan().any().item<bool>()) return Bad(path, "float pixels hold NaN (want values in [0, 1])");
    const double lo = x.min().item<double>(), hi = x.max().item<double>();
    if (lo < 0 || hi > 1)
      return Bad(path, absl::StrFormat("float pixels must lie in [0, 1]: found min %g, max %g", lo, hi));
    x = x.mul(2.0).sub_(1.0).to(torch::kFloat32);
  }
  if (s.size() == 3) x = x.unsqueeze(1);
  if (!nchw) x = x.permute({0, 3, 1, 2});
  ImageSet set;
  set.images = x.contiguous();
  set.source = path;
  return set;
}

// ---- PNG folder ---------------------------------------------------------------------------------

absl::StatusOr<ImageSet> ReadPngFolder(const std::string& dir) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec) && absl::AsciiStrToLower(it->path().extension().string()) == ".png")
      files.push_back(it->path());
  }
  if (ec) return Bad(dir, "cannot list the folder: ", ec.message());
  if (files.empty()) return Bad(dir, "no .png files in the folder");
  std::sort(files.begin(), files.end());
  torch::Tensor hwc;  // [n, H, W, C] uint8
  uint32_t w0 = 0, h0 = 0;
  int channels = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string file = files[i].string();
    png_image img;
    std::memset(&img, 0, sizeof(img));
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&img, file.c_str())) return Bad(file, "not a readable PNG: ", img.message);
    if (i == 0) {
      w0 = img.width;
      h0 = img.height;
      channels = (img.format & PNG_FORMAT_FLAG_COLOR) ? 3 : 1;
      uint64_t px, total;
      if (!MulCapped(uint64_t{w0} * h0, channels, &px) || !MulCapped(px, files.size(), &total)) {
        png_image_free(&img);
        return Bad(dir, files.size(), " images of ", w0, "x", h0, " are larger than ", kMaxBytes, " bytes");
      }
      hwc = torch::zeros({static_cast<int64_t>(files.size()), int64_t{h0}, int64_t{w0}, int64_t{channels}},
                         torch::kUInt8);
    } else if (img.width != w0 || img.height != h0) {
      png_image_free(&img);
      return Bad(dir, "mixed sizes: ", files[i].filename().string(), " is ", img.width, "x", img.height, ", ",
                 files[0].filename().string(), " is ", w0, "x", h0);
    }
    // Grey(+alpha) first file -> every file read as grey; colour -> RGB. An alpha channel is
    // composited onto the zeroed buffer (black).
    img.format = channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    if (!png_image_finish_read(&img, nullptr, hwc[static_cast<int64_t>(i)].data_ptr(), 0, nullptr))
      return Bad(file, "cannot decode the PNG: ", img.message);
  }
  ImageSet set;
  set.images = hwc.permute({0, 3, 1, 2}).to(torch::kFloat32).div_(127.5).sub_(1.0).contiguous();
  set.source = dir;
  return set;
}

absl::StatusOr<ImageSet> ReadImagesUnguarded(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return ReadPngFolder(path);
  VSDM_ASSIGN_OR_RETURN(std::string bytes, ReadMaybeGz(path));
  if (bytes.size() >= 6 && bytes.compare(0, 6, "\x93NUMPY") == 0) return DecodeNpyImages(path, bytes);
  return ReadIdxImageSet(path, bytes);
}

// ---- digits CSV ---------------------------------------------------------------------------------

absl::StatusOr<ImageSet> ReadDigitsUnguarded(const std::string& path) {
  VSDM_ASSIGN_OR_RETURN(std::string text, ReadMaybeGz(path));
  std::vector<uint8_t> pixels;
  std::vector<int64_t> labels;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    std::vector<absl::string_view> fields = absl::StrSplit(line, ',');
    if (fields.size() != 65)
      return Bad(path, "line ", line_no, ": ", fields.size(), " fields (want 65: 64 pixels 0..16, then the label)");
    for (size_t f = 0; f < fields.size(); ++f) {
      int v;
      if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(fields[f]), &v))
        return Bad(path, "line ", line_no, ", field ", f + 1, ": '", fields[f], "' is not an integer");
      if (f < 64 && (v < 0 || v > 16))
        return Bad(path, "line ", line_no, ", field ", f + 1, ": pixel ", v, " out of range 0..16");
      if (f == 64 && (v < 0 || v > 9)) return Bad(path, "line ", line_no, ": label ", v, " out of range 0..9");
      if (f < 64) {
        pixels.push_back(static_cast<uint8_t>(v));
      } else {
        labels.push_back(v);
      }
    }
  }
  if (labels.empty()) return Bad(path, "no images");
  const int64_t n = static_cast<int64_t>(labels.size());
  ImageSet set;
  set.images = torch::from_blob(pixels.data(), {n, 1, 8, 8}, torch::kUInt8).to(torch::kFloat32).div_(8.0).sub_(1.0);
  set.labels = torch::from_blob(labels.data(), {n}, torch::kInt64).clone();
  set.source = path;
  return set;
}

// ---- splits -------------------------------------------------------------------------------------

absl::StatusOr<ImageData> SeededSplit(ImageSet all, const std::string& name, double test_fraction, uint64_t seed) {
  if (!(test_fraction > 0 && test_fraction < 1))
    return absl::InvalidArgumentError(
        absl::StrFormat("problem.test_fraction: %g out of range (0, 1) for %s", test_fraction, name));
  const int64_t n = all.size();
  if (n < 2) return Bad(all.source, n, " image(s): a seeded train/test split needs at least 2");
  int64_t n_test = std::llround(static_cast<double>(n) * test_fraction);
  n_test = std::clamp<int64_t>(n_test, 1, n - 1);
  torch::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  torch::Tensor perm = torch::randperm(n, gen, torch::kInt64);
  ImageData data;
  data.name = name;
  data.split = absl::StrFormat("seeded %g", test_fraction);
  data.test = all.Select(perm.slice(0, 0, n_test));
  data.train = all.Select(perm.slice(0, n_test));
  return data;
}

absl::StatusOr<ImageData> LoadFashionMnist(const ImageDataPaths& paths) {
  ImageData data;
  data.name = "fashion_mnist";
  data.split = "official";
  for (const char* prefix : {"train", "t10k"}) {
    const std::string images = absl::StrCat(paths.fashion_mnist_dir, "/", prefix, "-images-idx3-ubyte.gz");
    const std::string labels = SiblingLabels(images);
    std::error_code ec;
    for (const std::string& f : {images, labels})
      if (!fs::exists(f, ec)) return Bad(f, "not found; ", kInstallHint);
    VSDM_ASSIGN_OR_RETURN(ImageSet set, ReadImagesUnguarded(images));
    (absl::string_view(prefix) == "train" ? data.train : data.test) = std::move(set);
  }
  if (data.train.height() != data.test.height() || data.train.width() != data.test.width())
    return Bad(data.test.source, "images are ", data.test.height(), "x", data.test.width(), ", training images ",
               data.train.height(), "x", data.train.width());
  return data;
}

absl::StatusOr<ImageData> LoadUnguarded(const std::string& dataset, const ImageDataPaths& paths, double test_fraction,
                                        uint64_t seed) {
  if (dataset == "fashion_mnist") return LoadFashionMnist(paths);
  if (dataset == "digits") {
    VSDM_ASSIGN_OR_RETURN(ImageSet all, ReadDigitsUnguarded(absl::StrCat(paths.data_dir, "/images/digits8x8.csv.gz")));
    return SeededSplit(std::move(all), dataset, test_fraction, seed);
  }
  if (absl::StartsWith(dataset, "images:")) {
    const std::string path = dataset.substr(std::strlen("images:"));
    if (path.empty()) return absl::InvalidArgumentError("problem.dataset: images:<path> needs a path");
    VSDM_ASSIGN_OR_RETURN(ImageSet all, ReadImagesUnguarded(path));
    return SeededSplit(std::move(all), dataset, test_fraction, seed);
  }
  return absl::InvalidArgumentError(absl::StrCat("problem.dataset: \"", dataset,
                                                 "\" is not an image dataset (want fashion_mnist, digits or "
                                                 "images:<path>)"));
}

// Runs `fn`, turning a LibTorch or allocation exception into INTERNAL.
template <typename Fn>
auto Guard(const std::string& what, Fn fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("problem.dataset: ", what, ": ", e.what()));
  }
}

}  // namespace

ImageSet ImageSet::Select(const torch::Tensor& idx) const {
  ImageSet out;
  out.images = images.index_select(0, idx).contiguous();
  if (labels.defined()) out.labels = labels.index_select(0, idx).contiguous();
  out.source = source;
  return out;
}

bool IsImageDataset(const std::string& dataset) {
  return dataset == "fashion_mnist" || dataset == "digits" || absl::StartsWith(dataset, "images:");
}

absl::StatusOr<ImageData> LoadImageData(const std::string& dataset, const ImageDataPaths& paths, double test_fraction,
                                        uint64_t seed, int64_t train_limit) {
  return Guard(dataset, [&]() -> absl::StatusOr<ImageData> {
    VSDM_ASSIGN_OR_RETURN(ImageData data, LoadUnguarded(dataset, paths, test_fraction, seed));
    if (data.train.has_labels() && data.test.has_labels()) {  // before train_limit: the dataset's classes
      const int64_t hi = std::max(data.train.labels.max().item<int64_t>(), data.test.labels.max().item<int64_t>());
      data.classes = hi + 1;
    }
    if (train_limit > 0 && train_limit < data.train.size())
      data.train = data.train.Select(torch::arange(train_limit, torch::kInt64));
    return data;
  });
}

absl::StatusOr<ImageSet> ReadImages(const std::string& path) {
  return Guard(path, [&] { return ReadImagesUnguarded(path); });
}

absl::StatusOr<torch::Tensor> ReadIdxLabels(const std::string& path) {
  return Guard(path, [&]() -> absl::StatusOr<torch::Tensor> {
    VSDM_ASSIGN_OR_RETURN(std::string bytes, ReadMaybeGz(path));
    return DecodeIdxLabels(path, bytes);
  });
}

absl::StatusOr<ImageSet> ReadDigitsCsv(const std::string& path) {
  return Guard(path, [&] { return ReadDigitsUnguarded(path); });
}

torch::Tensor ToUnitRange(const torch::Tensor& images) {
  if (!images.defined()) return images;
  return images.add(1.0).mul_(0.5).clamp_(0.0, 1.0);
}

}  // namespace vsdm::core
