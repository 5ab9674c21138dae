#include "server/artifact_store.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "common/train_protocol.h"

// Note [Durable artifacts]
// The last chunk of an upload is what lets the job's Complete (committed with synchronous=FULL)
// report success, so by then the file must survive a power loss, whole: PostgreSQL's rule,
// fsync the file, close it (checked), rename it over the final name, fsync the directory; a new
// directory is fsynced into its parent too. Bytes go out through pwrite loops that check every
// short write and errno, so a full disk (ENOSPC, EDQUOT, or EFBIG at a file size limit) is
// RESOURCE_EXHAUSTED to the agent and any other failure INTERNAL, never a success. A failed
// write cuts the ".part" back to where the chunk began (the agent may send it again); a failed
// fsync removes the ".part" (after an fsync error the page cache no longer says what is on
// disk), and the final name is never touched before the file is complete and synced.
// Every path is walked one component at a time with O_NOFOLLOW from the root's descriptor, so a
// symlink planted anywhere below the root is never followed, on upload or download; downloads
// read an open descriptor, so a file replaced or removed while it streams still streams whole.
// CheckPath keeps ".part" and dot-files out of the names callers may use, so an upload in
// progress can never be downloaded, and no caller can create a directory where a file belongs
// ("metrics.json/"). Files are 0600 and directories 0700 (review L4).

namespace vsdm::server {
namespace fs = std::filesystem;
namespace {

constexpr char kPartSuffix[] = ".part";
// Past this many uploads in progress (agents that died mid-upload leave theirs) the writer
// table is dropped: uploads then rely on the offset check alone until they restart.
constexpr size_t kMaxWriters = 10000;

// An owned file descriptor.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  int Release() { return std::exchange(fd_, -1); }
  // Closes it: 0, or the errno of close (EINTR counts as closed, as Linux leaves it closed).
  int Close() {
    const int fd = Release();
    return fd >= 0 && ::close(fd) != 0 && errno != EINTR ? errno : 0;
  }

 private:
  int fd_;
};

// `what` of `shown` failed with `err`: RESOURCE_EXHAUSTED when the disk is full, NOT_FOUND when
// a name is missing, FAILED_PRECONDITION when one is of the wrong kind, else INTERNAL.
absl::Status ErrnoStatus(int err, absl::string_view what, const std::string& shown) {
  std::string msg = absl::StrCat(what, " ", shown, " (artifact store): ", std::strerror(err));
  switch (err) {
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      return absl::ResourceExhaustedError(std::move(msg));
    case ENOENT:
      return absl::NotFoundError(std::move(msg));
    case ENOTDIR:
    case EISDIR:
    case ELOOP:
      return absl::FailedPreconditionError(std::move(msg));
    default:
      return absl::InternalError(std::move(msg));
  }
}

// One name of a path (a job id or a path component): see ArtifactStore::CheckPath.
absl::string_view ComponentProblem(absl::string_view part) {
  if (part.empty()) return "must not end in '/' or hold an empty component (\"a//b\")";
  if (part.size() > ArtifactStore::kMaxComponentBytes) return "no component may pass 250 bytes";
  if (part.front() == '.') return "no component may start with '.' (no \"..\", hidden or temp files)";
  if (absl::EndsWith(part, kPartSuffix)) return "no component may end in \".part\" (uploads in progress)";
  for (char c : part)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return "must not hold control characters";
  return "";
}

absl::Status CheckJobId(const std::string& job_id) {
  if (job_id.size() > ArtifactStore::kMaxPathBytes || job_id.find('/') != std::string::npos ||
      !ComponentProblem(job_id).empty())
    return absl::InvalidArgumentError(absl::StrCat("job_id: not a job id: \"", absl::CEscape(job_id), "\""));
  return absl::OkStatus();
}

absl::Status SyncDir(const std::string& dir, int (*sync)(int)) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus(errno, "open", dir);
  if (sync(fd.get()) != 0) return ErrnoStatus(errno, "fsync", dir);
  if (const int err = fd.Close(); err != 0) return ErrnoStatus(err, "close", dir);
  return absl::OkStatus();
}

// The root directory, created (with any missing parents, each fsynced into its own) when
// `create`. The root itself may be reached through symlinks: the operator chose it.
absl::StatusOr<Fd> OpenRoot(const std::string& root, bool create, int (*sync)(int)) {
  Fd fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() >= 0) return fd;
  if (errno != ENOENT || !create) return ErrnoStatus(errno, "open", root);
  fs::path prefix;
  for (const fs::path& part : fs::path(root)) {
    const std::string parent = prefix.empty() ? "." : prefix.string();
    prefix /= part;
    if (::mkdir(prefix.c_str(), 0700) == 0) {
      VSDM_RETURN_IF_ERROR(SyncDir(parent, sync));
    } else if (errno != EEXIST) {
      return ErrnoStatus(errno, "mkdir", prefix.string());
    }
  }
  fd = Fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus(errno, "open", root);
  return fd;
}

// Directory `name` in `dir`, never through a symlink; made (0700, fsynced into `dir`) when
// missing and `create`.
absl::StatusOr<Fd> OpenDirAt(const Fd& dir, const std::string& name, bool create, const std::string& shown,
                             int (*sync)(int)) {
  for (int i = 0;; ++i) {
    Fd fd(::openat(dir.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (fd.get() >= 0) return fd;
    if (errno != ENOENT || !create || i > 0) return ErrnoStatus(errno, "open directory", shown);
    if (::mkdirat(dir.get(), name.c_str(), 0700) != 0 && errno != EEXIST) return ErrnoStatus(errno, "mkdir", shown);
    if (sync(dir.get()) != 0) return ErrnoStatus(errno, "fsync the directory holding", shown);
  }
}

// The directory that holds the last of `parts` (a path CheckPath accepted) of the job.
absl::StatusOr<Fd> OpenParent(const std::string& root, const std::string& job_id, const std::vector<std::string>& parts,
                              bool create, int (*sync)(int)) {
  VSDM_ASSIGN_OR_RETURN(Fd dir, OpenRoot(root, create, sync));
  std::string shown = job_id;
  VSDM_ASSIGN_OR_RETURN(dir, OpenDirAt(dir, job_id, create, shown, sync));
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    absl::StrAppend(&shown, "/", parts[i]);
    VSDM_ASSIGN_OR_RETURN(dir, OpenDirAt(dir, parts[i], create, shown, sync));
  }
  return dir;
}

absl::Status WriteAll(const ArtifactStoreOptions& o, int fd, const std::string& data, int64_t offset,
                      const std::string& shown) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = o.pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, "write", shown);
    if (n == 0) return ErrnoStatus(EIO, "write (no progress)", shown);
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// The last chunk is in `part`: sync and close it, move it over `name`, sync the directory.
absl::Status Commit(const ArtifactStoreOptions& o, const Fd& dir, Fd part, const std::string& name,
                    const std::string& shown) {
  const std::string part_name = name + kPartSuffix;
  const std::string part_shown = shown + kPartSuffix;
  absl::Status s;
  if (o.fsync(part.get()) != 0) s = ErrnoStatus(errno, "fsync", part_shown);
  if (const int err = part.Close(); s.ok() && err != 0) s = ErrnoStatus(err, "close", part_shown);
  if (!s.ok()) {
    ::unlinkat(dir.get(), part_name.c_str(), 0);
    return s;
  }
  if (::renameat(dir.get(), part_name.c_str(), dir.get(), name.c_str()) != 0)
    return ErrnoStatus(errno, "rename to", shown);
  if (o.fsync(dir.get()) != 0) return ErrnoStatus(errno, "fsync the directory of", shown);
  return absl::OkStatus();
}

// Bytes of the regular files under `dir` (symlinks not followed); 0 when it does not exist.
int64_t BytesUnder(const fs::path& dir) {
  std::error_code ec;
  int64_t total = 0;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->symlink_status(ec).type() != fs::file_type::regular) continue;
    const auto size = it->file_size(ec);
    if (!ec) total += static_cast<int64_t>(size);
  }
  return total;
}

}  // namespace

// ---- ArtifactFile ---------------------------------------------------------------------------

ArtifactFile::ArtifactFile(ArtifactFile&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), size_(other.size_), name_(std::move(other.name_)) {}

ArtifactFile::~ArtifactFile() {
  if (fd_ >= 0) ::close(fd_);
}

absl::StatusOr<std::string> ArtifactFile::Read(int64_t offset, int64_t max_bytes) const {
  std::string out(static_cast<size_t>(std::clamp<int64_t>(size_ - offset, 0, std::max<int64_t>(max_bytes, 0))), '\0');
  size_t got = 0;
  while (got < out.size()) {
    const ssize_t n = ::pread(fd_, out.data() + got, out.size() - got, static_cast<off_t>(offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::InternalError(absl::StrCat("read ", name_, ": ", std::strerror(errno)));
    if (n == 0)
      return absl::InternalError(absl::StrCat(name_, " ended at byte ", offset + static_cast<int64_t>(got),
                                              " while being read (it had ", size_, " bytes when opened)"));
    got += static_cast<size_t>(n);
  }
  return out;
}

// ---- ArtifactStore --------------------------------------------------------------------------

// Holds the upload lock of one <job>/<path>; the entry lives while anyone holds or waits for it.
class ArtifactStore::FileLock {
 public:
  FileLock(ArtifactStore& store, std::string key) : store_(store), key_(std::move(key)) {
    {
      absl::MutexLock lock(&store_.mu_);
      entry_ = &store_.locks_[key_];
      ++entry_->users;
    }
    entry_->mu.Lock();
  }
  ~FileLock() {
    entry_->mu.Unlock();
    absl::MutexLock lock(&store_.mu_);
    if (--entry_->users == 0) store_.locks_.erase(key_);
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  ArtifactStore& store_;
  const std::string key_;
  LockEntry* entry_ = nullptr;
};

bool ArtifactStore::IsCheckpoint(const std::string& path) {
  const std::string dir = absl::StrCat(train_protocol::kCheckpointDir, "/");
  return absl::StartsWith(path, dir) && train_protocol::CheckpointRound(path.substr(dir.size())).has_value();
}

absl::Status ArtifactStore::CheckPath(const std::string& path) {
  const auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("path: ", why, ", got \"", absl::CEscape(path.substr(0, 80)), path.size() > 80 ? "...\"" : "\""));
  };
  if (path.empty()) return bad("must name a file inside the job's artifacts");
  if (path.size() > kMaxPathBytes) return bad(absl::StrCat("must be at most ", kMaxPathBytes, " bytes"));
  if (path.front() == '/') return bad("must be a relative path inside the job's artifacts");
  const std::vector<absl::string_view> parts = absl::StrSplit(path, '/');
  if (parts.size() > kMaxDepth) return bad(absl::StrCat("must have at most ", kMaxDepth, " components"));
  for (absl::string_view part : parts)
    if (absl::string_view why = ComponentProblem(part); !why.empty()) return bad(why);
  return absl::OkStatus();
}

absl::Status ArtifactStore::AppendChunk(const std::string& job_id, const std::string& path, int64_t offset,
                                        const std::string& data, bool last, const std::string& writer) {
  VSDM_RETURN_IF_ERROR(CheckJobId(job_id));
  VSDM_RETURN_IF_ERROR(CheckPath(path));
  if (offset < 0) return absl::InvalidArgumentError(absl::StrCat("offset: must be >= 0, got ", offset));
  const std::string key = absl::StrCat(job_id, "/", path);
  FileLock lock(*this, key);
  VSDM_RETURN_IF_ERROR(CheckWriter(key, offset, writer));
  absl::Status s = AppendLocked(job_id, path, offset, data, last);
  if (s.ok() && last) {
    absl::MutexLock l(&mu_);
    writers_.erase(key);
  }
  return s;
}

absl::Status ArtifactStore::CheckWriter(const std::string& key, int64_t offset, const std::string& writer) {
  absl::MutexLock lock(&mu_);
  if (offset == 0) {
    if (writers_.size() >= kMaxWriters) writers_.clear();
    writers_[key] = writer;
    return absl::OkStatus();
  }
  auto it = writers_.find(key);
  if (it == writers_.end() || it->second == writer) return absl::OkStatus();
  return absl::AbortedError(absl::StrCat("upload of ", key, " by \"", writer, "\" was restarted by \"", it->second,
                                         "\"; this one is dropped"));
}

absl::Status ArtifactStore::CheckQuota(const std::string& job_id, int64_t adding) const {
  if (options_.max_job_bytes <= 0) return absl::OkStatus();
  const int64_t held = BytesUnder(fs::path(root_) / job_id);
  if (held + adding <= options_.max_job_bytes) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat("job ", job_id, " holds ", held, " bytes of artifacts; ", adding,
                                                   " more would pass its quota of ", options_.max_job_bytes,
                                                   " bytes (max_job_bytes)"));
}

absl::Status ArtifactStore::AppendLocked(const std::string& job_id, const std::string& path, int64_t offset,
                                         const std::string& data, bool last) {
  const std::vector<std::string> parts = absl::StrSplit(path, '/');
  const std::string shown = absl::StrCat(job_id, "/", path);
  const std::string part_shown = shown + kPartSuffix;
  VSDM_ASSIGN_OR_RETURN(Fd dir, OpenParent(root_, job_id, parts, /*create=*/true, options_.fsync));
  const std::string part_name = parts.back() + kPartSuffix;
  // Only offset 0 creates (and truncates): a later chunk continues an upload or is refused.
  const int flags = O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | (offset == 0 ? O_CREAT | O_TRUNC : 0);
  Fd part(::openat(dir.get(), part_name.c_str(), flags, 0600));
  if (part.get() < 0 && errno == ENOENT)
    return absl::InvalidArgumentError(absl::StrCat("offset: no upload of ", path, " is in progress, got ", offset));
  if (part.get() < 0) return ErrnoStatus(errno, "open", part_shown);
  struct stat st;
  if (::fstat(part.get(), &st) != 0) return ErrnoStatus(errno, "stat", part_shown);
  if (!S_ISREG(st.st_mode)) return absl::FailedPreconditionError(absl::StrCat(part_shown, " is not a regular file"));
  if (st.st_size != offset)
    return absl::InvalidArgumentError(
        absl::StrCat("offset: upload of ", path, " is at ", st.st_size, ", got ", offset));
  VSDM_RETURN_IF_ERROR(CheckQuota(job_id, static_cast<int64_t>(data.size())));
  if (absl::Status s = WriteAll(options_, part.get(), data, offset, part_shown); !s.ok()) {
    (void)::ftruncate(part.get(), offset);  // best effort: the chunk may be sent again
    return s;
  }
  if (last) return Commit(options_, dir, std::move(part), parts.back(), shown);
  if (const int err = part.Close(); err != 0) return ErrnoStatus(err, "close", part_shown);
  return absl::OkStatus();
}

absl::StatusOr<ArtifactFile> ArtifactStore::Open(const std::string& job_id, const std::string& path) const {
  VSDM_RETURN_IF_ERROR(CheckJobId(job_id));
  VSDM_RETURN_IF_ERROR(CheckPath(path));
  const auto none = [&] { return absl::NotFoundError(absl::StrCat("artifact ", path, " of ", job_id, " not found")); };
  const auto missing = [](const absl::Status& s) { return absl::IsNotFound(s) || absl::IsFailedPrecondition(s); };
  const std::vector<std::string> parts = absl::StrSplit(path, '/');
  auto dir = OpenParent(root_, job_id, parts, /*create=*/false, options_.fsync);
  if (!dir.ok()) return missing(dir.status()) ? none() : dir.status();
  Fd file(::openat(dir->get(), parts.back().c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (file.get() < 0) {
    const absl::Status s = ErrnoStatus(errno, "open", absl::StrCat(job_id, "/", path));
    return missing(s) ? none() : s;
  }
  struct stat st;
  if (::fstat(file.get(), &st) != 0) return ErrnoStatus(errno, "stat", absl::StrCat(job_id, "/", path));
  if (!S_ISREG(st.st_mode)) return none();  // a directory, a FIFO, a device
  return ArtifactFile(file.Release(), static_cast<int64_t>(st.st_size), absl::StrCat(job_id, "/", path));
}

absl::StatusOr<v1::FetchCheckpointResponse> ArtifactStore::ReadCheckpoint(const std::string& job_id,
                                                                          int64_t after_round, int64_t round,
                                                                          int64_t offset, int64_t max_bytes) const {
  VSDM_RETURN_IF_ERROR(CheckJobId(job_id));
  v1::FetchCheckpointResponse resp;
  if (round == 0) {
    const fs::path dir = fs::path(root_) / job_id / train_protocol::kCheckpointDir;
    const auto newest = train_protocol::NewestCheckpointFile(dir.string());
    if (!newest || newest->first <= after_round) return resp;  // nothing newer
    round = newest->first;
  }
  auto file =
      Open(job_id, absl::StrCat(train_protocol::kCheckpointDir, "/", train_protocol::CheckpointFileName(round)));
  if (absl::IsNotFound(file.status()))
    return absl::NotFoundError(absl::StrCat("checkpoint of round ", round, " of ", job_id, " is gone"));
  if (!file.ok()) return file.status();
  if (offset < 0 || offset > file->size())
    return absl::InvalidArgumentError(
        absl::StrCat("offset: ", offset, " is outside the checkpoint (", file->size(), " bytes)"));
  VSDM_ASSIGN_OR_RETURN(std::string data, file->Read(offset, max_bytes));
  resp.set_round(round);
  resp.set_size(file->size());
  resp.set_offset(offset);
  resp.set_data(std::move(data));
  return resp;
}

void ArtifactStore::PruneCheckpoints(const std::string& job_id, int keep) const {
  if (!CheckJobId(job_id).ok()) return;
  const fs::path dir = fs::path(root_) / job_id / train_protocol::kCheckpointDir;
  std::error_code ec;
  // Called after an upload completed; one agent uploads at a time, so a .part is stale.
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string file = e.path().filename().string();
    absl::string_view name = file;
    if (absl::ConsumeSuffix(&name, kPartSuffix) && train_protocol::CheckpointRound(std::string(name)))
      fs::remove(e.path(), ec);
  }
  train_protocol::PruneCheckpointFiles(dir.string(), keep);
}

}  // namespace vsdm::server
