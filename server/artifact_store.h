// Jobs' artifact files under one root (<root>/<job_id>/<path>): chunked uploads from agents,
// written beside the target as "<name>.part", made durable and moved into place on the last
// chunk, and downloads that open only complete regular files inside the job's directory.
// See Note [Durable artifacts] in artifact_store.cc.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "vsdm/v1/service.pb.h"

namespace vsdm::server {

struct ArtifactStoreOptions {
  // Bytes one job may hold under the root (finished files, partial uploads, checkpoints); a chunk
  // that would pass it is refused with RESOURCE_EXHAUSTED naming the quota. 0 = no quota.
  int64_t max_job_bytes = int64_t{64} << 30;
  // The calls that put bytes on the disk; tests replace them to play a failing disk.
  ssize_t (*pwrite)(int fd, const void* buf, size_t n, off_t offset) = ::pwrite;
  int (*fsync)(int fd) = ::fsync;
};

// An artifact opened for reading. The bytes are those of the file when it was opened: a
// replacement uploaded meanwhile, or a removal, does not change what Read returns.
// Move-only; closes the file when destroyed.
class ArtifactFile {
 public:
  ArtifactFile(int fd, int64_t size, std::string name) : fd_(fd), size_(size), name_(std::move(name)) {}
  ArtifactFile(ArtifactFile&& other) noexcept;
  ArtifactFile& operator=(ArtifactFile&&) = delete;
  ArtifactFile(const ArtifactFile&) = delete;
  ~ArtifactFile();

  int64_t size() const { return size_; }
  // Exactly min(max_bytes, size() - offset) bytes from `offset`. INTERNAL naming the file when a
  // read fails or the file ends early (it was truncated under us): never a short page.
  // REQUIRES: 0 <= offset <= size(), max_bytes >= 0.
  absl::StatusOr<std::string> Read(int64_t offset, int64_t max_bytes) const;

 private:
  int fd_;
  int64_t size_;
  std::string name_;  // <job_id>/<path>, for messages
};

// Thread-safe: the gRPC threads of both services call it concurrently.
class ArtifactStore {
 public:
  explicit ArtifactStore(std::string root, ArtifactStoreOptions options = {})
      : root_(std::move(root)), options_(options) {}

  // Writes `data` at `offset` of the upload of `path` (offset 0 starts it over, truncating);
  // `last` makes the file durable and puts it in place. `writer` names the uploader (e.g. its
  // attempt): once another writer restarted the upload, a chunk past offset 0 of the earlier
  // one is ABORTED, so a file never mixes two uploads. Chunks of one path are serialized.
  // INVALID_ARGUMENT for a job id or path that CheckPath refuses, or an offset that does not
  // continue the upload in progress; RESOURCE_EXHAUSTED at the job's quota or when the disk is
  // full (ENOSPC, EDQUOT, EFBIG); INTERNAL for any other write, fsync, close or rename failure.
  // On an error the final name is untouched (a file there before stays as it was).
  absl::Status AppendChunk(const std::string& job_id, const std::string& path, int64_t offset, const std::string& data,
                           bool last, const std::string& writer = "");
  // A complete artifact, opened for reading: INVALID_ARGUMENT as for AppendChunk (so a ".part"
  // upload can never be read), NOT_FOUND when there is no such regular file (a symlink or a
  // directory, anywhere on the way, counts as none).
  absl::StatusOr<ArtifactFile> Open(const std::string& job_id, const std::string& path) const;

  // Checkpoints (<root>/<job_id>/checkpoint/ckpt-<round>.pt, uploaded by rank 0's agent).
  // A page of at most `max_bytes` of one: `round` 0 = the newest; response round 0 when there is
  // none newer than `after_round`. NOT_FOUND when a named round is gone (pruned meanwhile),
  // INVALID_ARGUMENT for an offset outside it.
  absl::StatusOr<v1::FetchCheckpointResponse> ReadCheckpoint(const std::string& job_id, int64_t after_round,
                                                             int64_t round, int64_t offset, int64_t max_bytes) const;
  // Deletes all but the newest `keep` checkpoints of the job (and stale partial uploads of
  // older ones).
  void PruneCheckpoints(const std::string& job_id, int keep) const;
  const std::string& root() const { return root_; }

  // OK for an artifact path the store accepts: relative, at most kMaxPathBytes and kMaxDepth
  // components of at most kMaxComponentBytes (room for ".part" within NAME_MAX), none empty
  // (no trailing or doubled '/'), none starting with '.' or ending in ".part", no control
  // characters. Else INVALID_ARGUMENT naming `path`.
  static absl::Status CheckPath(const std::string& path);
  // True for `checkpoint/ckpt-<round>.pt`, the files the agents upload while a job runs.
  static bool IsCheckpoint(const std::string& path);
  static constexpr size_t kMaxPathBytes = 255;
  static constexpr size_t kMaxDepth = 4;
  static constexpr size_t kMaxComponentBytes = 250;

 private:
  class FileLock;
  struct LockEntry {
    absl::Mutex mu;
    int users = 0;
  };
  absl::Status AppendLocked(const std::string& job_id, const std::string& path, int64_t offset, const std::string& data,
                            bool last);
  absl::Status CheckWriter(const std::string& key, int64_t offset, const std::string& writer);
  absl::Status CheckQuota(const std::string& job_id, int64_t adding) const;

  const std::string root_;
  const ArtifactStoreOptions options_;
  absl::Mutex mu_;
  std::map<std::string, LockEntry> locks_ ABSL_GUARDED_BY(mu_);      // <job>/<path> -> its upload lock
  std::map<std::string, std::string> writers_ ABSL_GUARDED_BY(mu_);  // <job>/<path> -> writer of the upload
};

}  // namespace vsdm::server
