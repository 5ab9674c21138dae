// The coordinator's artifact store: the checkpoints that carry a job between workers with no
// shared disk (paging, "nothing newer", pruning to the newest two), its path checks, and the
// durability rules of review H5 (disk errors reported, partial and symlinked files never served,
// concurrent uploads of one file never mixed, a per-job quota).
#include "server/artifact_store.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

#include "common/file_util.h"
#include "common/train_protocol.h"

namespace vsdm::server {
namespace {
namespace fs = std::filesystem;
namespace tp = train_protocol;

class ArtifactStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = (fs::temp_directory_path() / ("vsdm_artifact_store_test_" + std::to_string(::getpid()))).string();
    fs::remove_all(root_);
  }
  void TearDown() override {
    fs::remove_all(root_);
    fs::remove_all(root_ + "-outside");
  }
  // Uploads `data` as checkpoint `round` of job j1 in chunks of 3 bytes, as an agent would.
  void Upload(int64_t round, const std::string& data) {
    const std::string path = std::string(tp::kCheckpointDir) + "/" + tp::CheckpointFileName(round);
    for (size_t off = 0; off < data.size() || off == 0; off += 3) {
      ASSERT_TRUE(
          store_.AppendChunk("j1", path, static_cast<int64_t>(off), data.substr(off, 3), off + 3 >= data.size()).ok());
      if (data.empty()) break;
    }
  }
  // The whole artifact `path` of job j1 as `store` serves it, or the error.
  absl::StatusOr<std::string> Download(const std::string& path, const ArtifactStore& store) {
    auto file = store.Open("j1", path);
    if (!file.ok()) return file.status();
    return file->Read(0, file->size());
  }
  absl::StatusOr<std::string> Download(const std::string& path) { return Download(path, store_); }
  std::string root_;
  ArtifactStore store_{
      (fs::temp_directory_path() / ("vsdm_artifact_store_test_" + std::to_string(::getpid()))).string()};
};

TEST_F(ArtifactStoreTest, ServesTheNewestCheckpointInPagesAndNothingWhenTheCallerHasItsRound) {
  auto none = store_.ReadCheckpoint("j1", 0, 0, 0, 4);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->round(), 0);
  Upload(10, "ten-bytes!");
  Upload(30, "thirty, eleven");
  auto first = store_.ReadCheckpoint("j1", 0, 0, 0, 4);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->round(), 30);
  EXPECT_EQ(first->size(), 14);
  EXPECT_EQ(first->data(), "thir");
  auto last = store_.ReadCheckpoint("j1", 0, 30, 12, 4);
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->data(), "en");
  EXPECT_EQ(last->offset(), 12);
  EXPECT_EQ(store_.ReadCheckpoint("j1", 30, 0, 0, 4)->round(), 0);  // the caller has round 30
  EXPECT_EQ(store_.ReadCheckpoint("j1", 99, 0, 0, 4)->round(), 0);
  EXPECT_EQ(store_.ReadCheckpoint("j1", 0, 30, 15, 4).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_.ReadCheckpoint("j1", 0, 20, 0, 4).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_.ReadCheckpoint("..", 0, 0, 0, 4).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ArtifactStoreTest, PruningKeepsTheNewestTwoAndDropsStalePartialUploads) {
  Upload(10, "a");
  Upload(20, "b");
  Upload(30, "c");
  const fs::path dir = fs::path(root_) / "j1" / tp::kCheckpointDir;
  ASSERT_TRUE(AtomicWriteFile((dir / (tp::CheckpointFileName(5) + ".part")).string(), "half").ok());
  ASSERT_TRUE(AtomicWriteFile((dir / "notes.txt").string(), "kept").ok());
  store_.PruneCheckpoints("j1", 2);
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(dir)) left.push_back(e.path().filename().string());
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{tp::CheckpointFileName(20), tp::CheckpointFileName(30), "notes.txt"}));
  store_.PruneCheckpoints("no-such-job", 2);  // nothing to do, no error
}

// ---- review H5: paths ---------------------------------------------------------------------

TEST_F(ArtifactStoreTest, RefusesPathsThatCouldShadowHideOrEscapeFiles) {
  const std::vector<std::string> bad = {"",
                                        "metrics.json/",
                                        "a//b",
                                        "/etc/passwd",
                                        "a/b/c/d/e",
                                        std::string(256, 'x'),
                                        std::string(251, 'x'),
                                        "model.pt.part",
                                        "checkpoint/ckpt-00000010.pt.part",
                                        "sub.part/x",
                                        ".hidden",
                                        ".tmp-metrics.json-1",
                                        "..",
                                        "../../vsdm.db",
                                        "a/./b",
                                        "line\nbreak",
                                        std::string("nul\0byte", 8),
                                        "del\x7f"};
  for (const std::string& path : bad) {
    const absl::Status up = store_.AppendChunk("j1", path, 0, "x", true);
    EXPECT_EQ(up.code(), absl::StatusCode::kInvalidArgument) << absl::CEscape(path) << ": " << up;
    EXPECT_TRUE(absl::StartsWith(up.message(), "path: ")) << up;
    EXPECT_EQ(store_.Open("j1", path).status().code(), absl::StatusCode::kInvalidArgument) << absl::CEscape(path);
  }
  EXPECT_EQ(store_.AppendChunk("..", "metrics.json", 0, "x", true).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_.AppendChunk("j/1", "metrics.json", 0, "x", true).code(), absl::StatusCode::kInvalidArgument);
  // Nothing was made for them: no directory, no file.
  EXPECT_FALSE(fs::exists(fs::path(root_) / "j1" / "metrics.json"));
  EXPECT_FALSE(fs::exists(fs::path(root_) / "j1" / "a"));
  // The limits themselves are allowed: 4 components, 255 bytes, a 250-byte component.
  ASSERT_TRUE(store_.AppendChunk("j1", "a/b/c/d", 0, "deep", true).ok());
  const std::string longest = std::string(250, 'y') + "/zzzz";
  ASSERT_TRUE(store_.AppendChunk("j1", longest, 0, "long", true).ok());
  EXPECT_EQ(*Download(longest), "long");
}

TEST_F(ArtifactStoreTest, ATrailingSlashUploadDoesNotBlockTheRealFile) {
  // Before: "metrics.json/" made a directory of that name and every later upload of the real
  // file failed at rename, so the job could never succeed.
  EXPECT_EQ(store_.AppendChunk("j1", "metrics.json/", 0, "{}", true).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(store_.AppendChunk("j1", "metrics.json", 0, "{\"ok\":", false).ok());
  ASSERT_TRUE(store_.AppendChunk("j1", "metrics.json", 6, "1}", true).ok());
  EXPECT_EQ(*Download("metrics.json"), "{\"ok\":1}");
}

TEST_F(ArtifactStoreTest, APartialUploadIsNeverServedAndFilesArePrivate) {
  ASSERT_TRUE(store_.AppendChunk("j1", "model.pt", 0, "abc", false).ok());
  ASSERT_TRUE(fs::exists(fs::path(root_) / "j1" / "model.pt.part"));
  EXPECT_EQ(store_.Open("j1", "model.pt.part").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_.Open("j1", "model.pt").status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(store_.AppendChunk("j1", "model.pt", 3, "def", true).ok());
  EXPECT_EQ(*Download("model.pt"), "abcdef");
  EXPECT_FALSE(fs::exists(fs::path(root_) / "j1" / "model.pt.part"));
  // Review L4: 0600 files, 0700 directories (the umask can only narrow them).
  struct stat st;
  ASSERT_EQ(::stat((fs::path(root_) / "j1" / "model.pt").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  ASSERT_EQ(::stat((fs::path(root_) / "j1").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0077, 0);
}

TEST_F(ArtifactStoreTest, NegativeOrDiscontinuousOffsetsAreRefused) {
  // Before: offset -1 was "where the upload is" when there was none, and accepted.
  absl::Status s = store_.AppendChunk("j1", "samples.npy", -1, "x", true);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(s.message(), "offset: ")) << s;
  EXPECT_EQ(store_.AppendChunk("j1", "samples.npy", 5, "x", true).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(fs::path(root_) / "j1" / "samples.npy.part"));  // a refused chunk makes nothing
  ASSERT_TRUE(store_.AppendChunk("j1", "samples.npy", 0, "abc", false).ok());
  EXPECT_EQ(store_.AppendChunk("j1", "samples.npy", 4, "x", true).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_.AppendChunk("j1", "samples.npy", 2, "x", true).code(), absl::StatusCode::kInvalidArgument);
  // Restarting at 0 truncates: the file is the new upload only.
  ASSERT_TRUE(store_.AppendChunk("j1", "samples.npy", 0, "xy", true).ok());
  EXPECT_EQ(*Download("samples.npy"), "xy");
}

// ---- review H5: disk errors ---------------------------------------------------------------

// Plays a disk that fails every write with `errno_to_fail`.
template <int errno_to_fail>
ssize_t FailingPwrite(int, const void*, size_t, off_t) {
  errno = errno_to_fail;
  return -1;
}
// Writes one byte a call: every write is short.
ssize_t OneBytePwrite(int fd, const void* buf, size_t n, off_t off) { return ::pwrite(fd, buf, n > 0 ? 1 : 0, off); }
// Fails the fsync of regular files (the data), not of directories.
int FailingFileFsync(int fd) {
  struct stat st;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
    errno = EIO;
    return -1;
  }
  return ::fsync(fd);
}

TEST_F(ArtifactStoreTest, AFileSizeLimitMidUploadIsResourceExhaustedAndNoFileTakesTheFinalName) {
  // A real kernel refusal without root: RLIMIT_FSIZE makes the write past it short and then EFBIG
  // (SIGXFSZ ignored). Before, the buffered tail was lost in the ofstream's unchecked close and
  // the truncated file was renamed into place as a success.
  ASSERT_TRUE(store_.AppendChunk("j1", "metrics.json", 0, "old", true).ok());
  const std::string head(8000, 'h'), tail(4000, 't');
  ASSERT_TRUE(store_.AppendChunk("j1", "metrics.json", 0, head, false).ok());
  struct rlimit old_limit;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  struct rlimit small = old_limit;
  small.rlim_cur = 10000;
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  const absl::Status s = store_.AppendChunk("j1", "metrics.json", 8000, tail, true);
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  ::signal(SIGXFSZ, old_handler);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "j1/metrics.json.part")) << s;
  EXPECT_EQ(*Download("metrics.json"), "old");  // the final name is untouched
  // The failed chunk was cut off again, so the agent can send it once there is room.
  EXPECT_EQ(fs::file_size(fs::path(root_) / "j1" / "metrics.json.part"), 8000u);
  ASSERT_TRUE(store_.AppendChunk("j1", "metrics.json", 8000, tail, true).ok());
  EXPECT_EQ(*Download("metrics.json"), head + tail);
}

TEST_F(ArtifactStoreTest, InjectedDiskErrorsAreErrorsNamingThePathNeverSuccess) {
  ArtifactStoreOptions full;
  full.pwrite = FailingPwrite<ENOSPC>;
  ArtifactStore full_disk(root_, full);
  absl::Status s = full_disk.AppendChunk("j1", "model.pt", 0, "abc", true);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "j1/model.pt.part")) << s;
  ArtifactStoreOptions eio;
  eio.pwrite = FailingPwrite<EIO>;
  s = ArtifactStore(root_, eio).AppendChunk("j1", "model.pt", 0, "abc", true);
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "j1/model.pt.part")) << s;
  EXPECT_EQ(store_.Open("j1", "model.pt").status().code(), absl::StatusCode::kNotFound);
  // An fsync error on the last chunk: an error, and the unsynced upload is dropped whole.
  ArtifactStoreOptions bad_sync;
  bad_sync.fsync = FailingFileFsync;
  ASSERT_TRUE(store_.AppendChunk("j1", "model.pt", 0, "abc", false).ok());
  s = ArtifactStore(root_, bad_sync).AppendChunk("j1", "model.pt", 3, "def", true);
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "fsync j1/model.pt.part")) << s;
  EXPECT_FALSE(fs::exists(fs::path(root_) / "j1" / "model.pt"));
  EXPECT_FALSE(fs::exists(fs::path(root_) / "j1" / "model.pt.part"));
  // Short writes are continued, not taken for the whole chunk.
  ArtifactStoreOptions short_writes;
  short_writes.pwrite = OneBytePwrite;
  ASSERT_TRUE(ArtifactStore(root_, short_writes).AppendChunk("j1", "model.pt", 0, "abcdef", true).ok());
  EXPECT_EQ(*Download("model.pt"), "abcdef");
}

// ---- review H5: downloads -----------------------------------------------------------------

TEST_F(ArtifactStoreTest, SymlinksAreNeverFollowedOnDownloadOrUpload) {
  const fs::path outside = fs::path(root_ + "-outside");
  fs::remove_all(outside);
  fs::create_directories(outside);
  std::ofstream(outside / "secret") << "secret";
  ASSERT_TRUE(store_.AppendChunk("j1", "metrics.json", 0, "{}", true).ok());
  fs::create_symlink(outside / "secret", fs::path(root_) / "j1" / "samples.png");
  fs::create_directory_symlink(outside, fs::path(root_) / "j1" / "sub");
  fs::create_symlink(outside / "secret", fs::path(root_) / "j1" / "forecast.png.part");
  fs::create_directory(fs::path(root_) / "j1" / "adir");
  EXPECT_EQ(store_.Open("j1", "samples.png").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_.Open("j1", "sub/secret").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_.Open("j1", "adir").status().code(), absl::StatusCode::kNotFound);
  // Uploads through the planted links fail instead of writing outside the root.
  EXPECT_FALSE(store_.AppendChunk("j1", "sub/x.npy", 0, "x", true).ok());
  EXPECT_FALSE(store_.AppendChunk("j1", "forecast.png", 0, "overwritten", true).ok());
  EXPECT_FALSE(fs::exists(outside / "x.npy"));
  std::stringstream secret;
  secret << std::ifstream(outside / "secret").rdbuf();
  EXPECT_EQ(secret.str(), "secret");
}

TEST_F(ArtifactStoreTest, AnOpenedFileStreamsWholeWhenReplacedOrRemovedAndFailsWhenCutShort) {
  const std::string data(100000, 'd');
  ASSERT_TRUE(store_.AppendChunk("j1", "samples.npy", 0, data, true).ok());
  auto file = store_.Open("j1", "samples.npy");
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_TRUE(store_.AppendChunk("j1", "samples.npy", 0, "new", true).ok());  // replaced...
  fs::remove(fs::path(root_) / "j1" / "samples.npy");                         // ...and removed
  EXPECT_EQ(file->size(), 100000);
  EXPECT_EQ(*file->Read(0, 65536), data.substr(0, 65536));
  EXPECT_EQ(*file->Read(65536, 65536), data.substr(65536));
  // Cut short under the reader (something outside the store truncated it): an error naming
  // the file, never a short page that a stream would pass on as the end of the file.
  ASSERT_TRUE(store_.AppendChunk("j1", "targets.npy", 0, data, true).ok());
  auto cut = store_.Open("j1", "targets.npy");
  ASSERT_TRUE(cut.ok()) << cut.status();
  fs::resize_file(fs::path(root_) / "j1" / "targets.npy", 70000);
  EXPECT_EQ(cut->Read(0, 65536)->size(), 65536u);
  const auto rest = cut->Read(65536, 65536);
  EXPECT_EQ(rest.status().code(), absl::StatusCode::kInternal) << rest.status();
  EXPECT_TRUE(absl::StrContains(rest.status().message(), "j1/targets.npy ended at byte 70000")) << rest.status();
}

// ---- review H5: concurrent uploads and quota ------------------------------------------------

TEST_F(ArtifactStoreTest, AnUploadRestartedByAnotherWriterDropsTheEarlierOne) {
  ASSERT_TRUE(store_.AppendChunk("j1", "model.pt", 0, "aaa", false, "attempt-1").ok());
  ASSERT_TRUE(store_.AppendChunk("j1", "model.pt", 0, "bbb", false, "attempt-2").ok());
  // Before, attempt-1's next chunk landed after attempt-2's first: "bbbaaa".
  const absl::Status s = store_.AppendChunk("j1", "model.pt", 3, "aaa", true, "attempt-1");
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  ASSERT_TRUE(store_.AppendChunk("j1", "model.pt", 3, "bbb", true, "attempt-2").ok());
  EXPECT_EQ(*Download("model.pt"), "bbbbbb");
}

TEST_F(ArtifactStoreTest, ConcurrentUploadsOfOneFileNeverInterleave) {
  constexpr int kChunks = 200;
  constexpr size_t kChunk = 512;
  absl::Status result[2];
  auto upload = [&](int w) {
    const std::string chunk(kChunk, w == 0 ? 'a' : 'b');
    for (int i = 0; i < kChunks; ++i) {
      result[w] = store_.AppendChunk("j1", "samples.npy", static_cast<int64_t>(i * kChunk), chunk, i + 1 == kChunks,
                                     absl::StrCat("writer-", w));
      if (!result[w].ok()) return;
    }
  };
  for (int round = 0; round < 20; ++round) {
    std::thread a(upload, 0), b(upload, 1);
    a.join();
    b.join();
    ASSERT_TRUE(result[0].ok() || result[1].ok()) << result[0] << " / " << result[1];
    for (const absl::Status& r : result) EXPECT_TRUE(r.ok() || absl::IsAborted(r) || absl::IsInvalidArgument(r)) << r;
    const std::string got = *Download("samples.npy");
    ASSERT_EQ(got.size(), kChunks * kChunk);
    EXPECT_EQ(got, std::string(got.size(), got[0])) << "round " << round << ": two uploads mixed";
  }
}

TEST_F(ArtifactStoreTest, AJobPastItsQuotaIsRefusedNamingTheQuota) {
  ArtifactStoreOptions options;
  options.max_job_bytes = 10;
  ArtifactStore small(root_, options);
  ASSERT_TRUE(small.AppendChunk("j1", "a.npy", 0, "12345678", true).ok());
  const absl::Status s = small.AppendChunk("j1", "b.npy", 0, "1234", true);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "quota of 10 bytes")) << s;
  EXPECT_EQ(small.Open("j1", "b.npy").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(small.AppendChunk("j1", "b.npy", 0, "12", true).ok());    // exactly at the quota
  EXPECT_TRUE(small.AppendChunk("j2", "b.npy", 0, "1234", true).ok());  // per job
  options.max_job_bytes = 0;                                            // 0 = none
  EXPECT_TRUE(ArtifactStore(root_, options).AppendChunk("j1", "c.npy", 0, std::string(100, 'c'), true).ok());
}

}  // namespace
}  // namespace vsdm::server
