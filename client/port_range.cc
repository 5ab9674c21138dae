#include "client/port_range.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include "absl/strings/str_cat.h"

namespace vsdm::client {
namespace {

// A socket bound to 127.0.0.1:port, or -1.
int BindLoopback(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

bool PortsAreFree(int lo, int count) {
  std::vector<int> held;
  bool free = true;
  for (int p = lo; p < lo + count && free; ++p) {
    const int fd = p > 0 && p <= 65535 ? BindLoopback(p) : -1;
    if (fd < 0)
      free = false;
    else
      held.push_back(fd);
  }
  for (int fd : held) close(fd);
  return free;
}

absl::StatusOr<PortRange> ChooseFreePortRange(const PortRangeSearch& s, std::mt19937& rng) {
  if (s.count < 1 || s.min_port < 1 || s.max_port > 65536 || s.max_port - s.min_port < s.count) {
    return absl::InvalidArgumentError(absl::StrCat("port range search: want ", s.count, " ports from [", s.min_port,
                                                   ", ", s.max_port, "), within [1, 65536)"));
  }
  std::uniform_int_distribution<int> first(s.min_port, s.max_port - s.count);
  for (int i = 0; i < s.tries; ++i) {
    const int lo = first(rng);
    if (PortsAreFree(lo, s.count)) return PortRange{lo, lo + s.count - 1};
  }
  return absl::UnavailableError(absl::StrCat("no ", s.count, " free consecutive TCP ports on 127.0.0.1 in ", s.tries,
                                             " tries from [", s.min_port, ", ", s.max_port, ")"));
}

}  // namespace vsdm::client
