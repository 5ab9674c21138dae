// Starting a child process (fork + execve), the one place: the agent's rank processes, the local
// cluster's daemons, tests and benches. The log file, the environment and the resource limits
// are set up here, so a caller states what the child gets instead of passing on all it has.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace vsdm {

// One setrlimit(resource, {limit, limit}) in the child. `limit` is clamped to the parent's hard
// limit (an unprivileged process cannot raise it), so setting one never fails for that reason.
struct ResourceLimit {
  int resource = 0;  // RLIMIT_CORE, RLIMIT_NOFILE, RLIMIT_AS, ...
  rlim_t limit = 0;  // soft and hard limit; RLIM_INFINITY = the parent's hard limit
};

struct SpawnOptions {
  // stdout and stderr appended here; "" = inherit. Opened by the parent with O_NOFOLLOW and
  // O_CLOEXEC, created mode 0600 (before the umask): a symlink planted at this path is refused
  // (Spawn fails with ELOOP's text), never written through; so is a regular file with a second
  // hard link.
  std::string log_path;
  bool stdin_devnull = true;       // stdin from /dev/null
  bool new_session = false;        // setsid: survives the parent's terminal (daemons)
  bool new_process_group = false;  // its own group: kill(-pid) reaches its children too
  // The child's whole environment, "KEY=VALUE" each; nullopt = this process's environ.
  std::optional<std::vector<std::string>> env;
  std::vector<ResourceLimit> limits;  // applied in the child before exec, in order
  // Every descriptor above 2 is closed at exec (CLOSE_RANGE_CLOEXEC), not only those opened
  // with O_CLOEXEC: the child does not hold the parent's sockets or listening ports.
  bool close_other_fds = false;
  // PR_SET_PDEATHSIG(SIGKILL): the child is killed when its parent goes, so a rank never outlives
  // a crashed agent. Linux ties the signal to the *thread* that forked, not the process: a
  // caller that sets this must call Spawn from a thread that lives as long as the process (the
  // main thread), or the child dies when that thread exits. A parent that died between fork and
  // the prctl is caught by the child comparing getppid() with the parent's pid (it exits 127).
  bool die_with_parent = false;
};

// The child's pid; INTERNAL naming argv[0] (or the log file) and errno text if it cannot be
// started (exec failed, log refused, a limit could not be set); INVALID_ARGUMENT for an empty
// argv. argv[0] is a path (no PATH search). When it returns a pid, exec has succeeded.
// Thread-safe (the child runs only async-signal-safe calls between fork and exec).
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, const SpawnOptions& options);

// This process's environment as "KEY=VALUE" entries (the one reader of `environ`).
std::vector<std::string> CurrentEnvironment();

}  // namespace vsdm
