// Jobs' artifact files under one root (<root>/<job_id>/<path>): chunked uploads from agents,
// written beside the target and moved into place on the last chunk, and safe path resolution
// for downloads (no absolute paths, no "..").
#pragma once

#include <string>

#include "absl/status/statusor.h"

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
  const std::string& root() const { return root_; }

 private:
  std::string root_;
};

}  // namespace vsdm::server
