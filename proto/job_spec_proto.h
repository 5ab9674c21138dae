// JobSpec <-> vsdm.v1.JobSpec, driven by the one field list of common/job_spec.h
// (VisitJobSpecFields) and protobuf reflection over the same dotted names, so the YAML, the
// struct and the wire can never disagree about a field.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/job_spec.h"
#include "vsdm/v1/job.pb.h"

namespace vsdm {

// OK when every JobSpec field (VisitJobSpecFields) has its counterpart in `job_spec`: the same
// dotted path through singular message fields, ending in an `optional` scalar of the same type
// (int64, double, bool, string) or a `repeated double` for a list. Otherwise INTERNAL naming the
// first path job.proto lacks or declares otherwise. The unit test asserts it for the real schema.
absl::Status CheckJobSpecProtoSchema(const google::protobuf::Descriptor& job_spec = *v1::JobSpec::descriptor());

// Every field set (defaults included). REQUIRES: CheckJobSpecProtoSchema() is OK (a field job.proto
// lacks cannot be written; JobSpecFromProto refuses the result).
v1::JobSpec JobSpecToProto(const JobSpec& spec);
// Unset fields take their defaults; set ones are validated (ValidateJobSpec with `limits`).
// INVALID_ARGUMENT names the field ("spec.train.batch_points: must be in [1, 1048576], got 0"),
// or an unknown field on the wire, which this binary's job.proto lacks (a newer client's:
// "spec.train: unknown field number 10 (...)"), in any sub-message; INTERNAL names a JobSpec
// field that job.proto lacks (see CheckJobSpecProtoSchema). So no field is ever dropped silently.
absl::StatusOr<JobSpec> JobSpecFromProto(const v1::JobSpec& proto, const JobSpecLimits& limits = {});

// A stable fingerprint of a spec (Note [Job identity] in job.proto): 16 hex digits of FNV-1a 64
// over its deterministic serialization. The same spec gives the same hash in every build that
// shares job.proto's field numbers; not a security measure (the uid is the unguessable part).
std::string SpecHash(const v1::JobSpec& spec);

}  // namespace vsdm
