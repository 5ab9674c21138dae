// How the clients (vsdmctl, the worker agent, the Python-less tests) reach the coordinator: a
// channel with TLS when a CA is given (and a client certificate for mTLS), and the bearer token
// added to every call by a client interceptor (`authorization: Bearer <token>`).
#pragma once

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"

namespace vsdm {

struct ClientSecurity {
  std::string token;               // bearer token; "" = none
  std::string tls_ca;              // PEM file of the CA that signed the coordinator's certificate; "" = plaintext
  std::string tls_cert, tls_key;   // PEM files of a client certificate (mutual TLS); both or neither
  std::string tls_server_name;     // the name to verify in the server's certificate; "" = the target's host
};

// The token: read from `token_file` if given (first line, blanks trimmed), else `env_token`
// ($VSDM_TOKEN; null or "" = none). INVALID_ARGUMENT naming `flag` and the file when it cannot
// be read or is empty.
absl::StatusOr<std::string> ReadToken(const std::string& token_file, const char* env_token,
                                      const std::string& flag = "--token-file");

// A channel to `target` with `security`. INVALID_ARGUMENT naming the TLS flag whose file cannot
// be read.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& target, const ClientSecurity& security,
                                                           grpc::ChannelArguments args = {});

}  // namespace vsdm
