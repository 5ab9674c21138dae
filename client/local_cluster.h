// `vsdmctl local up|down`: a coordinator and N worker agents on 127.0.0.1 as background
// processes (own sessions, logs and pids under a state dir), and stopping them again.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/port_range.h"

namespace vsdm::client {

struct LocalClusterOptions {
  std::string state_dir;     // data/, work/, logs/, pids, coordinator (its address)
  std::string bin_dir;       // where vsdm-coordinator, vsdm-worker and vsdm-train are
  int workers = 3;           // agents
  int slots = 1;             // slots per agent
  int threads_per_rank = 1;  // threads of each training rank
  double lease_seconds = 10;
  // The coordinator's TCPStore ports (--store-port-range): a free block found by this search.
  PortRangeSearch store_ports;
  absl::Duration start_timeout = absl::Seconds(10);     // until the coordinator has its ports
  absl::Duration register_timeout = absl::Seconds(30);  // until every agent has registered
};

// Starts the cluster and waits until every agent has registered. Returns the coordinator's
// address. Each process is added to <state_dir>/pids as it starts (coordinator first), so
// LocalClusterDown can stop a half-started cluster. On any failure it stops every process it
// started and removes the state files it wrote (pids, coordinator, ports, worker-N.port,
// prometheus-targets.json; the logs stay). FAILED_PRECONDITION when a process of a cluster is
// still running from `state_dir` or a binary is missing; UNAVAILABLE when a process exits
// during start-up or does not come up in time, or no free store port range is found;
// INTERNAL when the state dir cannot be written or a binary cannot be started.
absl::StatusOr<std::string> LocalClusterUp(const LocalClusterOptions& options);
// SIGTERM to every process (agents first), SIGKILL after a grace. OK when none is running.
absl::Status LocalClusterDown(const std::string& state_dir);
// The address of the cluster running from `state_dir`, if any.
absl::StatusOr<std::string> LocalClusterAddress(const std::string& state_dir);

// The bearer token vsdmctl uses for the local cluster running from `state_dir` (role admin:
// it is the user's own cluster). `local up` writes new tokens each time, 0600 under
// <state_dir>/auth/: tokens (the coordinator's --auth-tokens), admin.token, user.token (principal
// local-user, role user) and worker-N.token (one principal per agent, role worker).
std::string LocalClusterTokenFile(const std::string& state_dir);

// The state dir when none is given: `vsdm_home` ($VSDM_HOME) if set and not empty, else
// `home`/.vsdm/local (`home` is $HOME; null = the current directory).
std::string DefaultStateDir(const char* vsdm_home, const char* home);
// The coordinator to talk to: `flag` (--coordinator), else `env` ($VSDM_COORDINATOR), else the
// address of the local cluster running from `state_dir`, else 127.0.0.1:50051. "" or null = unset.
std::string ResolveCoordinator(const std::string& flag, const char* env, const std::string& state_dir);
// `state_dir` when `coordinator` is the address of the local cluster running from it, else "".
std::string LocalClusterStateDirFor(const std::string& coordinator, const std::string& state_dir);

}  // namespace vsdm::client
