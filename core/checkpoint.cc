#include "core/checkpoint.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <sstream>

#include <ATen/CPUGeneratorImpl.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/train_protocol.h"

namespace vsdm::core {
namespace fs = std::filesystem;

namespace {
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

// Note [Checkpoint identity and digest]
// Besides the state, a checkpoint records under "meta.":
//   format     2 (a checkpoint without it was written before job identities)
//   job_uid    the job's unique id (Job.uid), "" when the writer had none
//   spec_hash  SpecHash of the spec it trained, "" when the writer had none
//   digest     CRC-32 of the state as Contents lists it: every tensor's name, dtype, shape and
//              bytes (network, EMA, optimiser moments and steps, A and the update rule's state,
//              RNG states, extras), the round and both ids, in a fixed order
// The ids bind a checkpoint to its job: job ids restart at job-00000001 with every fresh
// coordinator data dir while the work dir outlives it, so a new job used to resume (or, when the
// old one had finished, report as its own result) another job's model whenever the shapes
// matched. Resume refuses a checkpoint of another job or spec, as etcd refuses a data dir that
// records another cluster id.
// Why a digest on top of the container's CRC-32s (Note [Checkpoint container check]): those
// prove that every zip entry holds the bytes the zip writer was given, which refuses a torn,
// truncated or rotten file. They do not prove that what LibTorch's parse hands back is what was
// saved: which storage a key is bound to (data.pkl, a pickle LibTorch interprets), with which
// dtype, shape and offset, and the optimiser state it rebuilds by parameter index. The digest
// is computed from the live objects before serialisation and again from what a load has staged,
// before anything is committed: an end-to-end check of the whole round trip, the one place a
// checkpoint's meaning (not its bytes) is checked. The same staged state is checked for NaN and
// Inf: a diverged run checkpoints them faithfully, and resuming them only fails later.

using Contents = std::vector<std::pair<std::string, torch::Tensor>>;
constexpr int64_t kFormat = 2;

std::string Str(const c10::IValue& v) { return v.isString() ? v.toStringRef() : std::string(); }

// The moments and step of every parameter, by group and index (the order the optimiser's own
// serialisation uses; its state map is keyed by tensor address, which no two processes share).
void AddOptimizerState(torch::optim::AdamW& o, Contents& c) {
  for (size_t g = 0; g < o.param_groups().size(); ++g) {
    const auto& params = o.param_groups()[g].params();
    for (size_t i = 0; i < params.size(); ++i) {
      const std::string name = absl::StrCat("optimizer.", g, ".", i);
      auto it = o.state().find(c10::guts::to_string(params[i].unsafeGetTensorImpl()));
      if (it == o.state().end()) continue;
      const auto& st = static_cast<const torch::optim::AdamWParamState&>(*it->second);
      c.emplace_back(name + ".step", torch::tensor({st.step()}, torch::kLong));
      c.emplace_back(name + ".exp_avg", st.exp_avg());
      c.emplace_back(name + ".exp_avg_sq", st.exp_avg_sq());
      if (st.max_exp_avg_sq().defined()) c.emplace_back(name + ".max_exp_avg_sq", st.max_exp_avg_sq());
    }
  }
}

uint32_t Digest(const Contents& c, const CheckpointIdentity& id) {
  uLong crc = 0;
  const auto add = [&crc](const std::string& s) {
    const std::string framed = absl::StrCat(s.size(), ":", s);
    crc = crc32_z(crc, reinterpret_cast<const Bytef*>(framed.data()), framed.size());
  };
  add(id.job_uid);
  add(id.spec_hash);
  for (const auto& [name, t] : c) {
    add(name);
    add(c10::str(t.scalar_type(), t.sizes()));
    torch::Tensor b = t.detach().cpu().contiguous();
    crc = crc32_z(crc, static_cast<const Bytef*>(b.data_ptr()), b.numel() * b.element_size());
  }
  return static_cast<uint32_t>(crc);
}

// OK unless a floating-point tensor of `c` holds a NaN or an Inf; DATA_LOSS naming the first.
absl::Status CheckFinite(const Contents& c) {
  for (const auto& [name, t] : c) {
    if (!t.defined() || !t.is_floating_point()) continue;
    const int64_t bad = t.numel() - torch::isfinite(t).sum().item<int64_t>();
    if (bad > 0)
      return absl::DataLossError(absl::StrCat("checkpoint holds non-finite values: ", name, " (", bad, " of ",
                                              t.numel(), " values NaN or Inf)"));
  }
  return absl::OkStatus();
}

void WriteModule(torch::serialize::OutputArchive& ar, const std::string& prefix, torch::nn::Module& m,
                 Contents& c) {
  for (const auto& p : m.named_parameters()) {
    ar.write(prefix + p.key(), p.value().detach());
    c.emplace_back(prefix + p.key(), p.value().detach());
  }
}

// A checkpoint read into temporaries, checked, not yet applied to the live objects.
struct Staged {
  int64_t round = 0;
  CheckpointIdentity id;
  int64_t format = 1;
  uint32_t digest = 0;
  std::vector<torch::Tensor> net, ema, updater, generators, extras;
  std::unique_ptr<torch::optim::AdamW> optimizer;  // a scratch optimiser holding the loaded state
  std::unique_ptr<torch::serialize::InputArchive> optimizer_archive;
  int64_t steps = 0;
  Contents contents;  // everything above, as the digest and the finiteness check see it
};

// The parameters of `m` as stored under `prefix`, each checked against the live one's shape.
std::vector<torch::Tensor> StageModule(torch::serialize::InputArchive& ar, const std::string& prefix,
                                       torch::nn::Module& m, Contents& c) {
  std::vector<torch::Tensor> out;
  for (const auto& p : m.named_parameters()) {
    torch::Tensor t;
    ar.read(prefix + p.key(), t);
    TORCH_CHECK(t.sizes() == p.value().sizes(), "checkpoint shape mismatch for ", p.key());
    c.emplace_back(prefix + p.key(), t);
    out.push_back(t);
  }
  return out;
}

void ReadMeta(torch::serialize::InputArchive& ar, Staged& st) {
  c10::IValue v;
  if (!ar.try_read("meta.format", v)) return;  // format 1: no identity, no digest
  TORCH_CHECK(v.isInt(), "meta.format is not an integer");
  st.format = v.toInt();
  ar.read("meta.job_uid", v);
  st.id.job_uid = Str(v);
  ar.read("meta.spec_hash", v);
  st.id.spec_hash = Str(v);
  ar.read("meta.digest", v);
  TORCH_CHECK(v.isInt(), "meta.digest is not an integer");
  st.digest = static_cast<uint32_t>(v.toInt());
}

absl::Status CheckIdentity(const Staged& st, const CheckpointIdentity& expect) {
  const auto differs = [](const std::string& mine, const std::string& theirs) {
    return !mine.empty() && mine != theirs;
  };
  if (!differs(expect.job_uid, st.id.job_uid) && !differs(expect.spec_hash, st.id.spec_hash)) return absl::OkStatus();
  const auto shown = [](const std::string& v) { return v.empty() ? std::string("none") : absl::StrCat("'", v, "'"); };
  return absl::FailedPreconditionError(absl::StrCat(
      "checkpoint of another job: it records job uid ", shown(st.id.job_uid), " and spec hash ",
      shown(st.id.spec_hash), ", this job is uid ", shown(expect.job_uid), " with spec hash ",
      shown(expect.spec_hash), st.format < kFormat ? " (written before checkpoints recorded their job)" : ""));
}

// Reads everything `s` needs from `ar` into `st`, checking shapes; touches no live object.
void Stage(torch::serialize::InputArchive& ar, const TrainStateRefs& s, Staged& st) {
  torch::Tensor round;
  ar.read("round", round);
  st.round = round[0].item<int64_t>();
  st.contents.emplace_back("round", round);
  if (s.trainer) {
    st.net = StageModule(ar, "net.", *s.trainer->net(), st.contents);
    st.ema = StageModule(ar, "ema.", *s.trainer->ema_net(), st.contents);
    st.optimizer_archive = std::make_unique<torch::serialize::InputArchive>();
    ar.read("optimizer", *st.optimizer_archive);
    st.optimizer = std::make_unique<torch::optim::AdamW>(s.trainer->optimizer().param_groups());
    st.optimizer->load(*st.optimizer_archive);
    AddOptimizerState(*st.optimizer, st.contents);
    torch::Tensor steps;
    ar.read("trainer_steps", steps);
    st.steps = steps[0].item<int64_t>();
    st.contents.emplace_back("trainer_steps", steps);
  }
  if (s.updater) {
    const std::vector<torch::Tensor> live = s.updater->State();
    for (size_t i = 0; i < live.size(); ++i) {
      torch::Tensor t;
      ar.read(absl::StrCat("variational.", i), t);
      TORCH_CHECK(t.sizes() == live[i].sizes(), "checkpoint shape mismatch for variational.", i);
      st.contents.emplace_back(absl::StrCat("variational.", i), t);
      st.updater.push_back(t);
    }
  }
  for (size_t i = 0; i < s.generators.size(); ++i) {
    torch::Tensor g;
    ar.read(absl::StrCat("rng.", i), g);
    at::make_generator<at::CPUGeneratorImpl>().set_state(g);  // throws for a state it cannot hold
    st.contents.emplace_back(absl::StrCat("rng.", i), g);
    st.generators.push_back(g);
  }
  for (const auto& [name, t] : s.extras) {
    torch::Tensor x;
    ar.read("extra." + name, x);
    TORCH_CHECK(!t->defined() || x.sizes() == t->sizes(), "checkpoint shape mismatch for ", name);
    st.contents.emplace_back("extra." + name, x);
    st.extras.push_back(x);
  }
}

// Applies a staged checkpoint to the live objects (nothing here can fail on what Stage accepted).
void Commit(Staged& st, const TrainStateRefs& s) {
  torch::NoGradGuard g;
  if (s.trainer) {
    auto net = s.trainer->net()->parameters(), ema = s.trainer->ema_net()->parameters();
    for (size_t i = 0; i < net.size(); ++i) net[i].copy_(st.net[i]);
    for (size_t i = 0; i < ema.size(); ++i) ema[i].copy_(st.ema[i]);
    s.trainer->optimizer().load(*st.optimizer_archive);
    s.trainer->set_steps(st.steps);
  }
  if (s.updater) s.updater->LoadState(st.updater);
  for (size_t i = 0; i < s.generators.size(); ++i) s.generators[i]->set_state(st.generators[i]);
  for (size_t i = 0; i < s.extras.size(); ++i) *s.extras[i].second = st.extras[i];
}
}  // namespace

absl::StatusOr<std::string> SerializeCheckpoint(int64_t round, const TrainStateRefs& s, const CheckpointIdentity& id) {
  std::ostringstream bytes;
  try {
    torch::serialize::OutputArchive ar;
    Contents c;
    torch::Tensor r = torch::tensor({round}, torch::kLong);
    ar.write("round", r);
    c.emplace_back("round", r);
    if (s.trainer) {
      WriteModule(ar, "net.", *s.trainer->net(), c);
      WriteModule(ar, "ema.", *s.trainer->ema_net(), c);
      torch::serialize::OutputArchive opt;
      s.trainer->optimizer().save(opt);
      ar.write("optimizer", opt);
      AddOptimizerState(s.trainer->optimizer(), c);
      torch::Tensor steps = torch::tensor({s.trainer->steps()}, torch::kLong);
      ar.write("trainer_steps", steps);
      c.emplace_back("trainer_steps", steps);
    }
    if (s.updater) {
      auto st = s.updater->State();
      for (size_t i = 0; i < st.size(); ++i) {
        ar.write(absl::StrCat("variational.", i), st[i]);
        c.emplace_back(absl::StrCat("variational.", i), st[i]);
      }
    }
    for (size_t i = 0; i < s.generators.size(); ++i) {
      torch::Tensor g = s.generators[i]->get_state();
      ar.write(absl::StrCat("rng.", i), g);
      c.emplace_back(absl::StrCat("rng.", i), g);
    }
    for (const auto& [name, t] : s.extras) {
      ar.write("extra." + name, *t);
      c.emplace_back("extra." + name, *t);
    }
    ar.write("meta.format", c10::IValue(kFormat));
    ar.write("meta.job_uid", c10::IValue(id.job_uid));
    ar.write("meta.spec_hash", c10::IValue(id.spec_hash));
    ar.write("meta.digest", c10::IValue(static_cast<int64_t>(Digest(c, id))));
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

absl::Status SaveCheckpoint(const std::string& dir, int64_t round, const TrainStateRefs& s, int keep,
                            const CheckpointIdentity& id) {
  VSDM_ASSIGN_OR_RETURN(std::string bytes, SerializeCheckpoint(round, s, id));
  return WriteCheckpointFile(dir, round, bytes, keep);
}

std::optional<std::pair<int64_t, std::string>> FindLatestCheckpoint(const std::string& dir) {
  return train_protocol::NewestCheckpointFile(dir);
}

absl::StatusOr<int64_t> LoadCheckpointBytes(const std::string& bytes, const TrainStateRefs& s,
                                            const CheckpointIdentity& expect) {
  VSDM_RETURN_IF_ERROR(CheckZipContainer(bytes));  // Note [Checkpoint container check]
  Staged st;
  try {
    torch::serialize::InputArchive ar;
    ar.load_from(bytes.data(), bytes.size());
    ReadMeta(ar, st);
    // Another job's checkpoint is refused before its state is even read (Note [Checkpoint identity and digest]).
    VSDM_RETURN_IF_ERROR(CheckIdentity(st, expect));
    Stage(ar, s, st);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint does not match this job: ", e.what()));
  }
  if (st.format >= kFormat && Digest(st.contents, st.id) != st.digest)
    return Corrupt(absl::StrFormat("the state read back does not match its digest (recorded %08x, read %08x)",
                                   st.digest, Digest(st.contents, st.id)));
  VSDM_RETURN_IF_ERROR(CheckFinite(st.contents));
  try {
    Commit(st, s);
  } catch (const std::exception& e) {  // not expected: Stage read and checked everything
    return absl::InternalError(absl::StrCat("checkpoint commit: ", e.what()));
  }
  return st.round;
}

absl::StatusOr<int64_t> LoadCheckpoint(const std::string& path, const TrainStateRefs& s,
                                       const CheckpointIdentity& expect) {
  std::string bytes;
  VSDM_ASSIGN_OR_RETURN(bytes, ReadFile(path));
  auto r = LoadCheckpointBytes(bytes, s, expect);
  if (!r.ok()) return absl::Status(r.status().code(), absl::StrCat(path, ": ", r.status().message()));
  return r;
}

CheckpointPick PickCheckpoint(const std::string& dir,
                              const std::function<absl::StatusOr<int64_t>(const std::string& bytes)>& load) {
  std::vector<std::pair<int64_t, fs::path>> all;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const auto round = train_protocol::CheckpointRound(e.path().filename().string());
    if (round && e.is_regular_file(ec)) all.emplace_back(*round, e.path());
  }
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  CheckpointPick pick;
  for (const auto& [round, path] : all) {
    absl::StatusOr<std::string> bytes = ReadFile(path.string());
    absl::StatusOr<int64_t> loaded = bytes.ok() ? load(*bytes) : absl::StatusOr<int64_t>(bytes.status());
    if (loaded.ok()) {
      pick.round = *loaded;
      pick.path = path.string();
      pick.bytes = std::move(*bytes);
      return pick;
    }
    std::string reason(loaded.status().message());
    fs::rename(path, fs::path(path.string() + ".bad"), ec);
    if (ec) absl::StrAppend(&reason, " (could not rename it to ", path.filename().string(), ".bad: ", ec.message(), ")");
    pick.skipped.push_back({path.filename().string(), std::move(reason)});
  }
  return pick;
}

std::vector<std::string> DescribeSkips(const CheckpointPick& pick) {
  const std::string then = pick.path.empty()
                               ? std::string("starting from round 0")
                               : absl::StrCat("resuming from ", fs::path(pick.path).filename().string());
  std::vector<std::string> lines;
  for (const auto& s : pick.skipped)
    lines.push_back(absl::StrCat("skipped checkpoint ", s.file, ": ", s.reason, "; ", then));
  return lines;
}

}  // namespace vsdm::core
