// Child processes of the worker agent: started with their output in a log file, polled for
// exit without blocking, and stopped with SIGTERM then SIGKILL after a grace period.
// ProcessSupervisor is the seam the agent's logic sees (tests put a fake behind it);
// PosixProcessSupervisor is the real one. Not thread-safe; the agent's loop owns it.
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace vsdm::worker {

struct ChildExit {
  int64_t id = 0;
  int exit_code = 0;     // 128 + signal when killed by a signal
  int signal = 0;        // the signal, or 0
  std::string log_tail;  // the last lines of its log
};

class ProcessSupervisor {
 public:
  virtual ~ProcessSupervisor() = default;
  // Starts argv[0] with `argv`, stdout and stderr appended to `log_path`, in its own process
  // group. Returns an id for the other calls; INTERNAL naming argv[0] if it cannot start.
  virtual absl::StatusOr<int64_t> Start(const std::vector<std::string>& argv, const std::string& log_path) = 0;
  // SIGTERM now (to the child's process group), SIGKILL once `grace` has passed (see Poll).
  // Unknown ids and repeated stops are ignored.
  virtual void Stop(int64_t id, absl::Duration grace) = 0;
  // Reaps children that exited (non-blocking) and sends SIGKILL to stopped ones past their grace.
  virtual std::vector<ChildExit> Poll() = 0;
};

class PosixProcessSupervisor : public ProcessSupervisor {
 public:
  // `clock` decides when a stopped child's grace is over; it must outlive the supervisor.
  explicit PosixProcessSupervisor(const Clock& clock) : clock_(clock) {}
  ~PosixProcessSupervisor() override;  // kills whatever is still running (SIGKILL) and reaps it

  absl::StatusOr<int64_t> Start(const std::vector<std::string>& argv, const std::string& log_path) override;
  void Stop(int64_t id, absl::Duration grace) override;
  std::vector<ChildExit> Poll() override;

  // The last `lines` lines of a file (for exit reports).
  static std::string Tail(const std::string& path, int lines);

 private:
  struct Child {
    pid_t pid = -1;
    std::string log_path;
    std::optional<absl::Time> kill_at;
  };
  const Clock& clock_;
  std::map<int64_t, Child> children_;
  int64_t next_id_ = 1;
};

}  // namespace vsdm::worker
