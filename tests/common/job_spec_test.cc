#include "common/job_spec.h"

#include <gtest/gtest.h>

#include "tests/common/job_spec_fields.h"

#include <algorithm>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
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

TEST(JobSpecTest, ShippedExamplesParse) {
  for (const char* f :
       {"examples/spiral.yaml", "examples/checkerboard.yaml", "examples/spiral-dsm.yaml",
        "examples/checkerboard-dsm.yaml", "examples/spiral-vsmd.yaml", "examples/checkerboard-vsmd.yaml"}) {
    auto s = LoadJobSpecFile(f);
    EXPECT_TRUE(s.ok()) << f << ": " << s.status();
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

}  // namespace
}  // namespace vsdm
