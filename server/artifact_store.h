// Jobs' artifact files under one root (<root>/<job_id>/<path>): chunked uploads from agents,
// written beside the target and moved into place on the last chunk, and safe path resolution
// for downloads (no absolute paths, no "..").
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "vsdm/v1/service.pb.h"

namespace vsdm::server {

class ArtifactStore {
 public:
  explicit ArtifactStore(std::string root) : root_(std::move(root)) {}

  // INVALID_ARGUMENT for a path that could leave the job's directory, or an offset that does
  // not continue the upload in progress.
  absl::Status AppendChunk(const std::string& job_id, const std::string& path, int64_t offset, const std::string& data,
                           bool last);
  // The file of an artifact, NOT_FOUND if absent.
  absl::StatusOr<std::string> Resolve(const std::string& job_id, const std::string& path) const;

  // Checkpoints (<root>/<job_id>/checkpoint/ckpt-<round>.pt, uploaded by rank 0's agent).
  // A page of at most `max_bytes` of one: `round` 0 = the newest; response round 0 when there is
  // none newer than `after_round`. NOT_FOUND when a named round is gone (pruned meanwhile),
  // INVALID_ARGUMENT for an offset past its end.
  absl::StatusOr<v1::FetchCheckpointResponse> ReadCheckpoint(const std::string& job_id, int64_t after_round,
                                                             int64_t round, int64_t offset, int64_t max_bytes) const;
  // Deletes all but the newest `keep` checkpoints of the job (and stale partial uploads of
  // older ones).
  void PruneCheckpoints(const std::string& job_id, int keep) const;
  const std::string& root() const { return root_; }

 private:
  std::string root_;
};

}  // namespace vsdm::server
