// A block of consecutive free TCP ports on 127.0.0.1, for the TCPStores of a local cluster's
// attempts (the coordinator's --store-port-range), so that clusters started side by side (tests
// under ctest -j, two users) do not collide on the coordinator's default range.
#pragma once

#include <random>

#include "absl/status/statusor.h"

namespace vsdm::client {

struct PortRange {
  int lo = 0;  // first port
  int hi = 0;  // last port (inclusive)
};

struct PortRangeSearch {
  int count = 64;        // consecutive ports wanted
  int min_port = 20000;  // lowest port of the range
  int max_port = 40000;  // every port of the range is below this
  int tries = 8;         // random offsets probed before giving up
};

// True when each of the ports [lo, lo + count) can be bound on 127.0.0.1 now (SO_REUSEADDR,
// as a TCPStore binds, so a port in TIME_WAIT counts as free). All are held while probing.
bool PortsAreFree(int lo, int count);

// A range of `search.count` ports that PortsAreFree, at a random offset, inside
// [min_port, max_port). UNAVAILABLE after `search.tries` ranges in use; INVALID_ARGUMENT for
// an empty or out-of-bounds search. The ports are not reserved: another process may take one
// later (the coordinator's allocation then fails and retries like any busy port).
absl::StatusOr<PortRange> ChooseFreePortRange(const PortRangeSearch& search, std::mt19937& rng);

}  // namespace vsdm::client
