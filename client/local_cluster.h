// `vsdmctl local up|down`: a coordinator and N worker agents on 127.0.0.1 as background
// processes (own sessions, logs and pids under a state dir), and stopping them again.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace vsdm::client {

struct LocalClusterOptions {
  std::string state_dir;     // data/, work/, logs/, pids, coordinator (its address)
  std::string bin_dir;       // where vsdm-coordinator, vsdm-worker and vsdm-train are
  int workers = 3;           // agents
  int slots = 1;             // slots per agent
  int threads_per_rank = 1;  // threads of each training rank
  double lease_seconds = 10;
};

// Starts the cluster and waits until every agent has registered. Returns the coordinator's
// address. FAILED_PRECONDITION when one is already up in `state_dir`.
absl::StatusOr<std::string> LocalClusterUp(const LocalClusterOptions& options);
// SIGTERM to every process (agents first), SIGKILL after a grace. OK when none is running.
absl::Status LocalClusterDown(const std::string& state_dir);
// The address of the cluster running from `state_dir`, if any.
absl::StatusOr<std::string> LocalClusterAddress(const std::string& state_dir);

}  // namespace vsdm::client
