#include "core/npy.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace vsdm::core {

std::string EncodeNpy(const torch::Tensor& t_in) {
  torch::Tensor t = t_in.contiguous().cpu();
  TORCH_CHECK(t.scalar_type() == torch::kFloat32 || t.scalar_type() == torch::kFloat64, "npy: float32/float64 only");
  std::string shape;
  for (int64_t i = 0; i < t.dim(); ++i) absl::StrAppend(&shape, t.size(i), ",");
  if (t.dim() > 1) shape.pop_back();
  std::string header = absl::StrCat("{'descr': '", t.scalar_type() == torch::kFloat32 ? "<f4" : "<f8",
                                    "', 'fortran_order': False, 'shape': (", shape, "), }");
  // magic (6) + version (2) + header length (2) + header + '\n', padded to 64 bytes.
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::string out("\x93NUMPY\x01\x00", 8);
  uint16_t len = static_cast<uint16_t>(header.size());
  out.push_back(static_cast<char>(len & 0xff));
  out.push_back(static_cast<char>(len >> 8));
  out += header;
  out.append(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
  return out;
}

absl::Status WriteNpy(const std::string& path, const torch::Tensor& t) { return AtomicWriteFile(path, EncodeNpy(t)); }

namespace {

// INVALID_ARGUMENT "<path>: <what>".
template <typename... Args>
absl::Status Bad(const std::string& path, const Args&... what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what...));
}

// The position just after `'key':` (and spaces) in the header dict `h`, or npos.
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

// The dimensions of the header's 'shape' tuple: "()", "(3,)", "(2, 3)" (Note [npy header parsing]).
absl::StatusOr<std::vector<int64_t>> ParseShape(const std::string& path, absl::string_view header) {
  const size_t at = FindValue(header, "shape");
  const size_t close =
      at == absl::string_view::npos || header[at] != '(' ? absl::string_view::npos : header.find(')', at);
  if (close == absl::string_view::npos) return Bad(path, "no shape");
  std::vector<int64_t> shape;
  const std::vector<absl::string_view> parts = absl::StrSplit(header.substr(at + 1, close - at - 1), ',');
  for (size_t i = 0; i < parts.size(); ++i) {
    const absl::string_view d = absl::StripAsciiWhitespace(parts[i]);
    if (d.empty() && (parts.size() == 1 || (i + 1 == parts.size() && i > 0))) break;  // "()" or "(3,)"
    int64_t v;
    if (d.size() > 12 || !absl::SimpleAtoi(d, &v) || v < 0) return Bad(path, "shape '", d, "' is not a dimension");
    shape.push_back(v);
  }
  return shape;
}

// The element count of `shape`, or INVALID_ARGUMENT when it exceeds the `have` elements present
// (checked by division, so it cannot overflow).
absl::StatusOr<uint64_t> CountElements(const std::string& path, const std::vector<int64_t>& shape, uint64_t have) {
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return 0;
  uint64_t numel = 1;
  for (int64_t s : shape) {
    if (numel > have / static_cast<uint64_t>(s)) return Bad(path, "data shorter than its shape");
    numel *= static_cast<uint64_t>(s);
  }
  if (numel > have) return Bad(path, "data shorter than its shape");  // a 0-d array needs one element
  return numel;
}

}  // namespace

// Note [npy header parsing]: the header dict is scanned by hand, not with std::regex (libstdc++'s
// regex recurses once per character matched, so a long header overflowed the stack: found by
// fuzz/npy_fuzzer.cc). Every dimension must be a plain integer of at most 12 digits, and the
// element count is checked against the bytes present (by division, so it cannot overflow) before
// anything is allocated.
absl::StatusOr<torch::Tensor> ReadNpy(const std::string& path) {
  VSDM_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) return Bad(path, "not a .npy file");
  const int major = static_cast<unsigned char>(bytes[6]);
  uint64_t hlen;
  size_t hstart;
  if (major == 1) {
    hlen = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    hstart = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) return Bad(path, "truncated");
    hlen = 0;
    for (int i = 3; i >= 0; --i) hlen = (hlen << 8) | static_cast<unsigned char>(bytes[8 + i]);
    hstart = 12;
  } else {
    return Bad(path, ".npy format version ", major, " not supported (1.0, 2.0 or 3.0)");
  }
  if (hlen > bytes.size() - hstart) return Bad(path, "truncated");
  const absl::string_view header(bytes.data() + hstart, hlen);
  const size_t data_start = hstart + hlen;

  size_t at = FindValue(header, "descr");
  const size_t quote_end = at == absl::string_view::npos || (header[at] != '\'' && header[at] != '"')
                               ? absl::string_view::npos
                               : header.find(header[at], at + 1);
  if (quote_end == absl::string_view::npos) return Bad(path, "only float32/float64 .npy supported (no descr)");
  const absl::string_view descr = header.substr(at + 1, quote_end - at - 1);
  if (descr.size() != 3 || (descr[0] != '<' && descr[0] != '|' && descr[0] != '=') || descr[1] != 'f' ||
      (descr[2] != '4' && descr[2] != '8')) {
    return Bad(path, "only float32/float64 .npy supported (descr '", descr, "')");
  }
  const bool f64 = descr[2] == '8';
  at = FindValue(header, "fortran_order");
  if (at != absl::string_view::npos && header.substr(at, 4) == "True") return Bad(path, "fortran order not supported");

  VSDM_ASSIGN_OR_RETURN(const std::vector<int64_t> shape, ParseShape(path, header));
  const size_t esize = f64 ? 8 : 4;
  VSDM_ASSIGN_OR_RETURN(const uint64_t numel, CountElements(path, shape, (bytes.size() - data_start) / esize));
  try {
    torch::Tensor t = torch::empty(shape, f64 ? torch::kFloat64 : torch::kFloat32);
    if (numel > 0) std::memcpy(t.data_ptr(), bytes.data() + data_start, numel * esize);
    return t;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(path, ": ", e.what()));
  }
}

}  // namespace vsdm::core
