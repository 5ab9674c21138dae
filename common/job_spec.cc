#include "common/job_spec.h"

#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "yaml-cpp/yaml.h"

namespace vsdm {

void VisitJobSpecFields(JobSpec& s, JobSpecVisitor& v) {
  v.String("name", s.name, 128);
  v.String("owner", s.owner, 64);
  v.Int("priority", s.priority, -1000, 1000);
  v.Choice("problem.dataset", s.problem.dataset,
           {"spiral", "checkerboard", "gaussian", "moons", "eight_gaussians", "fashion_mnist", "digits", "images:",
            "weather", "var1", "series:"});
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
  v.Choice("variational.prior", s.variational.prior, {"adaptive", "standard"});
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
  v.Int("sample.n", s.sample.n, 1, 10000000);
  v.Choice("sample.solver", s.sample.solver, {"heun", "euler", "sde"});
  v.String("sample.classifier", s.sample.classifier, 4096);
  v.Int("resources.trainers", s.resources.trainers, 1, 1024);
  v.Choice("resources.device", s.resources.device, {"cpu", "cuda"});
  v.Int("resources.max_restarts", s.resources.max_restarts, 0, 100);
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
    if (v.size() > max_len) Fail(absl::StrCat(path, ": must be at most ", max_len, " characters, got ", v.size()));
  }
  void Choice(const char* path, std::string& v, const std::vector<std::string>& choices) override {
    std::vector<std::string> shown;
    for (const auto& c : choices) {
      const bool prefix = !c.empty() && c.back() == ':';
      if (v == c && !prefix) return;
      if (prefix && absl::StartsWith(v, c) && v.size() > c.size() && v.size() <= 4096) return;
      shown.push_back(prefix ? c + "<path>" : c);
    }
    Fail(absl::StrCat(path, ": must be one of ", absl::StrJoin(shown, " | "), ", got \"", v, "\""));
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
  void Fail(std::string msg) {
    if (status.ok()) status = absl::InvalidArgumentError(std::move(msg));
  }
};

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
      Fail(absl::StrCat(path, ": must be an integer, got \"", s, "\""));
    }
  }
  void Double(const char* path, double& v, double, double) override {
    YAML::Node n = Find(path);
    if (!n.IsDefined()) return;
    if (!IsScalar(path, n)) return;
    auto x = ParseDouble(n.Scalar());
    if (!x.ok()) return Fail(absl::StrCat(path, ": must be a number, got \"", n.Scalar(), "\""));
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
      Fail(absl::StrCat(path, ": must be true or false, got \"", s, "\""));
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
    Fail(absl::StrCat(path, ": must be a single value, not a ",
                      n.IsMap()        ? "mapping"
                      : n.IsSequence() ? "list"
                                       : "null"));
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

// Finds the first key in `node` (at `prefix`) that is not a known field or section.
absl::Status CheckUnknownKeys(const YAML::Node& node, const std::string& prefix, const std::set<std::string>& known) {
  if (!node.IsMap()) return absl::OkStatus();
  for (const auto& kv : node) {
    std::string key = kv.first.as<std::string>();
    std::string path = prefix.empty() ? key : prefix + "." + key;
    if (known.count(path)) continue;
    bool is_section = false;
    for (const auto& k : known) {
      if (absl::StartsWith(k, path + ".")) {
        is_section = true;
        break;
      }
    }
    if (!is_section) return absl::InvalidArgumentError(absl::StrCat(path, ": unknown key"));
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
        "model.arch: unet needs an image dataset (problem.dataset fashion_mnist | digits | images:<path>), got \"",
        spec.problem.dataset, "\""));
  if (images && spec.method == "vsmd")
    return absl::InvalidArgumentError(
        "method: vsmd is not supported on image datasets yet (use vsdm or dsm with variational.form: diagonal)");
  const bool series = IsSeriesDatasetName(spec.problem.dataset);
  if (series != (spec.model.arch == "forecast"))
    return absl::InvalidArgumentError(
        series ? absl::StrCat("model.arch: a time series (problem.dataset \"", spec.problem.dataset,
                              "\") needs model.arch: forecast (a context encoder and a score net over the horizon), got \"",
                              spec.model.arch, "\"")
               : absl::StrCat("model.arch: forecast needs a time series (problem.dataset series:<csv> | weather | "
                              "var1), got \"",
                              spec.problem.dataset, "\""));
  if (series && spec.method == "vsmd")
    return absl::InvalidArgumentError("method: vsmd is not supported on time series yet (use vsdm or dsm)");
  return absl::OkStatus();
}
}  // namespace

absl::Status ValidateJobSpec(const JobSpec& spec) {
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
  if (spec.variational.update == "exact" && spec.variational.lr > 1.0)
    return absl::InvalidArgumentError(
        absl::StrCat("variational.lr: must be in (0, 1] for update exact (it is the averaging weight), got ",
                     FormatDouble(spec.variational.lr)));
  // VSMD keeps 1 - 2c >= d_min (a damped process); the initial c must satisfy it too.
  if (spec.momentum.c_init > 0.5 * (1.0 - spec.variational.d_min))
    return absl::InvalidArgumentError(absl::StrCat(
        "momentum.c_init: must be <= (1 - variational.d_min)/2 = ", FormatDouble(0.5 * (1.0 - spec.variational.d_min)),
        " so the process stays damped, got ", FormatDouble(spec.momentum.c_init)));
  return ValidateModelForData(spec);
}

namespace {

// Sets one "dotted.key=value" override into `root` (a mapping), creating the mappings on the
// way; a value on the way that is not a mapping is replaced by one. What the result means is
// left to the parse of the tree, so its refusals read as they would for a file.
absl::Status ApplyOverride(YAML::Node& root, const std::string& override_text) {
  const auto malformed = [&] {
    return absl::InvalidArgumentError(absl::StrCat("--set: want key=value, got '", override_text, "'"));
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
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": not a valid YAML value in --set '", override_text, "': ", e.what()));
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

absl::StatusOr<JobSpec> ParseJobSpecYaml(const std::string& yaml_text, const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("spec: not valid YAML: ", e.what()));
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
  VSDM_RETURN_IF_ERROR(ValidateJobSpec(spec));
  return spec;
}

absl::StatusOr<JobSpec> LoadJobSpecFile(const std::string& path) { return LoadJobSpecFile(path, {}); }

absl::StatusOr<JobSpec> LoadJobSpecFile(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("spec file ", path, ": cannot be read"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseJobSpecYaml(ss.str(), overrides);
}

nlohmann::json JobSpecToJson(const JobSpec& spec) {
  JobSpec copy = spec;
  JsonWriter w;
  VisitJobSpecFields(copy, w);
  return w.out;
}

}  // namespace vsdm
