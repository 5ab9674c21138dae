// Files of one attempt sent to the coordinator's artifact store (UploadArtifact), a slice at a
// time (Note [Uploads in slices]).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "worker/agent/coordinator_client.h"

namespace vsdm::worker {

// Note [Uploads in slices]
// A rank 0's model.pt or checkpoint can be hundreds of MiB: that many 1 MiB RPCs. The agent's
// loop sends them a bounded number per turn and reads each chunk from the file as it goes
// (never the whole file in memory, review L7), so between slices it still reaps exits, stops
// aborted attempts and applies the fence; heartbeats run on their own thread and never wait
// for an upload at all (Note [Heartbeats from their own thread] in agent.h). A retryable error
// (the coordinator away) starts the whole set over at its first file, as the artifact store
// truncates a file uploaded again from offset 0; a file that changed under the upload (another
// inode or size) is sent again from its start.
class FileUpload {
 public:
  static constexpr size_t kChunkBytes = size_t{1} << 20;
  struct File {
    std::string local_path;     // read as it is sent
    std::string artifact_path;  // UploadArtifactRequest.path
  };

  FileUpload() = default;
  FileUpload(std::string worker_id, std::string attempt_id, std::vector<File> files);

  // Sends up to `max_chunks` chunks. OK: done(), or more to send next call. Otherwise the
  // client's error (after a retryable one the upload is back at its first file) or INTERNAL
  // naming a file that cannot be read.
  absl::Status Continue(CoordinatorClient& client, int max_chunks);
  bool done() const { return file_ >= files_.size(); }
  int64_t bytes_sent() const { return bytes_sent_; }  // in all, retries included

 private:
  absl::Status SendChunk(CoordinatorClient& client);

  std::string worker_id_, attempt_id_;
  std::vector<File> files_;
  size_t file_ = 0;     // the file being sent
  int64_t offset_ = 0;  // of its next chunk
  dev_t dev_ = 0;       // its identity when its first chunk went
  ino_t ino_ = 0;
  int64_t size_ = 0;
  int64_t bytes_sent_ = 0;
};

}  // namespace vsdm::worker
