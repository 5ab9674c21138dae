#include "core/checkpoint.h"

#include <filesystem>
#include <regex>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace vsdm::core {
namespace fs = std::filesystem;

namespace {
void WriteModule(torch::serialize::OutputArchive& ar, const std::string& prefix, torch::nn::Module& m) {
  for (const auto& p : m.named_parameters()) ar.write(prefix + p.key(), p.value().detach());
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
  VSDM_RETURN_IF_ERROR(AtomicWriteFile((fs::path(dir) / absl::StrFormat("ckpt-%08d.pt", round)).string(), bytes));
  // Keep the newest `keep`.
  std::vector<std::pair<int64_t, fs::path>> all;
  std::regex re("ckpt-(\\d+)\\.pt");
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::smatch m;
    std::string name = e.path().filename().string();
    if (std::regex_match(name, m, re)) all.emplace_back(std::stoll(m[1]), e.path());
  }
  std::sort(all.begin(), all.end());
  for (size_t i = 0; i + keep < all.size(); ++i) fs::remove(all[i].second, ec);
  return absl::OkStatus();
}

absl::Status SaveCheckpoint(const std::string& dir, int64_t round, const TrainStateRefs& s, int keep) {
  VSDM_ASSIGN_OR_RETURN(std::string bytes, SerializeCheckpoint(round, s));
  return WriteCheckpointFile(dir, round, bytes, keep);
}

std::optional<std::pair<int64_t, std::string>> FindLatestCheckpoint(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return std::nullopt;
  std::optional<std::pair<int64_t, std::string>> best;
  std::regex re("ckpt-(\\d+)\\.pt");
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::smatch m;
    std::string name = e.path().filename().string();
    if (!std::regex_match(name, m, re)) continue;
    int64_t r = std::stoll(m[1]);
    if (!best || r > best->first) best = std::make_pair(r, e.path().string());
  }
  return best;
}

absl::StatusOr<int64_t> LoadCheckpointBytes(const std::string& bytes, const TrainStateRefs& s) {
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
