// The wire form of the job spec: every field of the struct survives JobSpec -> proto -> JobSpec
// (the momentum block included), and a bad value set on the wire is refused naming the field.
#include "proto/job_spec_proto.h"

#include <gtest/gtest.h>

#include "nlohmann/json.hpp"

namespace vsdm {
namespace {

TEST(JobSpecProtoTest, EveryFieldRoundTrips) {
  auto parsed = ParseJobSpecYaml(
      "name: rt\nmethod: vsmd\nproblem: {dataset: checkerboard, scale: [6, 1]}\n"
      "momentum: {beta: 7.5, gamma: 1.5, damping: 0.9, c_init: -0.1}\n"
      "variational: {lr: 0.5, trajectories: 123, async: true}\ntrain: {rounds: 7, seed: 9}\n");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  v1::JobSpec wire = JobSpecToProto(*parsed);
  EXPECT_TRUE(wire.has_momentum());
  EXPECT_EQ(wire.momentum().damping(), 0.9);
  auto back = JobSpecFromProto(wire);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(JobSpecToJson(*back), JobSpecToJson(*parsed));
  // Unset on the wire = the default.
  v1::JobSpec empty;
  empty.set_method("vsmd");
  auto defaults = JobSpecFromProto(empty);
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->momentum.beta, 10.0);
  EXPECT_EQ(defaults->momentum.c_init, 0.0);
}

TEST(JobSpecProtoTest, BadMomentumValueNamesTheField) {
  v1::JobSpec wire;
  wire.set_method("vsmd");
  wire.mutable_momentum()->set_gamma(0.0);
  auto s = JobSpecFromProto(wire);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.status().message()).find("momentum.gamma"), std::string::npos) << s.status();
}

}  // namespace
}  // namespace vsdm
