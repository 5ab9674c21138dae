#include "core/npy.h"

#include <cstring>
#include <regex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
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

absl::StatusOr<torch::Tensor> ReadNpy(const std::string& path) {
  VSDM_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0)
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a .npy file"));
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t hlen, hstart;
  if (major == 1) {
    hlen = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    hstart = 10;
  } else {
    if (bytes.size() < 12) return absl::InvalidArgumentError(absl::StrCat(path, ": truncated"));
    uint32_t l;
    std::memcpy(&l, bytes.data() + 8, 4);
    hlen = l;
    hstart = 12;
  }
  if (bytes.size() < hstart + hlen) return absl::InvalidArgumentError(absl::StrCat(path, ": truncated"));
  std::string header = bytes.substr(hstart, hlen);
  std::smatch m;
  if (!std::regex_search(header, m, std::regex("'descr':\\s*'([<|=]f[48])'")))
    return absl::InvalidArgumentError(absl::StrCat(path, ": only float32/float64 .npy supported"));
  const bool f64 = m[1].str().back() == '8';
  if (header.find("'fortran_order': True") != std::string::npos)
    return absl::InvalidArgumentError(absl::StrCat(path, ": fortran order not supported"));
  if (!std::regex_search(header, m, std::regex("'shape':\\s*\\(([^)]*)\\)")))
    return absl::InvalidArgumentError(absl::StrCat(path, ": no shape"));
  std::vector<int64_t> shape;
  std::string dims = m[1].str();
  std::regex num("\\d+");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), num); it != std::sregex_iterator(); ++it)
    shape.push_back(std::stoll(it->str()));
  int64_t numel = 1;
  for (int64_t s : shape) numel *= s;
  const size_t esize = f64 ? 8 : 4;
  const size_t data_start = hstart + hlen;
  if (bytes.size() - data_start < static_cast<size_t>(numel) * esize)
    return absl::InvalidArgumentError(absl::StrCat(path, ": data shorter than its shape"));
  torch::Tensor t = torch::empty(shape, f64 ? torch::kFloat64 : torch::kFloat32);
  std::memcpy(t.data_ptr(), bytes.data() + data_start, numel * esize);
  return t;
}

}  // namespace vsdm::core
