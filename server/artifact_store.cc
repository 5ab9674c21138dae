#include "server/artifact_store.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/train_protocol.h"

namespace vsdm::server {
namespace fs = std::filesystem;
namespace {

absl::Status CheckPath(const std::string& job_id, const std::string& path) {
  if (job_id.empty() || job_id.find('/') != std::string::npos || job_id == "..")
    return absl::InvalidArgumentError("job_id: not a job id");
  const fs::path rel(path);
  if (path.empty() || rel.is_absolute())
    return absl::InvalidArgumentError("path: must be a relative path inside the job's artifacts");
  for (const auto& part : rel)
    if (part == ".." || part == ".") return absl::InvalidArgumentError("path: must not contain '..' or '.'");
  return absl::OkStatus();
}

}  // namespace

absl::Status ArtifactStore::AppendChunk(const std::string& job_id, const std::string& path, int64_t offset,
                                        const std::string& data, bool last) {
  if (absl::Status s = CheckPath(job_id, path); !s.ok()) return s;
  const fs::path target = fs::path(root_) / job_id / path;
  const fs::path part = target.string() + ".part";
  std::error_code ec;
  fs::create_directories(target.parent_path(), ec);
  if (ec) return absl::InternalError(absl::StrCat("artifact dir: ", ec.message()));
  const int64_t have = offset == 0 ? 0 : (fs::exists(part, ec) ? static_cast<int64_t>(fs::file_size(part, ec)) : -1);
  if (have != offset)
    return absl::InvalidArgumentError(absl::StrCat("offset: upload of ", path, " is at ", have, ", got ", offset));
  {
    std::ofstream out(part, offset == 0 ? std::ios::binary | std::ios::trunc : std::ios::binary | std::ios::app);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    if (!out) return absl::InternalError(absl::StrCat("write ", part.string()));
  }
  if (last) {
    fs::rename(part, target, ec);
    if (ec) return absl::InternalError(absl::StrCat("rename ", target.string(), ": ", ec.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ArtifactStore::Resolve(const std::string& job_id, const std::string& path) const {
  if (absl::Status s = CheckPath(job_id, path); !s.ok()) return s;
  const fs::path full = fs::path(root_) / job_id / path;
  std::error_code ec;
  if (!fs::is_regular_file(full, ec))
    return absl::NotFoundError(absl::StrCat("artifact ", path, " of ", job_id, " not found"));
  return full.string();
}

absl::StatusOr<v1::FetchCheckpointResponse> ArtifactStore::ReadCheckpoint(const std::string& job_id,
                                                                          int64_t after_round, int64_t round,
                                                                          int64_t offset, int64_t max_bytes) const {
  if (absl::Status s = CheckPath(job_id, train_protocol::kCheckpointDir); !s.ok()) return s;
  const fs::path dir = fs::path(root_) / job_id / train_protocol::kCheckpointDir;
  v1::FetchCheckpointResponse resp;
  std::string path;
  if (round == 0) {
    const auto newest = train_protocol::NewestCheckpointFile(dir.string());
    if (!newest || newest->first <= after_round) return resp;  // nothing newer
    round = newest->first;
    path = newest->second;
  } else {
    path = (dir / train_protocol::CheckpointFileName(round)).string();
  }
  std::ifstream in(path, std::ios::binary);
  std::error_code ec;
  const auto size = static_cast<int64_t>(fs::file_size(path, ec));
  if (!in || ec) return absl::NotFoundError(absl::StrCat("checkpoint of round ", round, " of ", job_id, " is gone"));
  if (offset < 0 || offset > size)
    return absl::InvalidArgumentError(absl::StrCat("offset: ", offset, " is outside the checkpoint (", size, " bytes)"));
  std::string data(static_cast<size_t>(std::min(max_bytes, size - offset)), '\0');
  in.seekg(offset);
  in.read(data.data(), static_cast<std::streamsize>(data.size()));
  if (!in) return absl::InternalError(absl::StrCat("read ", path));
  resp.set_round(round);
  resp.set_size(size);
  resp.set_offset(offset);
  resp.set_data(std::move(data));
  return resp;
}

void ArtifactStore::PruneCheckpoints(const std::string& job_id, int keep) const {
  if (!CheckPath(job_id, train_protocol::kCheckpointDir).ok()) return;
  const fs::path dir = fs::path(root_) / job_id / train_protocol::kCheckpointDir;
  std::error_code ec;
  // Called after an upload completed; one agent uploads at a time, so a .part is stale.
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string file = e.path().filename().string();
    absl::string_view name = file;
    if (absl::ConsumeSuffix(&name, ".part") && train_protocol::CheckpointRound(std::string(name))) fs::remove(e.path(), ec);
  }
  train_protocol::PruneCheckpointFiles(dir.string(), keep);
}

}  // namespace vsdm::server
