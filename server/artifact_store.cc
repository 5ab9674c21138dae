#include "server/artifact_store.h"

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"

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

}  // namespace vsdm::server
