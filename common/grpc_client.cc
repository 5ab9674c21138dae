#include "common/grpc_client.h"

#include <fstream>
#include <sstream>
#include <vector>

#include <grpcpp/support/client_interceptor.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace vsdm {
namespace {

namespace gx = grpc::experimental;

class BearerInterceptor : public gx::Interceptor {
 public:
  explicit BearerInterceptor(const std::string& value) : value_(value) {}
  void Intercept(gx::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(gx::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA))
      methods->GetSendInitialMetadata()->insert({"authorization", value_});
    methods->Proceed();
  }

 private:
  const std::string& value_;  // owned by the factory, which outlives the channel's calls
};

class BearerInterceptorFactory : public gx::ClientInterceptorFactoryInterface {
 public:
  explicit BearerInterceptorFactory(const std::string& token) : value_("Bearer " + token) {}
  gx::Interceptor* CreateClientInterceptor(gx::ClientRpcInfo*) override { return new BearerInterceptor(value_); }

 private:
  const std::string value_;
};

absl::StatusOr<std::string> ReadFile(const std::string& path, const char* flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(flag, " ", path, ": cannot read it"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

absl::StatusOr<std::string> ReadToken(const std::string& token_file, const char* env_token, const std::string& flag) {
  if (token_file.empty()) return std::string(env_token ? absl::StripAsciiWhitespace(env_token) : "");
  std::ifstream in(token_file);
  std::string line;
  if (!in || !std::getline(in, line))
    return absl::InvalidArgumentError(absl::StrCat(flag, " ", token_file, ": cannot read a token from it"));
  std::string token(absl::StripAsciiWhitespace(line));
  if (token.empty()) return absl::InvalidArgumentError(absl::StrCat(flag, " ", token_file, ": the first line is empty"));
  return token;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& target, const ClientSecurity& s,
                                                           grpc::ChannelArguments args) {
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (s.tls_cert.empty() != s.tls_key.empty())
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  if (!s.tls_ca.empty()) {
    grpc::SslCredentialsOptions o;
    auto ca = ReadFile(s.tls_ca, "--tls-ca");
    if (!ca.ok()) return ca.status();
    o.pem_root_certs = *ca;
    if (!s.tls_cert.empty()) {
      auto cert = ReadFile(s.tls_cert, "--tls-cert");
      if (!cert.ok()) return cert.status();
      auto key = ReadFile(s.tls_key, "--tls-key");
      if (!key.ok()) return key.status();
      o.pem_cert_chain = *cert;
      o.pem_private_key = *key;
    }
    creds = grpc::SslCredentials(o);
    if (!s.tls_server_name.empty()) args.SetSslTargetNameOverride(s.tls_server_name);
  } else if (!s.tls_cert.empty()) {
    return absl::InvalidArgumentError("--tls-cert needs --tls-ca (a client certificate is only sent over TLS)");
  }
  if (s.token.empty()) return grpc::CreateCustomChannel(target, creds, args);
  std::vector<std::unique_ptr<gx::ClientInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<BearerInterceptorFactory>(s.token));
  return gx::CreateCustomChannelWithInterceptors(target, creds, args, std::move(interceptors));
}

}  // namespace vsdm
