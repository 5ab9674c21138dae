// JobSpec <-> vsdm.v1.JobSpec, driven by the one field list of common/job_spec.h
// (VisitJobSpecFields) and protobuf reflection over the same dotted names, so the YAML, the
// struct and the wire can never disagree about a field.
#pragma once

#include "absl/status/statusor.h"
#include "common/job_spec.h"
#include "vsdm/v1/job.pb.h"

namespace vsdm {

// Every field set (defaults included).
v1::JobSpec JobSpecToProto(const JobSpec& spec);
// Unset fields take their defaults; set ones are validated. INVALID_ARGUMENT names the field
// ("train.batch_points: must be in [1, 1048576], got 0").
absl::StatusOr<JobSpec> JobSpecFromProto(const v1::JobSpec& proto);

}  // namespace vsdm
