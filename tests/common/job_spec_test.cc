#include "common/job_spec.h"

#include <gtest/gtest.h>

#include "tests/common/job_spec_fields.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/format.h"
#include "nlohmann/json.hpp"

namespace vsdm {
namespace {

TEST(JobSpecTest, EmptySpecGetsDefaults) {
  auto s = ParseJobSpecYaml("");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->method, "vsdm");
  EXPECT_EQ(s->train.batch_points, 1024);
  EXPECT_DOUBLE_EQ(s->diffusion.beta_max, 10.0);
  EXPECT_EQ(s->variational.update, "exact");
}

TEST(JobSpecTest, ParsesNestedValues) {
  auto s = ParseJobSpecYaml(
      "name: x\nproblem: {dataset: checkerboard, scale: [6, 1]}\ntrain:\n  rounds: 7\n  lr: 2e-4\n"
      "variational: {async: true}\n");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->problem.dataset, "checkerboard");
  EXPECT_EQ(s->problem.scale, (std::vector<double>{6.0, 1.0}));
  EXPECT_EQ(s->train.rounds, 7);
  EXPECT_DOUBLE_EQ(s->train.lr, 2e-4);
  EXPECT_TRUE(s->variational.async);
}

void ExpectRefused(const std::string& yaml, const std::string& message) {
  auto s = ParseJobSpecYaml(yaml);
  ASSERT_FALSE(s.ok()) << yaml;
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(s.status().message()), message) << yaml;
}

TEST(JobSpecTest, RefusesOutOfRangeNamingTheKey) {
  ExpectRefused("train:\n  batch_points: 0\n", "train.batch_points: must be in [1, 1048576], got 0");
  ExpectRefused("diffusion: {beta_max: -1}\n", "diffusion.beta_max: must be in [0.001, 1000], got -1");
}

TEST(JobSpecTest, RefusesUnknownKeyNamingThePath) {
  ExpectRefused("train:\n  batch_pointz: 5\n", "train.batch_pointz: unknown key");
  ExpectRefused("trian: {rounds: 5}\n", "trian: unknown key");
}

TEST(JobSpecTest, RefusesWrongTypeNamingTheKey) {
  ExpectRefused("train: {rounds: many}\n", "train.rounds: must be an integer, got \"many\"");
  ExpectRefused("train: {rounds: 2.5}\n", "train.rounds: must be an integer, got \"2.5\"");
  ExpectRefused("variational: {async: maybe}\n", "variational.async: must be true or false, got \"maybe\"");
  ExpectRefused("problem: {scale: 3}\n", "problem.scale: must be a list of numbers");
  ExpectRefused("train: 5\n", "train: must be a mapping");
}

TEST(JobSpecTest, RefusesUnknownChoice) {
  ExpectRefused("method: magic\n", "method: must be one of vsdm | dsm | vsmd, got \"magic\"");
}

TEST(JobSpecTest, MomentumBlock) {
  auto s = ParseJobSpecYaml("method: vsmd\nmomentum: {beta: 8, gamma: 2, damping: 0.9, c_init: 0.01}\n");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->method, "vsmd");
  EXPECT_EQ(s->momentum.beta, 8.0);
  EXPECT_EQ(s->momentum.damping, 0.9);
  EXPECT_EQ(s->momentum.c_init, 0.01);
  EXPECT_EQ(ParseJobSpecYaml("method: vsmd\n")->momentum.beta, 10.0);  // the spec's default
  ExpectRefused("momentum: {damping: 1.5}\n", "momentum.damping: must be in [0.05, 1], got 1.5");
  ExpectRefused("momentum: {frction: 2}\n", "momentum.frction: unknown key");
  // c_init past the damping floor (1 - 2c >= d_min) is refused naming the field.
  ExpectRefused("momentum: {c_init: 0.49}\n",
                "momentum.c_init: must be <= (1 - variational.d_min)/2 = 0.475 so the process stays damped, got 0.49");
}

TEST(JobSpecTest, RefusesCrossFieldInconsistency) {
  auto s = ParseJobSpecYaml("diffusion: {beta_min: 5, beta_max: 1}\n");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.status().message()).find("diffusion.beta_max"), std::string::npos);
}

// The message of the spec `yaml` is refused with (empty when it is accepted).
std::string Refusal(const std::string& yaml) {
  auto s = ParseJobSpecYaml(yaml);
  if (s.ok()) return "";
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(s.status().message());
}

TEST(JobSpecTest, ImageDatasetsAndTheirPathForm) {
  EXPECT_EQ(Refusal("problem: {dataset: fashion_mnist}\nmodel: {arch: unet}\nvariational: {form: diagonal}"), "");
  EXPECT_EQ(Refusal("problem: {dataset: digits}"), "");
  EXPECT_EQ(Refusal("problem: {dataset: 'images:/data/my faces'}\nmodel: {arch: unet}"), "");
  EXPECT_TRUE(IsImageDatasetName("images:/x") && IsImageDatasetName("digits") && !IsImageDatasetName("spiral"));
  const std::string bare = Refusal("problem: {dataset: 'images:'}");
  EXPECT_TRUE(absl::StrContains(bare, "problem.dataset: must be one of") && absl::StrContains(bare, "images:<path>"))
      << bare;
  EXPECT_TRUE(absl::StrContains(Refusal("problem: {dataset: cifar10}"), "got \"cifar10\""));
  EXPECT_TRUE(absl::StartsWith(Refusal("problem: {test_fraction: 0.9}"), "problem.test_fraction: must be in"));
}

TEST(JobSpecTest, RefusesAModelThatDoesNotFitTheData) {
  EXPECT_TRUE(absl::StartsWith(Refusal("model: {arch: unet}"), "model.arch: unet needs an image dataset"));
  EXPECT_TRUE(absl::StartsWith(Refusal("problem: {dataset: digits}\nmodel: {arch: unet, channel_mult: [1, 2.5]}"),
                               "model.channel_mult[1]: must be a whole number"));
  EXPECT_TRUE(absl::StartsWith(Refusal("problem: {dataset: digits}\nmethod: vsmd"), "method: vsmd is not supported"));
  EXPECT_TRUE(absl::StartsWith(Refusal("model: {dropout: 1.5}"), "model.dropout: must be in"));
}

// Every examples/*.yaml parses, with the default limits, and each rank's estimate is below the
// default memory limit.
TEST(JobSpecTest, EveryShippedExampleIsAcceptedAndFitsTheDefaultMemoryLimit) {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator("examples"))
    if (e.path().extension() == ".yaml") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  ASSERT_GE(files.size(), 12u);
  for (const std::string& f : files) {
    auto s = LoadJobSpecFile(f);
    ASSERT_TRUE(s.ok()) << f << ": " << s.status();
    const JobMemoryEstimate e = EstimateRankMemory(*s);
    EXPECT_LT(e.trainer.peak_bytes, static_cast<double>(kDefaultMaxRankMemoryBytes)) << f;
    EXPECT_LT(e.variational.peak_bytes, static_cast<double>(kDefaultMaxRankMemoryBytes)) << f;
    EXPECT_GT(e.trainer.peak_bytes, 0.0) << f;
    EXPECT_TRUE(CheckRankMemory(*s, kDefaultMaxRankMemoryBytes).ok()) << f;
  }
}

// --- overrides ("--set key=value") ---

TEST(JobSpecTest, OverridesSetScalarsListsAndNewSections) {
  auto s = ParseJobSpecYaml("train: {rounds: 7, lr: 2e-4}\n",
                            {"train.rounds=10", "resources.trainers=3", "variational.async=true", "name=my-job",
                             "problem.scale=[2, 8]", "momentum.beta=7.5"});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->train.rounds, 10);
  EXPECT_DOUBLE_EQ(s->train.lr, 2e-4);  // the rest of the section stays
  EXPECT_EQ(s->resources.trainers, 3);  // a section the text did not have
  EXPECT_TRUE(s->variational.async);
  EXPECT_EQ(s->name, "my-job");
  EXPECT_EQ(s->problem.scale, (std::vector<double>{2.0, 8.0}));
  EXPECT_EQ(s->momentum.beta, 7.5);
}

TEST(JobSpecTest, OverridesApplyInOrderAndToAnEmptySpec) {
  auto s = ParseJobSpecYaml("", {"train.rounds=5", "train.rounds=6", "train={seed: 3}"});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->train.rounds, 100);  // the whole train mapping was replaced by the last one
  EXPECT_EQ(s->train.seed, 3);
  auto t = ParseJobSpecYaml("", {"train.rounds=5", "train.rounds=6"});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->train.rounds, 6);
  // A key below a value that is not a mapping replaces it with one.
  auto v = ParseJobSpecYaml("train: 5\n", {"train.rounds=4"});
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->train.rounds, 4);
  // The value is YAML: quoting keeps a string, '=' after the first belongs to the value.
  auto u = ParseJobSpecYaml("", {"name='a=b'", "owner=\"123\""});
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->name, "a=b");
  EXPECT_EQ(u->owner, "123");
}

TEST(JobSpecTest, OverridesOfAFileKeepTheRestOfTheFile) {
  auto plain = LoadJobSpecFile("examples/spiral.yaml");
  ASSERT_TRUE(plain.ok()) << plain.status();
  auto s = LoadJobSpecFile("examples/spiral.yaml", {"train.rounds=10", "sample.n=2000", "method=dsm"});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->train.rounds, 10);
  EXPECT_EQ(s->sample.n, 2000);
  EXPECT_EQ(s->method, "dsm");
  JobSpec want = *plain;
  want.train.rounds = 10;
  want.sample.n = 2000;
  want.method = "dsm";
  EXPECT_EQ(JobSpecToJson(*s), JobSpecToJson(want));
  EXPECT_EQ(LoadJobSpecFile("no/such/spec.yaml", {"train.rounds=1"}).status().code(), absl::StatusCode::kNotFound);
}

void ExpectOverrideRefused(const std::vector<std::string>& overrides, const std::string& message) {
  auto s = ParseJobSpecYaml("train: {rounds: 7}\n", overrides);
  ASSERT_FALSE(s.ok()) << overrides[0];
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(s.status().message()), message) << overrides[0];
}

TEST(JobSpecTest, OverridesAreRefusedWithTheMessagesOfAFile) {
  ExpectOverrideRefused({"train.batch_pointz=5"}, "train.batch_pointz: unknown key");
  ExpectOverrideRefused({"trian.rounds=5"}, "trian: unknown key");
  ExpectOverrideRefused({"problem.x=[1,2]"}, "problem.x: unknown key");
  ExpectOverrideRefused({"train.batch_points=0"}, "train.batch_points: must be in [1, 1048576], got 0");
  ExpectOverrideRefused({"train.rounds=many"}, "train.rounds: must be an integer, got \"many\"");
  ExpectOverrideRefused({"variational.async=maybe"}, "variational.async: must be true or false, got \"maybe\"");
  ExpectOverrideRefused({"problem.scale=3"}, "problem.scale: must be a list of numbers");
  ExpectOverrideRefused({"train.rounds=[1, 2]"}, "train.rounds: must be a single value, not a list");
  ExpectOverrideRefused({"train=5"}, "train: must be a mapping");
  ExpectOverrideRefused({"method=magic"}, "method: must be one of vsdm | dsm | vsmd, got \"magic\"");
  // A key below a field: the field becomes a mapping, as it would be in the file.
  ExpectOverrideRefused({"train.rounds.x=1"}, "train.rounds: must be a single value, not a mapping");
  ExpectOverrideRefused({"name.first=a"}, "name: must be a single value, not a mapping");
  // Cross-field rules see the overridden values.
  ExpectOverrideRefused({"diffusion.beta_min=5", "diffusion.beta_max=1"},
                        "diffusion.beta_max: must be >= diffusion.beta_min (5), got 1");
  // The conditional prior regresses the horizon on the context: time series only.
  ExpectOverrideRefused({"variational.prior=conditional"},
                        "variational.prior: conditional needs a time series (problem.dataset series:<csv> | weather | "
                        "var1), got \"spiral\"");
  EXPECT_TRUE(
      ParseJobSpecYaml("problem: {dataset: weather}\nmodel: {arch: forecast}\n", {"variational.prior=conditional"})
          .ok());
}

TEST(JobSpecTest, MalformedOverrideIsRefused) {
  for (const char* o : {"train.rounds", "=5", "", "train..rounds=5", ".rounds=5", "train.=5"}) {
    ExpectOverrideRefused({o}, absl::StrCat("--set: want key=value, got '", o, "'"));
  }
  auto s = ParseJobSpecYaml("", {"name=[unclosed"});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(s.status().message(), "name: not a valid YAML value in --set")) << s.status();
}

// --- every field ---

using spec_fields::Fields;
using spec_fields::NonDefaultSetter;

// A spec with every field non-default and valid.
JobSpec NonDefaultSpec() {
  JobSpec spec;
  NonDefaultSetter setter;
  VisitJobSpecFields(spec, setter);
  return spec;
}

TEST(JobSpecTest, TheNonDefaultSpecChangesEveryFieldAndIsValid) {
  const JobSpec spec = NonDefaultSpec();
  ASSERT_TRUE(ValidateJobSpec(spec).ok()) << ValidateJobSpec(spec);
  const auto got = Fields(spec), defaults = Fields(JobSpec());
  ASSERT_EQ(got.size(), defaults.size());
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NE(got[i].second, defaults[i].second) << got[i].first << " kept its default";
}

// The leaves of `j` (a value that is not an object) by dotted path.
void Leaves(const nlohmann::json& j, const std::string& prefix, std::set<std::string>& out) {
  if (!j.is_object()) {
    out.insert(prefix);
    return;
  }
  for (auto it = j.begin(); it != j.end(); ++it)
    Leaves(it.value(), prefix.empty() ? it.key() : absl::StrCat(prefix, ".", it.key()), out);
}

TEST(JobSpecTest, JsonHasEveryFieldAndNothingElse) {
  const JobSpec spec = NonDefaultSpec();
  const nlohmann::json j = JobSpecToJson(spec);
  std::set<std::string> visited;
  for (const auto& [path, value] : Fields(spec)) {
    visited.insert(path);
    const auto ptr = nlohmann::json::json_pointer("/" + absl::StrReplaceAll(path, {{".", "/"}}));
    ASSERT_TRUE(j.contains(ptr)) << path << " missing from " << j.dump();
    EXPECT_EQ(j.at(ptr), value) << path;
  }
  std::set<std::string> leaves;
  Leaves(j, "", leaves);
  EXPECT_EQ(leaves, visited);
  // JSON is YAML: it parses back to the same spec, field by field.
  auto back = ParseJobSpecYaml(j.dump());
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << j.dump();
  EXPECT_EQ(Fields(*back), Fields(spec));
}

// --- bounded resources per job (Note [Rank memory estimate]) ---

// The refusal of `yaml` at the default limits; it must start with `fields` and a colon.
void ExpectRefusedNaming(const std::string& yaml, const std::string& fields, const std::string& role = "") {
  const std::string m = Refusal(yaml);
  EXPECT_TRUE(absl::StartsWith(m, fields + ": ")) << yaml << "\n -> " << m;
  EXPECT_TRUE(role.empty() || absl::StrContains(m, "the " + role + " rank needs about")) << m;
  EXPECT_TRUE(role.empty() || absl::StrContains(m, "(limit 16 GiB per rank; ")) << m;
}

TEST(JobSpecTest, RefusesSpecsWhoseProductsOfFieldsOverrunARank) {
  // The review's examples (H2), each accepted field by field.
  ExpectRefusedNaming("variational: {trajectories: 1000000, adam_batch: 1}",
                      "variational.trajectories × variational.adam_batch", "variational");
  ExpectRefusedNaming("variational: {trajectories: 200000, adam_batch: 10}",
                      "variational.trajectories × variational.adam_batch", "variational");
  ExpectRefusedNaming("sample: {n: 10000000}\ndiffusion: {steps: 10000}", "sample.n × diffusion.steps", "trainer");
  ExpectRefusedNaming("sample: {n: 1000000}\ndiffusion: {steps: 1000}", "sample.n × diffusion.steps", "trainer");
  ExpectRefusedNaming("sample: {n: 10000000}", "sample.n", "trainer");  // sliced W1's projections lead
  ExpectRefusedNaming("train: {batch_points: 1048576, times_per_point: 1024}",
                      "train.batch_points × train.times_per_point × model.hidden", "trainer");
  ExpectRefusedNaming("model: {hidden: 4096}\ntrain: {batch_points: 1048576}",
                      "train.batch_points × train.times_per_point × model.hidden", "trainer");
  ExpectRefusedNaming("train: {rounds: 1000000, steps_per_round: 10000000}", "train.rounds × train.steps_per_round");
  EXPECT_EQ(Refusal("train: {rounds: 1000000, steps_per_round: 10000000}"),
            "train.rounds × train.steps_per_round: must be at most 100000000 optimiser steps in all, got "
            "10000000000000 (1000000 × 10000000; lower them)");
  // An image job: the UNet's activations at a big batch; the attention at a high resolution.
  ExpectRefusedNaming(
      "problem: {dataset: fashion_mnist}\nmodel: {arch: unet}\nvariational: {form: diagonal}\n"
      "train: {batch_points: 65536}",
      "train.batch_points × train.times_per_point × model.channels", "trainer");
  ExpectRefusedNaming(
      "problem: {dataset: 'images:/data/x'}\nmodel: {arch: unet, channel_mult: [1], channels: 64}\n"
      "variational: {form: diagonal}\ntrain: {batch_points: 4096}",
      "train.batch_points × train.times_per_point × model.channels", "trainer");
  // A forecast job's evaluation: windows x sample.n x horizon x series float64.
  ExpectRefusedNaming(
      "problem: {dataset: weather, horizon: 100, eval_stride: 1}\nmodel: {arch: forecast}\n"
      "sample: {n: 100000}",
      "sample.n × problem.horizon", "trainer");
}

TEST(JobSpecTest, TheEstimateFollowsWhatTheRanksAllocate) {
  // The trajectory term is at least the float32 [steps+1, n, d] tensor the sampler stacks.
  auto big = ParseJobSpecYaml("sample: {n: 1000}\ndiffusion: {steps: 1000}");
  ASSERT_TRUE(big.ok()) << big.status();
  big->sample.n = 10000000;
  big->diffusion.steps = 10000;
  const JobMemoryEstimate e = EstimateRankMemory(*big);
  ASSERT_FALSE(e.trainer.terms.empty());
  EXPECT_EQ(e.trainer.terms.front().fields, "sample.n × diffusion.steps");
  EXPECT_GE(e.trainer.terms.front().bytes, 10001.0 * 1e7 * 2 * 4);
  // The one-hot alone is [K, G] int64 (the review's 8 TB).
  JobSpec v;
  v.variational.trajectories = 1000000;
  v.variational.adam_batch = 1;
  const JobMemoryEstimate ev = EstimateRankMemory(v);
  EXPECT_GE(ev.variational.peak_bytes, 1e12 * 8);
  EXPECT_GT(ev.variational.peak_bytes, ev.trainer.peak_bytes);
  // DSM learns no A: the variational rank computes no statistics, so the same counts fit.
  v.method = "dsm";
  EXPECT_LT(EstimateRankMemory(v).variational.peak_bytes, 1e9);
  EXPECT_TRUE(ValidateJobSpec(v).ok()) << ValidateJobSpec(v);
  // Each trainer holds its shard: more trainers, less per rank.
  JobSpec t;
  t.train.batch_points = 1 << 20;
  t.resources.trainers = 1;
  const double one = EstimateRankMemory(t).trainer.peak_bytes;
  t.resources.trainers = 64;
  EXPECT_LT(EstimateRankMemory(t).trainer.peak_bytes, one / 16);
  // The defaults are small; the estimate grows with what drives it.
  const JobMemoryEstimate d = EstimateRankMemory(JobSpec());
  EXPECT_LT(d.trainer.peak_bytes, 1024.0 * 1024 * 1024);
  JobSpec more;
  more.sample.n *= 10;
  EXPECT_GT(EstimateRankMemory(more).trainer.peak_bytes, d.trainer.peak_bytes);
  // A real shape, when the caller knows it, replaces the nominal one.
  JobSpec img;
  img.problem.dataset = "images:/data/faces";
  img.model.arch = "unet";
  img.variational.form = "diagonal";
  DataShape shape = NominalDataShape(img);
  EXPECT_EQ(shape.dim, 3 * 32 * 32);
  const double nominal = EstimateRankMemory(img, shape).trainer.peak_bytes;
  shape.channels = 1, shape.height = shape.width = 8, shape.dim = 64;
  EXPECT_LT(EstimateRankMemory(img, shape).trainer.peak_bytes, nominal);
}

TEST(JobSpecTest, AConfiguredMemoryLimitReplacesTheDefault) {
  const std::string yaml = "variational: {trajectories: 200000, adam_batch: 10}";
  EXPECT_FALSE(ParseJobSpecYaml(yaml).ok());
  JobSpecLimits roomy;
  roomy.max_rank_memory_bytes = int64_t{256} << 30;
  EXPECT_TRUE(ParseJobSpecYaml(yaml, {}, roomy).ok());
  JobSpecLimits off;
  off.max_rank_memory_bytes = 0;
  EXPECT_TRUE(ParseJobSpecYaml("variational: {trajectories: 1000000, adam_batch: 1}", {}, off).ok());
  // The work bound holds whatever the memory limit.
  EXPECT_FALSE(ParseJobSpecYaml("train: {rounds: 1000000, steps_per_round: 10000000}", {}, off).ok());
  // A tight limit refuses even the defaults, naming the largest term.
  const absl::Status tight = CheckRankMemory(JobSpec(), 1 << 20);
  EXPECT_EQ(tight.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(tight.message(), "(limit 1.0 MiB per rank; ")) << tight;
  EXPECT_TRUE(CheckRankMemory(JobSpec(), kDefaultMaxRankMemoryBytes).ok());
  EXPECT_TRUE(CheckRankMemory(JobSpec(), 0).ok());
}

// --- the YAML parser never aborts; spec files are bounded (M8) ---

TEST(JobSpecTest, RefusesAKeyThatIsNotAName) {
  EXPECT_EQ(Refusal("? [a, b]\n: 1\n"), "spec: a key must be a name, not a list");
  EXPECT_EQ(Refusal("train:\n  ? {x: 1}\n  : 2\n"), "train: a key must be a name, not a mapping");
  EXPECT_EQ(Refusal("{? [1]: 2, name: x}"), "spec: a key must be a name, not a list");
  EXPECT_EQ(Refusal("train: {rounds: 1, rounds: 2}"), "train.rounds: given twice");
}

TEST(JobSpecTest, NoTextMakesTheParserThrow) {
  for (const char* text : {"? [a, b]\n: 1\n",
                           "&a [*a]",
                           "*unknown",
                           "!!binary x",
                           "train: &x {rounds: 5}\nsample: *x",
                           "train: !!map {rounds: 1}",
                           "- a\n- b",
                           "[1, 2]",
                           "\"\\x00\"",
                           "a: b: c",
                           "%YAML 9.9\n---\nname: x",
                           "name: !<tag:x> y",
                           "train:\n\trounds: 1",
                           "{{{{",
                           "? \n: 1",
                           "~: 1",
                           "name: [1, {a: [2]}]",
                           "problem: {scale: [[1], {a: 2}]}",
                           "problem: {scale: [.inf, .nan]}",
                           "train: {rounds: 0x10}",
                           "train: {rounds: 99999999999999999999}",
                           "train: {lr: 1e999}",
                           "---\n---\n",
                           "name: x\n...\nname: y"}) {
    absl::StatusOr<JobSpec> s = ParseJobSpecYaml(text);
    EXPECT_TRUE(s.ok() || s.status().code() == absl::StatusCode::kInvalidArgument) << text << ": " << s.status();
  }
  auto deep = ParseJobSpecYaml(std::string(5000, '[') + std::string(5000, ']'));
  EXPECT_FALSE(deep.ok());
}

class SpecFileTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = (std::filesystem::path(::testing::TempDir()) / name).string();
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
};

TEST_F(SpecFileTest, RefusesFilesAboveTheBoundWithoutReadingThemWhole) {
  auto zero = LoadJobSpecFile("/dev/zero");
  ASSERT_FALSE(zero.ok());
  EXPECT_EQ(zero.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(zero.status().message()),
            "spec file \"/dev/zero\": larger than 1.0 MiB (1048576 bytes); a spec is a few KiB");
  const std::string pad = "# " + std::string(kMaxSpecFileBytes, 'x') + "\n";
  EXPECT_EQ(LoadJobSpecFile(Write("big.yaml", "name: x\n" + pad)).status().code(), absl::StatusCode::kInvalidArgument);
  // Exactly at the bound is read.
  const std::string at = "name: x\n#" + std::string(kMaxSpecFileBytes - 10, 'x') + "\n";
  ASSERT_EQ(static_cast<int64_t>(at.size()), kMaxSpecFileBytes);
  auto ok = LoadJobSpecFile(Write("at.yaml", at));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->name, "x");
  auto dir = LoadJobSpecFile(::testing::TempDir());
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kInvalidArgument) << dir.status();
  EXPECT_TRUE(absl::EndsWith(dir.status().message(), ": is a directory")) << dir.status();
  EXPECT_EQ(LoadJobSpecFile(Write("key.yaml", "? [a, b]\n: 1\n")).status().message(),
            "spec: a key must be a name, not a list");
}

// --- caller input in messages is bounded and escaped (M2) ---

TEST(JobSpecTest, MessagesQuoteAtMostAFewHundredCharactersOfInput) {
  const std::string huge(64 << 10, 'a');
  for (const std::string& yaml : {"method: " + huge, "train: {rounds: " + huge + "}", "train: {lr: " + huge + "}",
                                  "variational: {async: " + huge + "}", huge + ": 1", "train: {" + huge + ": 1}",
                                  "problem: {dataset: " + huge + "}", "name: \"" + huge + "\"",
                                  "model: {arch: unet}\nproblem: {dataset: 'images:" + std::string(4000, 'p') +
                                      "'}\nvariational: {form: diagonal}\ntrain: {batch_points: 1048576}"}) {
    const std::string m = Refusal(yaml);
    EXPECT_FALSE(m.empty()) << yaml.substr(0, 40);
    EXPECT_LT(m.size(), 400u) << m.substr(0, 400);
  }
  EXPECT_EQ(Refusal("method: " + huge), absl::StrCat("method: must be one of vsdm | dsm | vsmd, got \"",
                                                     std::string(64, 'a'), "\u2026\" (65536 bytes)"));
  // What the wire may carry (a 4 MiB value) is bounded the same way.
  JobSpec wire;
  wire.method = std::string(4 << 20, 'm');
  EXPECT_EQ(ValidateJobSpec(wire).message(), absl::StrCat("method: must be one of vsdm | dsm | vsmd, got \"",
                                                          std::string(64, 'm'), "\u2026\" (4194304 bytes)"));
  auto o = ParseJobSpecYaml("", {huge});
  ASSERT_FALSE(o.ok());
  EXPECT_LT(o.status().message().size(), 300u);
  // Control characters in a quoted value are escaped, not echoed.
  EXPECT_EQ(Refusal("method: \"vs\\e[2Jdm\\n\""), "method: must be one of vsdm | dsm | vsmd, got \"vs\\x1b[2Jdm\\n\"");
  EXPECT_EQ(Refusal("train: {\"a\\tb\": 1}"), "\"train.a\\tb\": unknown key");
}

TEST(JobSpecTest, QuoteInputBoundsAndEscapes) {
  EXPECT_EQ(QuoteInput("abc"), "\"abc\"");
  EXPECT_EQ(QuoteInput(""), "\"\"");
  EXPECT_EQ(QuoteInput("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(QuoteInput("a\nb\rc\td\x1b[31m\x7f"), "\"a\\nb\\rc\\td\\x1b[31m\\x7f\"");
  EXPECT_EQ(QuoteInput(std::string("a\0b", 3)), "\"a\\x00b\"");
  EXPECT_EQ(QuoteInput(std::string(100, 'x')), "\"" + std::string(64, 'x') + "\u2026\" (100 bytes)");
  EXPECT_EQ(EscapeInput(std::string(100, 'x'), 4), "xxxx\u2026 (100 bytes)");
  EXPECT_EQ(QuoteInput(std::string(64, 'x')), "\"" + std::string(64, 'x') + "\"");
  // UTF-8 passes whole and is never cut inside a character; invalid bytes, C1 controls and bidi
  // overrides are escaped.
  EXPECT_EQ(QuoteInput("Gr\u00fc\u00dfe \u6a21\u578b"), "\"Gr\u00fc\u00dfe \u6a21\u578b\"");
  EXPECT_EQ(EscapeInput("ab\u00fc", 3), "ab\u2026 (4 bytes)");
  EXPECT_EQ(QuoteInput("a\xff\xc3(b"), "\"a\\xff\\xc3(b\"");
  EXPECT_EQ(QuoteInput("\xc2\x9b"
                       "2J"),
            "\"\\u{009B}2J\"");
  EXPECT_EQ(QuoteInput("user\u202Etxt.exe"), "\"user\\u{202E}txt.exe\"");
  EXPECT_EQ(QuoteInput("\xed\xa0\x80"), "\"\\xed\\xa0\\x80\"");  // a surrogate
  EXPECT_EQ(QuoteInput("\xe0\x80\xaf"), "\"\\xe0\\x80\\xaf\"");  // overlong
  // Whatever the input, the output is bounded.
  std::string worst;
  for (int i = 0; i < 1000; ++i) worst += "\x01\xc2\x9b\xff";
  EXPECT_LT(QuoteInput(worst).size(), 4 * kQuotedInputBytes + 32);
  EXPECT_EQ(FormatBytes(512), "512 B");
  EXPECT_EQ(FormatBytes(double(int64_t{16} << 30)), "16 GiB");
  EXPECT_EQ(FormatBytes(8e12), "7.3 TiB");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
}

// --- free text refuses control characters (M4) ---

TEST(JobSpecTest, FreeTextRefusesControlCharacters) {
  EXPECT_EQ(Refusal("name: \"bad\\e[2Jname\""),
            "name: must not contain control characters or invalid UTF-8, got \"bad\\x1b[2Jname\"");
  EXPECT_EQ(Refusal("owner: \"a\\nb\""), "owner: must not contain control characters or invalid UTF-8, got \"a\\nb\"");
  EXPECT_TRUE(absl::StartsWith(Refusal("name: \"a\\tb\""), "name: must not contain control characters"));
  EXPECT_TRUE(absl::StartsWith(Refusal("name: \"x\\u202Ey\""), "name: must not contain control characters"));
  EXPECT_TRUE(absl::StartsWith(Refusal("name: \"x\\x9by\""), "name: must not contain control characters"));
  EXPECT_TRUE(absl::StartsWith(Refusal("problem: {columns: \"a,\\x07b\"}"), "problem.columns: must not contain"));
  EXPECT_TRUE(absl::StartsWith(Refusal("sample: {classifier: \"/x\\ny\"}"), "sample.classifier: must not contain"));
  EXPECT_TRUE(absl::StartsWith(Refusal("problem: {dataset: \"images:/data\\rx\"}\nmodel: {arch: unet}"),
                               "problem.dataset: must not contain"));
  JobSpec raw;
  raw.name = std::string("a\xff", 2);  // not UTF-8 (the wire's strings are checked the same way)
  EXPECT_TRUE(absl::StartsWith(ValidateJobSpec(raw).message(), "name: must not contain")) << ValidateJobSpec(raw);
  // Unicode text without controls is fine.
  auto ok = ParseJobSpecYaml("name: \"Gr\u00fc\u00dfe \u6a21\u578b job\"\nowner: \"J. O'Neil\"");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->name, "Gr\u00fc\u00dfe \u6a21\u578b job");
}

}  // namespace
}  // namespace vsdm
