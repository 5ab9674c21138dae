#include "common/job_spec.h"

#include <gtest/gtest.h>

#include <string>

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

TEST(JobSpecTest, ShippedExamplesParse) {
  for (const char* f : {"examples/spiral.yaml", "examples/checkerboard.yaml",
                        "examples/spiral-dsm.yaml", "examples/checkerboard-dsm.yaml",
                        "examples/spiral-vsmd.yaml", "examples/checkerboard-vsmd.yaml"}) {
    auto s = LoadJobSpecFile(f);
    EXPECT_TRUE(s.ok()) << f << ": " << s.status();
  }
}

TEST(JobSpecTest, JsonHasEveryField) {
  JobSpec spec;
  auto j = JobSpecToJson(spec);
  EXPECT_EQ(j["train"]["batch_points"], 1024);
  EXPECT_EQ(j["variational"]["prior"], "adaptive");
}

}  // namespace
}  // namespace vsdm
