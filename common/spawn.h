// Starting a child process (posix_spawn), the one place: the agent's rank processes, the local
// cluster's daemons, tests and benches.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace vsdm {

struct SpawnOptions {
  std::string log_path;            // stdout and stderr appended here; "" = inherit
  bool stdin_devnull = true;       // stdin from /dev/null
  bool new_session = false;        // setsid: survives the parent's terminal (daemons)
  bool new_process_group = false;  // its own group: kill(-pid) reaches its children too
};

// The child's pid; INTERNAL naming argv[0] and errno text if it cannot be started;
// INVALID_ARGUMENT for an empty argv. argv[0] is a path (no PATH search).
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, const SpawnOptions& options);

}  // namespace vsdm
