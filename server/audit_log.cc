#include "server/audit_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace vsdm::server {

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& path) {
  if (path.empty()) return std::unique_ptr<AuditLog>(new AuditLog(nullptr));
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return absl::InvalidArgumentError(absl::StrCat("--audit-log ", path, ": ", std::strerror(errno)));
  std::FILE* f = fdopen(fd, "a");
  if (f == nullptr) {
    close(fd);
    return absl::InternalError(absl::StrCat("--audit-log ", path, ": fdopen failed"));
  }
  return std::unique_ptr<AuditLog>(new AuditLog(f));
}

AuditLog::~AuditLog() {
  absl::MutexLock lock(&mu_);
  if (f_) std::fclose(f_);
}

void AuditLog::Record(const absl::StatusOr<Caller>& caller, const char* method, const std::string& job,
                      const absl::Status& result) {
  nlohmann::json line = {
      {"time", absl::FormatTime(absl::RFC3339_full, absl::Now(), absl::UTCTimeZone())},
      {"principal", !caller.ok() ? "" : caller->authenticated ? caller->principal : "(auth off)"},
      {"role", caller.ok() ? RoleName(caller->role) : ""},
      {"method", method},
      {"job", job.substr(0, 64)},
      {"code", absl::StatusCodeToString(result.code())},
  };
  const std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  absl::MutexLock lock(&mu_);
  if (f_ == nullptr) return;
  std::fwrite(text.data(), 1, text.size(), f_);
  std::fflush(f_);
}

}  // namespace vsdm::server
