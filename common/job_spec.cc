#include "common/job_spec.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/format.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "yaml-cpp/yaml.h"

namespace vsdm {

void VisitJobSpecFields(JobSpec& s, JobSpecVisitor& v) {
  v.String("name", s.name, 128);
  v.String("owner", s.owner, 64);
  v.Int("priority", s.priority, -1000, 1000);
  v.Choice("problem.dataset", s.problem.dataset,
           {"spiral", "checkerboard", "gaussian", "moons", "eight_gaussians", "fashion_mnist", "digits",
            "images:", "weather", "var1", "series:"});
  v.DoubleList("problem.scale", s.problem.scale, 1, 2, 1e-3, 1e3);
  v.Double("problem.test_fraction", s.problem.test_fraction, 0.01, 0.5);
  v.Int("problem.train_limit", s.problem.train_limit, 0, int64_t{1} << 40);
  v.Int("problem.context", s.problem.context, 1, 100000);
  v.Int("problem.horizon", s.problem.horizon, 1, 10000);
  v.String("problem.columns", s.problem.columns, 4096);
  v.String("problem.log1p", s.problem.log1p, 4096);
  v.String("problem.test_start", s.problem.test_start, 64);
  v.Int("problem.eval_stride", s.problem.eval_stride, 1, 1000000);
  v.Choice("method", s.method, {"vsdm", "dsm", "vsmd"});
  v.Double("diffusion.beta_min", s.diffusion.beta_min, 1e-4, 100.0);
  v.Double("diffusion.beta_max", s.diffusion.beta_max, 1e-3, 1000.0);
  v.Double("diffusion.beta_r", s.diffusion.beta_r, 0.0, 10.0);
  v.Double("diffusion.t_min", s.diffusion.t_min, 1e-6, 0.5);
  v.Int("diffusion.steps", s.diffusion.steps, 2, 10000);
  v.Choice("variational.form", s.variational.form, {"full", "diagonal"});
  v.Choice("variational.update", s.variational.update, {"exact", "sa", "adam"});
  v.Double("variational.interact", s.variational.interact, 0.0, 2.0);
  v.Choice("variational.prior", s.variational.prior, {"adaptive", "standard", "conditional"});
  v.Int("variational.trajectories", s.variational.trajectories, 1, 1000000);
  v.Double("variational.lr", s.variational.lr, 1e-8, 10.0);
  v.Double("variational.decay", s.variational.decay, 0.0, 1.0);
  v.Double("variational.d_min", s.variational.d_min, 1e-6, 1.0);
  v.Bool("variational.async", s.variational.async);
  v.Int("variational.adam_steps", s.variational.adam_steps, 1, 100000);
  v.Int("variational.adam_batch", s.variational.adam_batch, 1, 1000000);
  v.Double("momentum.beta", s.momentum.beta, 0.01, 1000.0);
  v.Double("momentum.gamma", s.momentum.gamma, 0.01, 100.0);
  v.Double("momentum.damping", s.momentum.damping, 0.05, 1.0);
  v.Double("momentum.c_init", s.momentum.c_init, -2.0, 0.5);
  v.Choice("model.arch", s.model.arch, {"toy_resnet", "mlp", "unet", "forecast"});
  v.Int("model.hidden", s.model.hidden, 8, 4096);
  v.Choice("model.parameterization", s.model.parameterization, {"policy", "eps"});
  v.Bool("model.input_scaling", s.model.input_scaling);
  v.Int("model.channels", s.model.channels, 4, 1024);
  v.DoubleList("model.channel_mult", s.model.channel_mult, 1, 5, 1, 16);
  v.Int("model.res_blocks", s.model.res_blocks, 1, 8);
  v.Bool("model.attention", s.model.attention);
  v.Double("model.dropout", s.model.dropout, 0.0, 0.9);
  v.Int("train.rounds", s.train.rounds, 1, 1000000);
  v.Int("train.steps_per_round", s.train.steps_per_round, 1, 10000000);
  v.Int("train.batch_points", s.train.batch_points, 1, 1048576);
  v.Int("train.times_per_point", s.train.times_per_point, 1, 1024);
  v.Double("train.lr", s.train.lr, 1e-8, 1.0);
  v.Double("train.ema", s.train.ema, 0.0, 0.999999);
  v.Int("train.seed", s.train.seed, 0, (int64_t{1} << 62));
  v.Int("train.checkpoint_every", s.train.checkpoint_every, 1, 1000000);
  v.Double("train.grad_clip", s.train.grad_clip, 0.0, 1e6);
  v.Choice("train.precision", s.train.precision, {"fp32", "bf16"});
  v.Int("sample.n", s.sample.n, 1, 10000000);
  v.Choice("sample.solver", s.sample.solver, {"heun", "euler", "sde"});
  v.String("sample.classifier", s.sample.classifier, 4096);
  v.Int("resources.trainers", s.resources.trainers, 1, 1024);
  v.Choice("resources.device", s.resources.device, {"cpu", "cuda"});
  v.Int("resources.max_restarts", s.resources.max_restarts, 0, 100);
  v.Int("resources.min_trainers", s.resources.min_trainers, 0, 1024);
}

namespace {

std::string FormatDouble(double x) { return absl::StrFormat("%g", x); }

// Checks every field's range; records the first violation.
class RangeChecker : public JobSpecVisitor {
 public:
  absl::Status status;

  void Int(const char* path, int64_t& v, int64_t lo, int64_t hi) override {
    if (v < lo || v > hi) Fail(absl::StrCat(path, ": must be in [", lo, ", ", hi, "], got ", v));
  }
  void Double(const char* path, double& v, double lo, double hi) override {
    if (!(v >= lo && v <= hi))
      Fail(absl::StrCat(path, ": must be in [", FormatDouble(lo), ", ", FormatDouble(hi), "], got ", FormatDouble(v)));
  }
  void Bool(const char*, bool&) override {}
  void String(const char* path, std::string& v, size_t max_len) override {
    if (v.size() > max_len)
      return Fail(absl::StrCat(path, ": must be at most ", max_len, " characters, got ", v.size()));
    FreeText(path, v);
  }
  void Choice(const char* path, std::string& v, const std::vector<std::string>& choices) override {
    std::vector<std::string> shown;
    for (const auto& c : choices) {
      const bool prefix = !c.empty() && c.back() == ':';
      if (v == c && !prefix) return;
      if (prefix && absl::StartsWith(v, c) && v.size() > c.size() && v.size() <= 4096) return FreeText(path, v);
      shown.push_back(prefix ? c + "<path>" : c);
    }
    Fail(absl::StrCat(path, ": must be one of ", absl::StrJoin(shown, " | "), ", got ", QuoteInput(v)));
  }
  void DoubleList(const char* path, std::vector<double>& v, size_t min_len, size_t max_len, double lo,
                  double hi) override {
    if (v.size() < min_len || v.size() > max_len) {
      Fail(absl::StrCat(path, ": must have ", min_len, " to ", max_len, " entries, got ", v.size()));
      return;
    }
    for (size_t i = 0; i < v.size(); ++i) {
      if (!(v[i] >= lo && v[i] <= hi))
        Fail(absl::StrCat(path, "[", i, "]: must be in [", FormatDouble(lo), ", ", FormatDouble(hi), "], got ",
                          FormatDouble(v[i])));
    }
  }

 private:
  // Names, owners and paths are printed by `vsdmctl list` and in logs: no control characters.
  void FreeText(const char* path, const std::string& v) {
    if (HasControlCharacters(v))
      Fail(absl::StrCat(path, ": must not contain control characters or invalid UTF-8, got ", QuoteInput(v)));
  }
  void Fail(std::string msg) {
    if (status.ok()) status = absl::InvalidArgumentError(std::move(msg));
  }
};

// A key (or dotted key path) from the caller as a message shows it: a plain name as it is,
// anything else quoted, bounded and escaped.
std::string KeyText(const std::string& key) {
  const bool plain = !key.empty() && key.size() <= kQuotedInputBytes && std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.';
  });
  return plain ? key : QuoteInput(key);
}

// What a YAML node is, for messages.
const char* NodeKind(const YAML::Node& n) {
  return n.IsMap() ? "mapping" : n.IsSequence() ? "list" : n.IsScalar() ? "value" : "null";
}

// Reads fields from a YAML tree; records which keys it consumed.
class YamlReader : public JobSpecVisitor {
 public:
  explicit YamlReader(const YAML::Node& root) : root_(root) {}
  absl::Status status;
  std::set<std::string> known_paths;

  void Int(const char* path, int64_t& v, int64_t, int64_t) override {
    YAML::Node n = Find(path);
    if (!n.IsDefined()) return;
    if (!IsScalar(path, n)) return;
    const std::string& s = n.Scalar();
    size_t pos = 0;
    try {
      long long x = std::stoll(s, &pos);
      if (pos != s.size()) throw std::invalid_argument(s);
      v = x;
    } catch (const std::exception&) {
      Fail(absl::StrCat(path, ": must be an integer, got ", QuoteInput(s)));
    }
  }
  void Double(const char* path, double& v, double, double) override {
    YAML::Node n = Find(path);
    if (!n.IsDefined()) return;
    if (!IsScalar(path, n)) return;
    auto x = ParseDouble(n.Scalar());
    if (!x.ok()) return Fail(absl::StrCat(path, ": must be a number, got ", QuoteInput(n.Scalar())));
    v = *x;
  }
  void Bool(const char* path, bool& v) override {
    YAML::Node n = Find(path);
    if (!n.IsDefined()) return;
    if (!IsScalar(path, n)) return;
    const std::string& s = n.Scalar();
    if (s == "true" || s == "True" || s == "yes")
      v = true;
    else if (s == "false" || s == "False" || s == "no")
      v = false;
    else
      Fail(absl::StrCat(path, ": must be true or false, got ", QuoteInput(s)));
  }
  void String(const char* path, std::string& v, size_t) override {
    YAML::Node n = Find(path);
    if (!n.IsDefined()) return;
    if (!IsScalar(path, n)) return;
    v = n.Scalar();
  }
  void Choice(const char* path, std::string& v, const std::vector<std::string>&) override { String(path, v, 0); }
  void DoubleList(const char* path, std::vector<double>& v, size_t, size_t, double, double) override {
    YAML::Node n = Find(path);
    if (!n.IsDefined()) return;
    if (!n.IsSequence()) return Fail(absl::StrCat(path, ": must be a list of numbers"));
    std::vector<double> out;
    for (size_t i = 0; i < n.size(); ++i) {
      auto x = n[i].IsScalar() ? ParseDouble(n[i].Scalar()) : absl::StatusOr<double>(absl::InvalidArgumentError(""));
      if (!x.ok()) return Fail(absl::StrCat(path, "[", i, "]: must be a number"));
      out.push_back(*x);
    }
    v = std::move(out);
  }

 private:
  static absl::StatusOr<double> ParseDouble(const std::string& s) {
    try {
      size_t pos = 0;
      double x = std::stod(s, &pos);
      if (pos != s.size()) return absl::InvalidArgumentError(s);
      return x;
    } catch (const std::exception&) {
      return absl::InvalidArgumentError(s);
    }
  }
  bool IsScalar(const char* path, const YAML::Node& n) {
    if (n.IsScalar()) return true;
    Fail(absl::StrCat(path, ": must be a single value, not a ", NodeKind(n)));
    return false;
  }
  // The node at a dotted path, or an invalid node when absent.
  YAML::Node Find(const char* path) {
    known_paths.insert(path);
    std::vector<std::string> parts = absl::StrSplit(path, '.');
    YAML::Node cur;
    cur.reset(root_);
    for (const auto& p : parts) {
      if (!cur.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
      const YAML::Node& ccur = cur;
      YAML::Node next = ccur[p];
      if (!next.IsDefined()) return YAML::Node(YAML::NodeType::Undefined);
      cur.reset(next);
    }
    return cur;
  }
  void Fail(std::string msg) {
    if (status.ok()) status = absl::InvalidArgumentError(std::move(msg));
  }
  YAML::Node root_;
};

// Finds the first key in `node` (at `prefix`) that is not a known field or section, is not a
// plain value (`? [a, b]: 1`) or comes twice.
absl::Status CheckUnknownKeys(const YAML::Node& node, const std::string& prefix, const std::set<std::string>& known) {
  if (!node.IsMap()) return absl::OkStatus();
  std::set<std::string> seen;
  for (const auto& kv : node) {
    if (!kv.first.IsScalar())
      return absl::InvalidArgumentError(
          absl::StrCat(prefix.empty() ? "spec" : prefix, ": a key must be a name, not a ", NodeKind(kv.first)));
    const std::string& key = kv.first.Scalar();
    std::string path = prefix.empty() ? key : prefix + "." + key;
    if (!seen.insert(key).second) return absl::InvalidArgumentError(absl::StrCat(KeyText(path), ": given twice"));
    if (known.count(path)) continue;
    bool is_section = false;
    for (const auto& k : known) {
      if (absl::StartsWith(k, path + ".")) {
        is_section = true;
        break;
      }
    }
    if (!is_section) return absl::InvalidArgumentError(absl::StrCat(KeyText(path), ": unknown key"));
    if (!kv.second.IsMap()) return absl::InvalidArgumentError(absl::StrCat(path, ": must be a mapping"));
    VSDM_RETURN_IF_ERROR(CheckUnknownKeys(kv.second, path, known));
  }
  return absl::OkStatus();
}

class JsonWriter : public JobSpecVisitor {
 public:
  nlohmann::json out = nlohmann::json::object();
  void Int(const char* p, int64_t& v, int64_t, int64_t) override { Set(p, v); }
  void Double(const char* p, double& v, double, double) override { Set(p, v); }
  void Bool(const char* p, bool& v) override { Set(p, v); }
  void String(const char* p, std::string& v, size_t) override { Set(p, v); }
  void Choice(const char* p, std::string& v, const std::vector<std::string>&) override { Set(p, v); }
  void DoubleList(const char* p, std::vector<double>& v, size_t, size_t, double, double) override { Set(p, v); }

 private:
  template <typename T>
  void Set(const char* path, const T& v) {
    std::vector<std::string> parts = absl::StrSplit(path, '.');
    nlohmann::json* cur = &out;
    for (size_t i = 0; i + 1 < parts.size(); ++i) cur = &(*cur)[parts[i]];
    (*cur)[parts.back()] = v;
  }
};

}  // namespace

bool IsImageDatasetName(const std::string& dataset) {
  return dataset == "fashion_mnist" || dataset == "digits" || absl::StartsWith(dataset, "images:");
}

bool IsSeriesDatasetName(const std::string& dataset) {
  return dataset == "weather" || dataset == "var1" || absl::StartsWith(dataset, "series:");
}

namespace {
// The rules between the model and the data.
absl::Status ValidateModelForData(const JobSpec& spec) {
  const bool images = IsImageDatasetName(spec.problem.dataset);
  for (size_t i = 0; i < spec.model.channel_mult.size(); ++i) {
    const double m = spec.model.channel_mult[i];
    if (m != static_cast<double>(static_cast<int64_t>(m)))
      return absl::InvalidArgumentError(
          absl::StrCat("model.channel_mult[", i, "]: must be a whole number, got ", FormatDouble(m)));
  }
  if (spec.model.arch == "unet" && !images)
    return absl::InvalidArgumentError(absl::StrCat(
        "model.arch: unet needs an image dataset (problem.dataset fashion_mnist | digits | images:<path>), got ",
        QuoteInput(spec.problem.dataset)));
  if (images && spec.method == "vsmd")
    return absl::InvalidArgumentError(
        "method: vsmd is not supported on image datasets yet (use vsdm or dsm with variational.form: diagonal)");
  const bool series = IsSeriesDatasetName(spec.problem.dataset);
  if (series != (spec.model.arch == "forecast"))
    return absl::InvalidArgumentError(
        series ? absl::StrCat("model.arch: a time series (problem.dataset ", QuoteInput(spec.problem.dataset),
                              ") needs model.arch: forecast (a context encoder and a score net over the horizon), got ",
                              QuoteInput(spec.model.arch))
               : absl::StrCat("model.arch: forecast needs a time series (problem.dataset series:<csv> | weather | "
                              "var1), got ",
                              QuoteInput(spec.problem.dataset)));
  if (series && spec.method == "vsmd")
    return absl::InvalidArgumentError("method: vsmd is not supported on time series yet (use vsdm or dsm)");
  if (!series && spec.variational.prior == "conditional")
    return absl::InvalidArgumentError(absl::StrCat(
        "variational.prior: conditional needs a time series (problem.dataset series:<csv> | weather | var1), got ",
        QuoteInput(spec.problem.dataset)));
  return absl::OkStatus();
}
}  // namespace

absl::Status ValidateJobSpec(const JobSpec& spec, const JobSpecLimits& limits) {
  JobSpec copy = spec;
  RangeChecker checker;
  VisitJobSpecFields(copy, checker);
  VSDM_RETURN_IF_ERROR(checker.status);
  if (spec.diffusion.beta_max < spec.diffusion.beta_min)
    return absl::InvalidArgumentError(absl::StrCat("diffusion.beta_max: must be >= diffusion.beta_min (",
                                                   FormatDouble(spec.diffusion.beta_min), "), got ",
                                                   FormatDouble(spec.diffusion.beta_max)));
  if (spec.train.batch_points < spec.resources.trainers)
    return absl::InvalidArgumentError(absl::StrCat("train.batch_points: must be at least resources.trainers (",
                                                   spec.resources.trainers, ") so every trainer gets a shard, got ",
                                                   spec.train.batch_points));
  if (spec.resources.min_trainers > spec.resources.trainers)
    return absl::InvalidArgumentError(absl::StrCat("resources.min_trainers: must be at most resources.trainers (",
                                                   spec.resources.trainers, "), got ", spec.resources.min_trainers));
  if (spec.variational.update == "exact" && spec.variational.lr > 1.0)
    return absl::InvalidArgumentError(
        absl::StrCat("variational.lr: must be in (0, 1] for update exact (it is the averaging weight), got ",
                     FormatDouble(spec.variational.lr)));
  // VSMD keeps 1 - 2c >= d_min (a damped process); the initial c must satisfy it too.
  if (spec.momentum.c_init > 0.5 * (1.0 - spec.variational.d_min))
    return absl::InvalidArgumentError(absl::StrCat(
        "momentum.c_init: must be <= (1 - variational.d_min)/2 = ", FormatDouble(0.5 * (1.0 - spec.variational.d_min)),
        " so the process stays damped, got ", FormatDouble(spec.momentum.c_init)));
  VSDM_RETURN_IF_ERROR(ValidateModelForData(spec));
  // Bounded work: the product, not only each factor (each is in range, so no overflow in double).
  const double total_steps = static_cast<double>(spec.train.rounds) * static_cast<double>(spec.train.steps_per_round);
  if (total_steps > static_cast<double>(kMaxTrainSteps))
    return absl::InvalidArgumentError(absl::StrCat("train.rounds × train.steps_per_round: must be at most ",
                                                   kMaxTrainSteps, " optimiser steps in all, got ",
                                                   absl::StrFormat("%.0f", total_steps), " (", spec.train.rounds, " × ",
                                                   spec.train.steps_per_round, "; lower them)"));
  return CheckRankMemory(spec, limits.max_rank_memory_bytes);
}

namespace {

// Sets one "dotted.key=value" override into `root` (a mapping), creating the mappings on the
// way; a value on the way that is not a mapping is replaced by one. What the result means is
// left to the parse of the tree, so its refusals read as they would for a file.
absl::Status ApplyOverride(YAML::Node& root, const std::string& override_text) {
  const auto malformed = [&] {
    return absl::InvalidArgumentError(absl::StrCat("--set: want key=value, got '", EscapeInput(override_text), "'"));
  };
  const size_t eq = override_text.find('=');
  if (eq == std::string::npos || eq == 0) return malformed();
  const std::string key = override_text.substr(0, eq);
  const std::vector<std::string> parts = absl::StrSplit(key, '.');
  for (const auto& p : parts) {
    if (p.empty()) return malformed();
  }
  YAML::Node value;
  try {
    value = YAML::Load(override_text.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(KeyText(key), ": not a valid YAML value in --set '",
                                                   EscapeInput(override_text), "': ", EscapeInput(e.what(), 256)));
  }
  // YAML::Node assignment writes through to the node referred to; walk with reset().
  YAML::Node cur;
  cur.reset(root);
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    YAML::Node next = cur[parts[i]];
    if (!next.IsMap()) next = YAML::Node(YAML::NodeType::Map);  // absent, or replaced
    cur.reset(next);
  }
  cur[parts.back()] = value;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<JobSpec> ParseJobSpecYaml(const std::string& yaml_text) { return ParseJobSpecYaml(yaml_text, {}); }

namespace {

absl::StatusOr<JobSpec> ParseJobSpecYamlOrThrow(const std::string& yaml_text, const std::vector<std::string>& overrides,
                                                const JobSpecLimits& limits) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("spec: not valid YAML: ", EscapeInput(e.what(), 256)));
  }
  JobSpec spec;
  if (root.IsNull() || !root.IsDefined()) {
    if (overrides.empty()) return spec;
    root = YAML::Node(YAML::NodeType::Map);
  }
  if (!root.IsMap()) return absl::InvalidArgumentError("spec: must be a mapping of keys");
  for (const auto& o : overrides) VSDM_RETURN_IF_ERROR(ApplyOverride(root, o));
  YamlReader reader(root);
  VisitJobSpecFields(spec, reader);
  VSDM_RETURN_IF_ERROR(CheckUnknownKeys(root, "", reader.known_paths));
  VSDM_RETURN_IF_ERROR(reader.status);
  VSDM_RETURN_IF_ERROR(ValidateJobSpec(spec, limits));
  return spec;
}

}  // namespace

absl::StatusOr<JobSpec> ParseJobSpecYaml(const std::string& yaml_text, const std::vector<std::string>& overrides,
                                         const JobSpecLimits& limits) {
  // yaml-cpp throws from node access and conversion too, not only from Load: no text may abort
  // the caller (vsdmctl, vsdm-train).
  try {
    return ParseJobSpecYamlOrThrow(yaml_text, overrides, limits);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("spec: cannot be read as a spec: ", EscapeInput(e.what(), 256)));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("spec: cannot be read as a spec: ", EscapeInput(e.what(), 256)));
  }
}

absl::StatusOr<JobSpec> LoadJobSpecFile(const std::string& path) { return LoadJobSpecFile(path, {}); }

absl::StatusOr<JobSpec> LoadJobSpecFile(const std::string& path, const std::vector<std::string>& overrides,
                                        const JobSpecLimits& limits) {
  const std::string shown = absl::StrCat("spec file ", QuoteInput(path));
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    return absl::InvalidArgumentError(absl::StrCat(shown, ": is a directory"));
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(shown, ": cannot be read"));
  // At most one byte past the bound, so an endless stream (/dev/zero, a FIFO) ends here.
  std::string text(static_cast<size_t>(kMaxSpecFileBytes) + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) return absl::NotFoundError(absl::StrCat(shown, ": cannot be read"));
  const auto got = static_cast<int64_t>(in.gcount());
  if (got > kMaxSpecFileBytes)
    return absl::InvalidArgumentError(absl::StrCat(shown, ": larger than ", FormatBytes(kMaxSpecFileBytes), " (",
                                                   kMaxSpecFileBytes, " bytes); a spec is a few KiB"));
  text.resize(static_cast<size_t>(got));
  return ParseJobSpecYaml(text, overrides, limits);
}

nlohmann::json JobSpecToJson(const JobSpec& spec) {
  JobSpec copy = spec;
  JsonWriter w;
  VisitJobSpecFields(copy, w);
  return w.out;
}

// Note [Rank memory estimate]
// EstimateRankMemory follows the tensors the worker builds (worker/train/*.cc, core/*.cc),
// float32 (4 bytes) unless said otherwise:
// - Resident, both roles: the net's P parameters x 10 (weights, gradients, the EMA, AdamW's two
//   moments, the all-reduce buckets, the flattened EMA broadcast, the checkpoint bytes). Images:
//   the training and test images as float32, at setup also the training images' float64 second
//   moment (2 copies).
// - Trainer, training steps: rows = ceil(batch_points / trainers) * times_per_point (x, t) pairs,
//   each holding what autograd saves (x 1.25 for the backward's transients): toy_resnet ~30 x
//   hidden floats (11 hidden x hidden layers, a Linear and a SiLU output each, the residual sums,
//   the time features), mlp ~10 x hidden, forecast ~36 x hidden + 12 x channels x context (the
//   dilated convolutions), unet per level ~(2 in + 10 out) x H x W per ResBlock, the skip
//   concatenations and 3 x (H W)^2 attention scores at the lowest level; plus 6 x d for the
//   loss (x0 repeated, eps, x_t, output, target).
// - Trainer 0, the final evaluation. Toy sets (final_artifacts.cc): the Heun ODE trajectory
//   kept for the straightness, [steps+1, n, d], 20 bytes a number at its peak (the float32
//   stack, its float64 copy and float64 segment differences); the net at batch n; sliced W1's
//   [n, 256] float64 projections of both sets with their sorted values and int64 indices (56
//   bytes an entry); the prior, samples and two data sets; EnergyDistance's float64 distance
//   blocks, at most 1024 x 16384 (core/metrics.cc). Images (image_artifacts.cc): n images a few
//   times over, the net at 250-image chunks, a copy of the training images and the 256-row
//   nearest-neighbour blocks. Time series (forecast_artifacts.cc): [windows, n, H, D] float64
//   forecasts of the model and each baseline with their scores' copies (x 10), the net at
//   4096-row chunks.
// - Variational rank, when A is learned (not dsm; variational_rank.cc -> Process::Stats): the
//   [K, G] one-hot of trajectory groups, G = ceil(trajectories / adam_batch) (the int64 one and
//   its float64 copy; then the einsum's [K, G, d] float64 intermediate for a full A, [K, G, 2d]
//   for VSMD; a transposed copy for a diagonal A), the G x d x d float64 sums, the net at batch
//   K without autograd, K x d float64 working copies. Time series: K x horizon rows of D numbers.
// The backward trajectories of the statistics are not kept (each step replaces x). Both roles
// add 256 MiB for the process itself (a tiny standalone job peaks at ~200 MB RSS). The estimate
// aims above what is allocated, within a small factor. Measured peak RSS of standalone runs (one
// process, trainers: 1) against the estimate of the rank that dominates: toy_resnet training at
// 65536 rows 1.78 GB (estimate 2.7 GiB); variational statistics of 40000 trajectories in 1000
// groups 1.29 GB (1.3 GiB); the evaluation at sample.n 30000 0.57 GB (1.3 GiB); a digits UNet
// at 4096 rows 3.0 GB (3.9 GiB).

namespace {

constexpr double kF32 = 4, kF64 = 8;
constexpr double kCheckpointCopies = 10;               // resident copies of the parameters (see the Note)
constexpr double kTimeEmbedding = 128;                 // core/score_net.h kTimeEmbeddingDim
constexpr double kProcessBytes = 256.0 * 1024 * 1024;  // a rank's RSS before any tensor of the job

// What a net costs: parameters and floats per batch row, with and without autograd.
struct NetCost {
  double params = 0;
  double train_per_row = 0;
  double infer_per_row = 0;
  std::string width;  // the field(s) behind the per-row activations
  std::string shape;  // the field(s) behind the parameter count
};

double Area(const DataShape& s, int level) {
  const double f = std::ldexp(1.0, level);
  return std::ceil(s.height / f) * std::ceil(s.width / f);
}

NetCost UNetCost(const JobSpec& spec, const DataShape& s) {
  const double base = static_cast<double>(spec.model.channels), C = static_cast<double>(s.channels);
  const double E = 4 * base, half = std::max(1.0, std::floor(base / 2));
  const int levels = static_cast<int>(spec.model.channel_mult.size());
  const double blocks = static_cast<double>(spec.model.res_blocks);
  NetCost n;
  n.width = "model.channels";
  n.shape = "model.channels × model.channel_mult";
  double train = 0, skips = 0, live = 0;
  const auto res = [&](double in, double out, double area) {
    n.params += 9 * in * out + 9 * out * out + E * out + (in != out ? in * out : 0) + 4 * (in + out);
    train += (2 * in + 10 * out) * area + 2 * out;
    live = std::max(live, (in + 3 * out) * area);
  };
  n.params += 2 * half * E + E * E + 9 * C * base;  // time embedding, conv_in
  train += 4 * E + base * Area(s, 0);
  std::vector<double> skip_widths = {base};
  skips += base * Area(s, 0);
  double ch = base;
  for (int i = 0; i < levels; ++i) {
    const double w = base * spec.model.channel_mult[i];
    for (int j = 0; j < blocks; ++j) {
      res(ch, w, Area(s, i));
      ch = w;
      skip_widths.push_back(ch);
      skips += ch * Area(s, i);
    }
    if (i + 1 < levels) {
      n.params += 9 * ch * ch;
      train += ch * Area(s, i + 1);
      skip_widths.push_back(ch);
      skips += ch * Area(s, i + 1);
    }
  }
  const double low = Area(s, levels - 1);
  res(ch, ch, low);
  res(ch, ch, low);
  if (spec.model.attention) {
    n.params += 4 * ch * ch;
    train += 3 * low * low + 7 * ch * low;
    live = std::max(live, 2 * low * low + 5 * ch * low);
  }
  for (int i = levels - 1; i >= 0; --i) {
    const double w = base * spec.model.channel_mult[i];
    for (int j = 0; j <= blocks; ++j) {
      const double in = ch + (skip_widths.empty() ? 0.0 : skip_widths.back());
      if (!skip_widths.empty()) skip_widths.pop_back();
      train += in * Area(s, i);
      res(in, w, Area(s, i));
      ch = w;
    }
    if (i > 0) {
      n.params += 9 * ch * ch;
      train += 2 * ch * Area(s, i - 1);
    }
  }
  n.params += 9 * ch * C;
  train += (2 * ch + C) * Area(s, 0);
  n.train_per_row = 1.25 * train;
  n.infer_per_row = skips + live;
  return n;
}

// The net of the spec; `in` is its input width, `out` its output width.
NetCost NetCostOf(const JobSpec& spec, const DataShape& s, double in, double out) {
  if (spec.model.arch == "unet") return UNetCost(spec, s);
  const double h = static_cast<double>(spec.model.hidden);
  NetCost n;
  n.width = n.shape = "model.hidden";
  if (spec.model.arch == "mlp") {
    n.params = 2 * h * h + (kTimeEmbedding + in + out + 3) * h + out;
    n.train_per_row = 1.25 * (10 * h + 2 * kTimeEmbedding + 4 * in + 2 * out);
    n.infer_per_row = 3 * h + kTimeEmbedding + in + out;
    return n;
  }
  n.params = 11 * h * h + (kTimeEmbedding + in + out + 13) * h + out;
  n.train_per_row = 1.25 * (30 * h + 2 * kTimeEmbedding + 4 * in + 2 * out);
  n.infer_per_row = 4 * h + kTimeEmbedding + in + out;
  if (spec.model.arch == "forecast") {
    const double ch = static_cast<double>(spec.model.channels), ctx = static_cast<double>(spec.problem.context);
    const double D = static_cast<double>(s.series), F = static_cast<double>(s.covariates);
    n.params += 3 * D * ch + 6 * ch * ch + (2 * ch + D + F) * h;
    n.train_per_row += 1.25 * (6 * h + 12 * ch * ctx);
    n.infer_per_row += 3 * ch * ctx;
    if (12 * ch * ctx > 36 * h) n.width = "model.channels × problem.context";
  }
  return n;
}

struct Phase {
  std::vector<MemoryTerm> terms;
  double Sum() const {
    double t = 0;
    for (const auto& x : terms) t += x.bytes;
    return t;
  }
  void Add(std::string what, std::string fields, std::string hint, double bytes) {
    terms.push_back({std::move(what), std::move(fields), std::move(hint), bytes});
  }
};

RankMemory Combine(std::string role, const Phase& resident, const std::vector<Phase>& phases) {
  RankMemory r;
  r.role = std::move(role);
  const Phase* top = nullptr;
  for (const Phase& p : phases)
    if (top == nullptr || p.Sum() > top->Sum()) top = &p;
  r.terms = resident.terms;
  if (top != nullptr) r.terms.insert(r.terms.end(), top->terms.begin(), top->terms.end());
  r.peak_bytes = resident.Sum() + (top != nullptr ? top->Sum() : 0.0);
  std::stable_sort(r.terms.begin(), r.terms.end(),
                   [](const MemoryTerm& a, const MemoryTerm& b) { return a.bytes > b.bytes; });
  return r;
}

int64_t CountColumns(const std::string& columns) {
  int64_t n = 0;
  for (absl::string_view c : absl::StrSplit(columns, ','))
    if (!absl::StripAsciiWhitespace(c).empty()) ++n;
  return n;
}

}  // namespace

DataShape NominalDataShape(const JobSpec& spec) {
  DataShape s;
  const std::string& ds = spec.problem.dataset;
  const auto image = [&](int64_t c, int64_t h, int64_t w, int64_t items) {
    s.channels = c;
    s.height = h;
    s.width = w;
    s.items = items;
    s.dim = c * h * w;
  };
  if (ds == "fashion_mnist") {
    image(1, 28, 28, 70000);
  } else if (ds == "digits") {
    image(1, 8, 8, 1797);
  } else if (absl::StartsWith(ds, "images:")) {
    image(3, 32, 32, spec.problem.train_limit > 0 ? std::min<int64_t>(spec.problem.train_limit, 60000) : 60000);
  } else if (IsSeriesDatasetName(ds)) {
    int64_t test_rows = 2000;
    s.covariates = 2;
    if (ds == "weather") {
      s.series = 8;
      test_rows = 365;
    } else if (ds == "var1") {
      s.series = 4;
      s.covariates = 0;
      test_rows = 400;
    } else {
      const int64_t named = CountColumns(spec.problem.columns);
      s.series = named > 0 ? named : 16;
    }
    s.test_windows = (test_rows + spec.problem.eval_stride - 1) / spec.problem.eval_stride;
    s.dim = spec.problem.horizon * s.series;
  }
  return s;
}

JobMemoryEstimate EstimateRankMemory(const JobSpec& spec) { return EstimateRankMemory(spec, NominalDataShape(spec)); }

JobMemoryEstimate EstimateRankMemory(const JobSpec& spec, const DataShape& shape) {
  const bool images = shape.channels > 0, series = shape.series > 0, vsmd = spec.method == "vsmd";
  const double d = static_cast<double>(shape.dim);
  const double H = static_cast<double>(spec.problem.horizon), D = static_cast<double>(shape.series);
  // The net's input and output widths (core/process.cc, core/forecast_process.cc).
  const double net_in =
      series ? (H + static_cast<double>(spec.problem.context)) * D + static_cast<double>(shape.covariates)
             : (vsmd ? 2 * d : d);
  const NetCost net = NetCostOf(spec, shape, net_in, d);
  const double n = static_cast<double>(spec.sample.n), steps = static_cast<double>(spec.diffusion.steps);

  Phase resident;
  resident.Add("the process itself (LibTorch, the allocator)", "", "", kProcessBytes);
  resident.Add("the net's parameters, gradients, EMA, optimiser moments and their flattened copies", net.shape,
               "lower it", net.params * kF32 * kCheckpointCopies);
  if (images)
    resident.Add("the images, float32", "problem.dataset", "use fewer images (problem.train_limit)",
                 static_cast<double>(shape.items) * d * kF32);
  Phase setup;
  if (images)
    setup.Add("the training images' float64 moments at setup", "problem.dataset",
              "use fewer images (problem.train_limit)", static_cast<double>(shape.items) * d * kF64 * 2);

  // Trainer: training steps at its shard.
  Phase train;
  const double shard =
      std::ceil(static_cast<double>(spec.train.batch_points) / static_cast<double>(spec.resources.trainers));
  const double rows = shard * static_cast<double>(spec.train.times_per_point);
  train.Add(absl::StrCat("the training step's activations (", absl::StrFormat("%.0f", rows),
                         " (x, t) rows per trainer, kept for the backward pass)"),
            absl::StrCat("train.batch_points × train.times_per_point × ", net.width),
            "lower them, or raise resources.trainers: each trainer holds batch_points / trainers",
            rows * (net.train_per_row + 6 * net_in) * kF32);

  // Trainer 0: the final evaluation.
  Phase eval;
  if (images) {
    eval.Add("the final evaluation's samples", "sample.n", "lower it", n * d * kF32 * 6);
    eval.Add("the sampler's net on 250-image chunks", net.width, "lower it", 250 * net.infer_per_row * kF32 * 2);
    eval.Add("the quality figures' copy of the training images and nearest-neighbour blocks", "problem.dataset",
             "use fewer images (problem.train_limit)",
             static_cast<double>(shape.items) * d * kF32 + 256 * static_cast<double>(shape.items) * kF64 * 2);
  } else if (series) {
    const double w = static_cast<double>(shape.test_windows);
    eval.Add(absl::StrCat("the final evaluation's forecasts [windows, sample.n, horizon, series] of the model and ",
                          "each baseline, float64 (", absl::StrFormat("%.0f", w), " test windows)"),
             "sample.n × problem.horizon", "lower sample.n, or raise problem.eval_stride", w * n * H * D * kF64 * 10);
    eval.Add("the sampler's net on 4096-row chunks", net.width, "lower it", 4096 * net.infer_per_row * kF32 * 2);
  } else {
    eval.Add(
        "the final evaluation's ODE trajectory [diffusion.steps+1, sample.n, d] (float32, then float64 for "
        "the straightness)",
        "sample.n × diffusion.steps", "lower them", (steps + 1) * n * d * 20);
    eval.Add("the sampler's net at batch sample.n", absl::StrCat("sample.n × ", net.width), "lower them",
             n * (net.infer_per_row * 2 + 6 * net_in) * kF32);
    eval.Add("sliced W1's [sample.n, 256] float64 projections, sorted, of samples and data", "sample.n", "lower it",
             n * 256 * 56);
    eval.Add("the samples, the prior and two data sets, float32 and float64", "sample.n", "lower it",
             n * d * (kF32 * 6 + kF64 * 4));
    eval.Add("EnergyDistance's distance blocks (at most 1024 x 16384 float64)", "sample.n", "lower it",
             std::min(n, 1024.0) * std::min(n, 16384.0) * kF64 * 3);
  }

  // The variational rank's statistics, when it learns A.
  Phase stats;
  if (spec.method != "dsm") {
    const double K = static_cast<double>(spec.variational.trajectories);
    const double G = std::ceil(K / static_cast<double>(spec.variational.adam_batch));
    const double k_rows = series ? K * H : K, ds = series ? D : d;
    const bool diagonal = !series && !vsmd && spec.variational.form == "diagonal";
    const double per_pair = diagonal ? 3 * kF64 : kF64 + kF64 * std::max(1.0, (vsmd ? 2 : 1) * ds);
    const std::string groups = G > 1 ? "variational.trajectories × variational.adam_batch" : "variational.trajectories";
    stats.Add(absl::StrCat("the variational statistics' [trajectories, groups] one-hot and its einsum intermediate (",
                           absl::StrFormat("%.0f", G), " groups = trajectories / adam_batch)"),
              groups, G > 1 ? "lower variational.trajectories or raise variational.adam_batch" : "lower it",
              k_rows * G * per_pair);
    stats.Add("the variational statistics' per-group sums, float64", groups,
              G > 1 ? "lower variational.trajectories or raise variational.adam_batch" : "lower it",
              G * (diagonal ? ds : (vsmd ? 4 * d : ds * ds)) * kF64 * 4);
    stats.Add("the net on every backward trajectory at once", absl::StrCat("variational.trajectories × ", net.width),
              "lower them", K * net.infer_per_row * kF32 * 2);
    stats.Add("the backward trajectories' working copies, float64", "variational.trajectories", "lower it",
              K * net_in * kF64 * 8);
  }

  JobMemoryEstimate e;
  e.trainer = Combine("trainer", resident, {setup, train, eval});
  e.variational = Combine("variational", resident, {setup, stats});
  return e;
}

absl::Status CheckRankMemory(const JobSpec& spec, int64_t limit_bytes) {
  return CheckRankMemory(spec, NominalDataShape(spec), limit_bytes);
}

absl::Status CheckRankMemory(const JobSpec& spec, const DataShape& shape, int64_t limit_bytes) {
  if (limit_bytes <= 0) return absl::OkStatus();
  const JobMemoryEstimate e = EstimateRankMemory(spec, shape);
  const RankMemory& r = e.trainer.peak_bytes >= e.variational.peak_bytes ? e.trainer : e.variational;
  const double limit = static_cast<double>(limit_bytes);
  if (r.peak_bytes <= limit) return absl::OkStatus();
  // The largest term a spec field drives (the process's own share is none).
  const MemoryTerm* top_ptr = nullptr;
  for (const MemoryTerm& t : r.terms)
    if (!t.fields.empty() && (top_ptr == nullptr || t.bytes > top_ptr->bytes)) top_ptr = &t;
  if (top_ptr == nullptr)
    return absl::InvalidArgumentError(absl::StrCat("resources: a rank needs about ", FormatBytes(r.peak_bytes),
                                                   " (limit ", FormatBytes(limit), " per rank)"));
  const MemoryTerm& top = *top_ptr;
  return absl::InvalidArgumentError(absl::StrCat(
      top.fields, ": the ", r.role, " rank needs about ", FormatBytes(r.peak_bytes), ", ", FormatBytes(top.bytes),
      " of it for ", top.what, " (limit ", FormatBytes(limit), " per rank; ", top.hint, ")"));
}

}  // namespace vsdm
