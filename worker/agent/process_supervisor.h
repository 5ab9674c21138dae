// Child processes of the worker agent: started with their output in a log file, an allow-listed
// environment and resource limits, polled for exit without blocking, and stopped with SIGTERM
// then SIGKILL after a grace period (with their stacks in their log first, if asked).
// ProcessSupervisor is the seam the agent's logic sees (tests put a fake behind it);
// PosixProcessSupervisor is the real one. Not thread-safe; the agent's loop owns it, and it
// must be the process's main thread (children die with the thread that forked them).
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "worker/agent/rank_state.h"

namespace vsdm::worker {

struct ChildExit {
  int64_t id = 0;
  int exit_code = 0;     // 128 + signal when killed by a signal
  int signal = 0;        // the signal, or 0
  std::string log_tail;  // the last lines of its log
};

// What a child starts with, besides its argv.
struct ChildOptions {
  // stdout and stderr appended here. A symlink (or a second hard link) at this path fails the
  // start instead of being written through; a new file is created 0600.
  std::string log_path;
  // Set in the child's environment on top of the allowed part of the supervisor's own
  // (ChildEnvironment); how the agent hands a rank its secrets without putting them in argv.
  std::map<std::string, std::string> env;
  // RLIMIT_NOFILE of the child (soft = hard), clamped to the supervisor's hard limit; 0 = that
  // hard limit.
  int64_t max_open_files = 65536;
  // RLIMIT_AS of the child; 0 = unlimited. CUDA and LibTorch's allocator reserve far more
  // address space than they touch, so this bounds virtual, not resident, memory.
  int64_t max_address_space_bytes = 0;
};

// The environment a child gets: the entries of `parent` ("KEY=VALUE") whose names pass
// IsAllowedChildVariable, in their order, then `set` (which replaces a parent entry of the same
// name). Nothing else of the parent reaches the child.
std::vector<std::string> ChildEnvironment(const std::vector<std::string>& parent,
                                          const std::map<std::string, std::string>& set);

// Note [Child environment allow-list]
// A rank needs the process basics (PATH, HOME, USER, LOGNAME, LANG, LANGUAGE, LC_*, TZ, TMPDIR),
// the loader's LD_LIBRARY_PATH, XDG_CACHE_HOME (vsdm-train's feature-net cache), the thread pools'
// OMP_*, KMP_*, MKL_*, OPENBLAS_*, GOTO_NUM_THREADS, the device and collective settings CUDA_*,
// NCCL_*, GLOO_* (GLOO_SOCKET_IFNAME, read by vsdm-train), TORCH_*, sanitizer *SAN_OPTIONS, and
// the operator's VSDM_*. A name containing TOKEN, SECRET, PASSW, CREDENTIAL or PRIVATE, or ending
// in _KEY, never passes (VSDM_TOKEN, the agent's bearer token, included): a child gets a secret
// only through ChildOptions::env.
bool IsAllowedChildVariable(const std::string& name);

// How a child is stopped.
struct StopOptions {
  absl::Duration grace = absl::Seconds(10);  // SIGTERM now, SIGKILL once this has passed
  // A child still alive this long after its SIGTERM gets its stacks appended to its log (gdb
  // "thread apply all bt") before it is SIGKILLed, however short the grace (Note [Stacks of a
  // hung rank]). InfiniteDuration: never.
  absl::Duration dump_stacks_after = absl::InfiniteDuration();
};

class ProcessSupervisor {
 public:
  virtual ~ProcessSupervisor() = default;
  // Starts argv[0] with `argv` as `options` say, in its own process group. Returns an id for the
  // other calls; INTERNAL naming argv[0] (or the log file) if it cannot start.
  virtual absl::StatusOr<int64_t> Start(const std::vector<std::string>& argv, const ChildOptions& options) = 0;
  // SIGTERM now (to the child's process group), the rest of `how` in later Polls. Unknown ids and
  // repeated stops are ignored.
  virtual void Stop(int64_t id, const StopOptions& how) = 0;
  // Reaps children that exited (non-blocking but for stack dumps that are due) and sends SIGKILL
  // to stopped ones past their grace.
  virtual std::vector<ChildExit> Poll() = 0;
  // The running child's pid, group and start time (Note [The agent's record of its ranks]);
  // nullopt for an unknown id or a supervisor without real processes.
  virtual std::optional<ProcessIdentity> Identity(int64_t /*id*/) const { return std::nullopt; }
};

// Note [Stacks of a hung rank]
// A rank that does not exit within a couple of seconds of its SIGTERM (it checkpoints and exits
// 75 when it is healthy) is most likely stuck in a collective or in I/O, and the stacks are what
// tells which. The supervisor runs `gdb -p PID -batch -ex "thread apply all bt"` with its output
// appended to the rank's log, under a timeout (gdb on a LibTorch binary can take seconds), for
// all such children of one Poll at once; then the SIGKILL follows at the end of the grace, or at
// once when the dump outlasted it. It runs on the agent's loop, never on the heartbeat thread.
struct PosixSupervisorOptions {
  std::string gdb = "/usr/bin/gdb";  // "" or not executable: no stack dumps
  absl::Duration gdb_timeout = absl::Seconds(20);
  // Children get PR_SET_PDEATHSIG(SIGKILL): a rank dies with its agent (SpawnOptions).
  bool die_with_parent = true;
  // kill(2); tests observe with it which process groups are signalled when (review L2).
  std::function<int(pid_t, int)> kill;
};

class PosixProcessSupervisor : public ProcessSupervisor {
 public:
  // `clock` (its monotonic time) decides when a stopped child's grace is over; it must outlive
  // the supervisor.
  explicit PosixProcessSupervisor(const Clock& clock, PosixSupervisorOptions options = {});
  ~PosixProcessSupervisor() override;  // kills whatever is still running (SIGKILL) and reaps it

  // The child gets ChildEnvironment(this process's environment, options.env), no core dumps
  // (RLIMIT_CORE 0), the file and memory limits of `options`, none of this process's descriptors
  // but stdin, and stdout/stderr to the log.
  absl::StatusOr<int64_t> Start(const std::vector<std::string>& argv, const ChildOptions& options) override;
  void Stop(int64_t id, const StopOptions& how) override;
  std::vector<ChildExit> Poll() override;
  std::optional<ProcessIdentity> Identity(int64_t id) const override;

  // The last `lines` lines of a file (for exit reports).
  static std::string Tail(const std::string& path, int lines);

 private:
  struct Child {
    ProcessIdentity identity;  // pid = pgid: its own group
    std::string log_path;
    std::optional<absl::Time> kill_at, dump_at;  // monotonic
    bool dumped = false;
  };
  // The stacks of every stopped child whose dump is due, gdbs run side by side (blocks for up
  // to gdb_timeout).
  void DumpDueStacks();
  int Kill(pid_t target, int sig) const;

  const Clock& clock_;
  PosixSupervisorOptions options_;
  std::map<int64_t, Child> children_;
  int64_t next_id_ = 1;
};

}  // namespace vsdm::worker
