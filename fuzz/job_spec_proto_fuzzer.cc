// libFuzzer target: JobSpecFromProto (proto/job_spec_proto.h) on arbitrary bytes parsed as a
// vsdm.v1.JobSpec wire message (bytes protobuf refuses are skipped: that parser is not ours).
// The conversion must return; a spec it accepts must validate and survive a round trip through
// JobSpecToProto unchanged.
#include <cstddef>
#include <cstdint>

#include "common/job_spec.h"
#include "fuzz/fuzz_util.h"
#include "nlohmann/json.hpp"
#include "proto/job_spec_proto.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  vsdm::v1::JobSpec proto;
  if (!proto.ParseFromArray(data, static_cast<int>(size))) return 0;
  absl::StatusOr<vsdm::JobSpec> spec = vsdm::JobSpecFromProto(proto);
  if (!spec.ok()) {
    vsdm::fuzz::Require(!spec.status().message().empty(), "a refusal without a message");
    return 0;
  }
  vsdm::fuzz::Require(vsdm::ValidateJobSpec(*spec).ok(), "JobSpecFromProto accepted a spec ValidateJobSpec refuses");
  absl::StatusOr<vsdm::JobSpec> again = vsdm::JobSpecFromProto(vsdm::JobSpecToProto(*spec));
  vsdm::fuzz::Require(again.ok(), "JobSpecFromProto refuses what JobSpecToProto wrote from an accepted spec");
  vsdm::fuzz::Require(vsdm::JobSpecToJson(*again) == vsdm::JobSpecToJson(*spec),
                      "the proto round trip changed the spec");
  return 0;
}
