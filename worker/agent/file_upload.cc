#include "worker/agent/file_upload.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/retry.h"

namespace vsdm::worker {

FileUpload::FileUpload(std::string worker_id, std::string attempt_id, std::vector<File> files)
    : worker_id_(std::move(worker_id)), attempt_id_(std::move(attempt_id)), files_(std::move(files)) {}

absl::Status FileUpload::Continue(CoordinatorClient& client, int max_chunks) {
  for (int i = 0; i < max_chunks && !done(); ++i) {
    absl::Status s = SendChunk(client);
    if (s.ok()) continue;
    if (IsRetryable(s)) {
      file_ = 0;
      offset_ = 0;
    }
    return s;
  }
  return absl::OkStatus();
}

absl::Status FileUpload::SendChunk(CoordinatorClient& client) {
  const File& f = files_[file_];
  const int fd = ::open(f.local_path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return absl::InternalError(absl::StrCat("open ", f.local_path, ": ", std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::InternalError(absl::StrCat("stat ", f.local_path, ": ", std::strerror(err)));
  }
  if (offset_ > 0 && (st.st_dev != dev_ || st.st_ino != ino_ || st.st_size != size_)) offset_ = 0;  // replaced
  if (offset_ == 0) {
    dev_ = st.st_dev;
    ino_ = st.st_ino;
    size_ = st.st_size;
  }
  std::string data(static_cast<size_t>(std::min<int64_t>(size_ - offset_, kChunkBytes)), '\0');
  size_t got = 0;
  while (got < data.size()) {
    const ssize_t n = ::pread(fd, data.data() + got, data.size() - got, offset_ + static_cast<int64_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      ::close(fd);
      return absl::InternalError(absl::StrCat("read ", f.local_path, ": ",
                                              n < 0 ? std::strerror(err) : "shorter than it was"));
    }
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  v1::UploadArtifactRequest u;
  u.set_worker_id(worker_id_);
  u.set_attempt_id(attempt_id_);
  u.set_path(f.artifact_path);
  u.set_offset(offset_);
  u.set_last(offset_ + static_cast<int64_t>(data.size()) >= size_);
  u.set_data(std::move(data));
  if (absl::Status s = client.UploadArtifact(u); !s.ok()) return s;
  bytes_sent_ += static_cast<int64_t>(u.data().size());
  offset_ += static_cast<int64_t>(u.data().size());
  if (u.last()) {
    ++file_;
    offset_ = 0;
  }
  return absl::OkStatus();
}

}  // namespace vsdm::worker
