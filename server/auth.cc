#include "server/auth.h"

#include <fstream>
#include <optional>
#include <sstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace vsdm::server {
namespace {

constexpr size_t kMinTokenLength = 16;
constexpr size_t kMaxTokenLength = 512;
constexpr size_t kMaxPrincipalLength = 64;
constexpr size_t kMaxTokensFileBytes = 1 << 20;

bool PrincipalChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-' || c == '@';
}

std::optional<Role> ParseRole(absl::string_view s) {
  if (s == "user") return Role::kUser;
  if (s == "admin") return Role::kAdmin;
  if (s == "worker") return Role::kWorker;
  return std::nullopt;
}

// Equal in time that depends only on the lengths (a token compare must not leak a prefix).
bool ConstantTimeEqual(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// The bearer token of `ctx`'s call, "" when it sent none.
std::string BearerToken(const grpc::CallbackServerContext& ctx) {
  const auto& md = ctx.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) return "";
  absl::string_view v(it->second.data(), it->second.size());
  if (!absl::ConsumePrefix(&v, "Bearer ")) return "";
  return std::string(absl::StripAsciiWhitespace(v));
}

}  // namespace

const char* RoleName(Role r) {
  switch (r) {
    case Role::kUser:
      return "user";
    case Role::kAdmin:
      return "admin";
    case Role::kWorker:
      return "worker";
  }
  return "?";
}

absl::StatusOr<std::map<std::string, TokenEntry>> ParseTokens(const std::string& text, const std::string& path) {
  std::map<std::string, TokenEntry> out;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    if (auto hash = line.find('#'); hash != absl::string_view::npos) line = line.substr(0, hash);
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (f.empty()) continue;
    auto bad = [&](const std::string& why) {
      return absl::InvalidArgumentError(absl::StrCat("--auth-tokens ", path, ": line ", line_no, ": ", why));
    };
    if (f.size() != 3) return bad(absl::StrCat("want TOKEN PRINCIPAL ROLE, got ", f.size(), " fields"));
    if (f[0].size() < kMinTokenLength || f[0].size() > kMaxTokenLength)
      return bad(absl::StrCat("the token must have ", kMinTokenLength, " to ", kMaxTokenLength, " characters"));
    for (char c : f[0])
      if (c < 0x21 || c > 0x7e) return bad("the token has a character that is not printable ASCII");
    if (f[1].empty() || f[1].size() > kMaxPrincipalLength)
      return bad(absl::StrCat("the principal must have 1 to ", kMaxPrincipalLength, " characters"));
    for (char c : f[1])
      if (!PrincipalChar(c)) return bad("the principal may only have letters, digits and . _ - @");
    std::optional<Role> role = ParseRole(f[2]);
    if (!role) return bad("the role must be user, admin or worker");
    if (!out.emplace(std::string(f[0]), TokenEntry{std::string(f[1]), *role}).second)
      return bad("this token is already on an earlier line");
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::Create(AuthOptions options) {
  std::unique_ptr<Authenticator> a(new Authenticator(std::move(options)));
  if (absl::Status s = a->Reload(); !s.ok()) return s;
  return a;
}

absl::Status Authenticator::Reload() {
  if (!enabled()) return absl::OkStatus();
  std::ifstream in(options_.tokens_file, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("--auth-tokens ", options_.tokens_file, ": cannot read it"));
  std::string text(kMaxTokensFileBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > kMaxTokensFileBytes)
    return absl::InvalidArgumentError(absl::StrCat("--auth-tokens ", options_.tokens_file, ": larger than 1 MiB"));
  auto parsed = ParseTokens(text, options_.tokens_file);
  if (!parsed.ok()) return parsed.status();
  if (parsed->empty())
    return absl::InvalidArgumentError(absl::StrCat("--auth-tokens ", options_.tokens_file, ": no tokens in it"));
  absl::MutexLock lock(&mu_);
  tokens_ = std::move(*parsed);
  return absl::OkStatus();
}

std::string PeerCommonName(const grpc::CallbackServerContext& ctx) {
  std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
  if (!auth || !auth->IsPeerAuthenticated()) return "";
  for (const grpc::string_ref& v : auth->FindPropertyValues("x509_common_name")) return std::string(v.data(), v.size());
  return "";
}

absl::StatusOr<Caller> Authenticator::Identify(const grpc::CallbackServerContext& ctx) const {
  const std::string token = BearerToken(ctx);
  if (!token.empty()) {
    absl::MutexLock lock(&mu_);
    for (const auto& [t, e] : tokens_)
      if (ConstantTimeEqual(t, token)) return Caller{e.principal, e.role, true};
    return absl::UnauthenticatedError("the bearer token is not known to this coordinator");
  }
  if (std::string cn = PeerCommonName(ctx); !cn.empty() && options_.worker_cert_required)
    return Caller{cn, Role::kWorker, true};
  return absl::UnauthenticatedError(
      "no credentials: send `authorization: Bearer <token>` (vsdmctl --token-file or $VSDM_TOKEN)");
}

absl::StatusOr<Caller> Authenticator::Authorize(const grpc::CallbackServerContext& ctx, Plane plane) const {
  if (!enabled()) {
    if (plane == Plane::kWorkers && options_.worker_cert_required && PeerCommonName(ctx).empty())
      return absl::UnauthenticatedError("WorkerService needs a client certificate signed by --tls-client-ca");
    return Caller{};
  }
  absl::StatusOr<Caller> c = Identify(ctx);
  if (!c.ok()) return c.status();
  if (plane == Plane::kJobs && c->role == Role::kWorker)
    return absl::PermissionDeniedError(absl::StrCat("principal ", c->principal, " (role worker) may only call WorkerService"));
  if (plane == Plane::kWorkers) {
    if (c->role != Role::kWorker)
      return absl::PermissionDeniedError(
          absl::StrCat("principal ", c->principal, " (role ", RoleName(c->role), ") may not call WorkerService"));
    if (options_.worker_cert_required && PeerCommonName(ctx).empty())
      return absl::UnauthenticatedError("WorkerService needs a client certificate signed by --tls-client-ca");
  }
  return c;
}

}  // namespace vsdm::server
