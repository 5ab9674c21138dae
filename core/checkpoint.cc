#include "core/checkpoint.h"

#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/train_protocol.h"

namespace vsdm::core {
namespace fs = std::filesystem;

namespace {
void WriteModule(torch::serialize::OutputArchive& ar, const std::string& prefix, torch::nn::Module& m) {
  for (const auto& p : m.named_parameters()) ar.write(prefix + p.key(), p.value().detach());
}
// Note [Checkpoint container check]: a checkpoint is a LibTorch archive, a zip file. LibTorch
// 1.13 reads it with miniz built without CRC checks (MINIZ_DISABLE_ZIP_READER_CRC32_CHECKS),
// allocates each entry's declared size before reading it, and compiles the TorchScript source
// the archive carries (code/*.py): one flipped bit in that source made LibTorch's type parser
// crash the process (SEGV; found by fuzz/checkpoint_fuzzer.cc, issue 16). So before LibTorch sees
// the bytes, CheckZipContainer walks the zip's central directory and refuses, naming the entry,
// anything a torn write, a truncation or bit rot can produce: an entry outside the file, sizes
// that do not fit it, a method other than stored or deflate, data that fails its CRC-32, and a
// name whose two copies (central directory, local header) differ.
// What it cannot refuse is a crafted archive with consistent CRCs: the checkpoint directory must
// be as trusted as the binaries (only the job's own ranks write it).

// Little-endian fields of `b` at `at`. REQUIRES: at + width <= b.size().
uint64_t Le(const std::string& b, size_t at, int width) {
  uint64_t v = 0;
  for (int i = width - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b[at + i]);
  return v;
}

template <typename... Args>
absl::Status Corrupt(const Args&... what) {
  return absl::InvalidArgumentError(absl::StrCat("corrupt checkpoint: ", what...));
}

// The CRC-32 of `size` bytes at `data`, inflated first when `deflated` (raw deflate that must
// yield exactly `expect_size` bytes), or an error naming `name`. Streams: allocates nothing
// proportional to the declared size.
absl::StatusOr<uint32_t> EntryCrc(const std::string& name, const char* data, uint64_t size, bool deflated,
                                  uint64_t expect_size) {
  if (!deflated) return static_cast<uint32_t>(crc32_z(0, reinterpret_cast<const Bytef*>(data), size));
  z_stream zs;
  std::memset(&zs, 0, sizeof(zs));
  if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) return absl::InternalError("checkpoint: inflateInit2 failed");
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data));
  zs.avail_in = static_cast<uInt>(size);  // REQUIRES: size < 2^32 (the caller checks)
  unsigned char chunk[1 << 14];
  uint64_t out = 0;
  uLong crc = 0;
  int rc = Z_OK;
  while (rc == Z_OK) {
    zs.next_out = chunk;
    zs.avail_out = sizeof(chunk);
    rc = inflate(&zs, Z_NO_FLUSH);
    const uint64_t got = sizeof(chunk) - zs.avail_out;
    crc = crc32_z(crc, chunk, got);
    out += got;
    if (out > expect_size) break;
  }
  inflateEnd(&zs);
  if (rc != Z_STREAM_END || out != expect_size)
    return Corrupt("entry '", name, "' does not inflate to its declared ", expect_size, " bytes");
  return static_cast<uint32_t>(crc);
}

constexpr size_t kZipEndRecord = 22, kZipCentralHeader = 46, kZipLocalHeader = 30;

struct CentralDirectory {
  uint64_t entries = 0, size = 0, at = 0;
};

// Where the zip's central directory lies, from its end record (zip64's when saturated), checked
// to lie inside `b`.
absl::StatusOr<CentralDirectory> FindCentralDirectory(const std::string& b) {
  if (b.size() < kZipEndRecord) return Corrupt("not a zip archive (", b.size(), " bytes)");
  // The end-of-central-directory record: the last signature within the comment's reach.
  size_t eocd = std::string::npos;
  const size_t lowest = b.size() > kZipEndRecord + 0xffff ? b.size() - kZipEndRecord - 0xffff : 0;
  for (size_t at = b.size() - kZipEndRecord + 1; at-- > lowest;) {
    if (Le(b, at, 4) == 0x06054b50 && at + kZipEndRecord + Le(b, at + 20, 2) == b.size()) {
      eocd = at;
      break;
    }
  }
  if (eocd == std::string::npos) return Corrupt("not a zip archive (no end-of-central-directory record)");
  CentralDirectory cd{Le(b, eocd + 10, 2), Le(b, eocd + 12, 4), Le(b, eocd + 16, 4)};
  if (cd.entries == 0xffff || cd.size == 0xffffffff || cd.at == 0xffffffff) {  // zip64: its locator sits just before
    if (eocd < 20 || Le(b, eocd - 20, 4) != 0x07064b50) return Corrupt("zip64 archive without its locator");
    const uint64_t z64 = Le(b, eocd - 20 + 8, 8);
    if (b.size() < 56 || z64 > b.size() - 56 || Le(b, z64, 4) != 0x06064b50)
      return Corrupt("zip64 end record outside the file");
    cd = {Le(b, z64 + 32, 8), Le(b, z64 + 40, 8), Le(b, z64 + 48, 8)};
  }
  if (cd.at > b.size() || cd.size > b.size() - cd.at || cd.entries > cd.size / kZipCentralHeader)
    return Corrupt("central directory (", cd.entries, " entries, ", cd.size, " bytes at ", cd.at, ") outside the file");
  return cd;
}

// Checks the `i`-th central directory entry, at `p`, and its data (Note [Checkpoint container
// check]); returns where the next entry starts.
absl::StatusOr<size_t> CheckZipEntry(const std::string& b, const CentralDirectory& cd, size_t p, uint64_t i) {
  const uint64_t cd_end = cd.at + cd.size;
  if (p + kZipCentralHeader > cd_end || Le(b, p, 4) != 0x02014b50)
    return Corrupt("central directory entry ", i, " is damaged");
  const uint64_t flags = Le(b, p + 8, 2), method = Le(b, p + 10, 2), crc = Le(b, p + 16, 4);
  uint64_t csize = Le(b, p + 20, 4), usize = Le(b, p + 24, 4), local = Le(b, p + 42, 4);
  const size_t name_len = Le(b, p + 28, 2), extra_len = Le(b, p + 30, 2), comment_len = Le(b, p + 32, 2);
  const size_t next = p + kZipCentralHeader + name_len + extra_len + comment_len;
  if (next > cd_end) return Corrupt("central directory entry ", i, " runs past the directory");
  const std::string name = b.substr(p + kZipCentralHeader, name_len);
  // zip64 extended information (tag 1): the 8-byte values of the fields saturated above, in order.
  for (size_t e = p + kZipCentralHeader + name_len, end = e + extra_len; e + 4 <= end;) {
    const size_t tag = Le(b, e, 2), len = Le(b, e + 2, 2);
    if (e + 4 + len > end) return Corrupt("entry '", name, "' has a damaged extra field");
    size_t q = e + 4;
    for (uint64_t* field : {&usize, &csize, &local}) {
      if (tag == 1 && *field == 0xffffffff) {
        if (q + 8 > e + 4 + len) return Corrupt("entry '", name, "' has a short zip64 field");
        *field = Le(b, q, 8);
        q += 8;
      }
    }
    e += 4 + len;
  }
  if (flags & 1) return Corrupt("entry '", name, "' is encrypted");
  if (method != 0 && method != 8) return Corrupt("entry '", name, "' uses compression method ", method);
  if (local > cd.at || kZipLocalHeader > cd.at - local || Le(b, local, 4) != 0x04034b50)
    return Corrupt("entry '", name, "' has no local header at ", local);
  const uint64_t local_name_len = Le(b, local + 26, 2);
  const uint64_t data = local + kZipLocalHeader + local_name_len + Le(b, local + 28, 2);
  if (data > cd.at || csize > cd.at - data || (method == 8 && csize >= (uint64_t{1} << 32)))
    return Corrupt("entry '", name, "' (", csize, " bytes at ", data, ") runs past the file's data");
  if (b.compare(local + kZipLocalHeader, local_name_len, name) != 0)  // names carry no CRC: compare both copies
    return Corrupt("entry '", name, "' has another name in its local header");
  if (method == 0 && usize != csize)
    return Corrupt("entry '", name, "' is stored but declares ", usize, " bytes in ", csize);
  VSDM_ASSIGN_OR_RETURN(const uint32_t actual, EntryCrc(name, b.data() + data, csize, method == 8, usize));
  if (actual != crc)
    return Corrupt(absl::StrFormat("entry '%s' fails its CRC-32 (recorded %08x, data %08x)", name, crc, actual));
  return next;
}

// Note [Checkpoint container check]. OK when `b` is a zip archive every entry of which lies inside
// it and matches its CRC-32; INVALID_ARGUMENT "corrupt checkpoint: <what>" otherwise.
absl::Status CheckZipContainer(const std::string& b) {
  VSDM_ASSIGN_OR_RETURN(const CentralDirectory cd, FindCentralDirectory(b));
  size_t p = cd.at;
  for (uint64_t i = 0; i < cd.entries; ++i) {
    VSDM_ASSIGN_OR_RETURN(p, CheckZipEntry(b, cd, p, i));
  }
  return absl::OkStatus();
}

void ReadModule(torch::serialize::InputArchive& ar, const std::string& prefix, torch::nn::Module& m) {
  torch::NoGradGuard g;
  for (auto& p : m.named_parameters()) {
    torch::Tensor t;
    ar.read(prefix + p.key(), t);
    TORCH_CHECK(t.sizes() == p.value().sizes(), "checkpoint shape mismatch for ", p.key());
    p.value().copy_(t);
  }
}
}  // namespace

absl::StatusOr<std::string> SerializeCheckpoint(int64_t round, const TrainStateRefs& s) {
  std::ostringstream bytes;
  try {
    torch::serialize::OutputArchive ar;
    ar.write("round", torch::tensor({round}, torch::kLong));
    if (s.trainer) {
      WriteModule(ar, "net.", *s.trainer->net());
      WriteModule(ar, "ema.", *s.trainer->ema_net());
      torch::serialize::OutputArchive opt;
      s.trainer->optimizer().save(opt);
      ar.write("optimizer", opt);
      ar.write("trainer_steps", torch::tensor({s.trainer->steps()}, torch::kLong));
    }
    if (s.updater) {
      auto st = s.updater->State();
      for (size_t i = 0; i < st.size(); ++i) ar.write(absl::StrCat("variational.", i), st[i]);
    }
    for (size_t i = 0; i < s.generators.size(); ++i) ar.write(absl::StrCat("rng.", i), s.generators[i]->get_state());
    for (const auto& [name, t] : s.extras) ar.write("extra." + name, *t);
    ar.save_to(bytes);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("checkpoint serialise: ", e.what()));
  }
  return bytes.str();
}

absl::Status WriteCheckpointFile(const std::string& dir, int64_t round, const std::string& bytes, int keep) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("create ", dir, ": ", ec.message()));
  VSDM_RETURN_IF_ERROR(AtomicWriteFile((fs::path(dir) / train_protocol::CheckpointFileName(round)).string(), bytes));
  train_protocol::PruneCheckpointFiles(dir, keep);
  return absl::OkStatus();
}

absl::Status SaveCheckpoint(const std::string& dir, int64_t round, const TrainStateRefs& s, int keep) {
  VSDM_ASSIGN_OR_RETURN(std::string bytes, SerializeCheckpoint(round, s));
  return WriteCheckpointFile(dir, round, bytes, keep);
}

std::optional<std::pair<int64_t, std::string>> FindLatestCheckpoint(const std::string& dir) {
  return train_protocol::NewestCheckpointFile(dir);
}

absl::StatusOr<int64_t> LoadCheckpointBytes(const std::string& bytes, const TrainStateRefs& s) {
  VSDM_RETURN_IF_ERROR(CheckZipContainer(bytes));  // Note [Checkpoint container check]
  try {
    torch::serialize::InputArchive ar;
    ar.load_from(bytes.data(), bytes.size());
    torch::Tensor round;
    ar.read("round", round);
    if (s.trainer) {
      ReadModule(ar, "net.", *s.trainer->net());
      ReadModule(ar, "ema.", *s.trainer->ema_net());
      torch::serialize::InputArchive opt;
      ar.read("optimizer", opt);
      s.trainer->optimizer().load(opt);
      torch::Tensor steps;
      ar.read("trainer_steps", steps);
      s.trainer->set_steps(steps[0].item<int64_t>());
    }
    if (s.updater) {
      std::vector<torch::Tensor> st(s.updater->State().size());
      for (size_t i = 0; i < st.size(); ++i) ar.read(absl::StrCat("variational.", i), st[i]);
      s.updater->LoadState(st);
    }
    for (size_t i = 0; i < s.generators.size(); ++i) {
      torch::Tensor g;
      ar.read(absl::StrCat("rng.", i), g);
      s.generators[i]->set_state(g);
    }
    for (const auto& [name, t] : s.extras) ar.read("extra." + name, *t);
    return round[0].item<int64_t>();
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint does not match this job: ", e.what()));
  }
}

absl::StatusOr<int64_t> LoadCheckpoint(const std::string& path, const TrainStateRefs& s) {
  std::string bytes;
  VSDM_ASSIGN_OR_RETURN(bytes, ReadFile(path));
  auto r = LoadCheckpointBytes(bytes, s);
  if (!r.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", r.status().message()));
  return r;
}

}  // namespace vsdm::core
