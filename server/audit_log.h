// The audit log: one JSON line per mutating call (time, principal, role, method, job, result
// code), appended to --audit-log (default <data-dir>/audit.log, mode 0600). Heartbeats and
// progress reports are logged only when refused (they arrive every few seconds from every
// worker; the lease and progress they carry are in /metrics and the job's events).
#pragma once

#include <cstdio>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/auth.h"

namespace vsdm::server {

class AuditLog {
 public:
  // "" = off. The error names the file.
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(const std::string& path);
  ~AuditLog();

  // One line: {"time": RFC 3339, "principal", "role", "method", "job", "code"}; a caller that
  // was not authenticated is principal "" and role "".
  void Record(const absl::StatusOr<Caller>& caller, const char* method, const std::string& job,
              const absl::Status& result);

 private:
  explicit AuditLog(std::FILE* f) : f_(f) {}
  absl::Mutex mu_;
  std::FILE* f_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace vsdm::server
