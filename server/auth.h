// Who is calling: bearer tokens (`authorization: Bearer <token>`) read from the --auth-tokens
// file, and the client certificate of a mutual-TLS connection. Every RPC handler of JobService
// and WorkerService starts with Authorize() (gRPC 1.51's server interceptors cannot fail a call
// and its AuthMetadataProcessor only runs on TLS ports, so the check is one function that every
// handler calls first; AuthMatrixTest calls every RPC with every kind of caller).
//
// The tokens file: one token a line, `TOKEN PRINCIPAL ROLE`, fields separated by blanks; `#`
// starts a comment; roles `user` (submits, and sees and cancels its own jobs only), `admin`
// (every job, the worker list), `worker` (WorkerService only). Re-read on SIGHUP; a file that does
// not parse keeps the previous table. Without a tokens file every caller is an unauthenticated
// admin (the coordinator then listens on loopback only, unless --insecure).
#pragma once

#include <map>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace vsdm::server {

enum class Role { kUser, kAdmin, kWorker };
const char* RoleName(Role r);

struct Caller {
  std::string principal;  // "" when auth is off
  Role role = Role::kAdmin;
  bool authenticated = false;  // false: auth is off (the open, loopback-only mode)
};

// Which callers a method admits.
enum class Plane { kJobs, kWorkers };

struct AuthOptions {
  std::string tokens_file;         // "" = auth off
  bool worker_cert_required = false;  // --tls-client-ca: WorkerService callers need a verified client cert
};

// The token table. INVALID_ARGUMENT naming the file and line (never the token) for a bad line,
// a duplicate token, a token shorter than 16 characters, or an unknown role.
struct TokenEntry {
  std::string principal;
  Role role;
};
absl::StatusOr<std::map<std::string, TokenEntry>> ParseTokens(const std::string& text, const std::string& path);

class Authenticator {
 public:
  // Reads the tokens file (if any). The error names the file and line.
  static absl::StatusOr<std::unique_ptr<Authenticator>> Create(AuthOptions options);

  bool enabled() const { return !options_.tokens_file.empty(); }
  // Re-reads the tokens file; on error keeps the current table and says why. OK and no-op when off.
  absl::Status Reload();

  // The caller of `ctx`, admitted to `plane`: UNAUTHENTICATED without a known token (or, for
  // the worker plane with worker_cert_required, without a verified client certificate),
  // PERMISSION_DENIED for a role the plane does not admit. A worker with a client certificate
  // and no token is the certificate's common name, role worker.
  absl::StatusOr<Caller> Authorize(const grpc::CallbackServerContext& ctx, Plane plane) const;

 private:
  explicit Authenticator(AuthOptions options) : options_(std::move(options)) {}
  absl::StatusOr<Caller> Identify(const grpc::CallbackServerContext& ctx) const;

  const AuthOptions options_;
  mutable absl::Mutex mu_;
  std::map<std::string, TokenEntry> tokens_ ABSL_GUARDED_BY(mu_);
};

// The verified client certificate's common name, "" when there is none.
std::string PeerCommonName(const grpc::CallbackServerContext& ctx);

}  // namespace vsdm::server
