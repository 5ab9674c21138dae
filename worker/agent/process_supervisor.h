// Child processes of the worker agent: started with their output in a log file, polled for
// exit without blocking, and stopped with SIGTERM then SIGKILL after a grace period. Not
// thread-safe; the agent's loop owns it.
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace vsdm::worker {

struct ChildExit {
  int64_t id = 0;
  int exit_code = 0;   // 128 + signal when killed by a signal
  int signal = 0;      // the signal, or 0
  std::string log_tail;  // the last lines of its log
};

class ProcessSupervisor {
 public:
  ~ProcessSupervisor();  // kills whatever is still running (SIGKILL) and reaps it

  // Starts argv[0] with `argv`, stdout and stderr appended to `log_path`, in its own process
  // group. Returns an id for the other calls.
  absl::StatusOr<int64_t> Start(const std::vector<std::string>& argv, const std::string& log_path);
  // SIGTERM now (to the child's process group), SIGKILL once `grace` has passed (see Poll).
  void Stop(int64_t id, absl::Duration grace);
  // Reaps children that exited (non-blocking) and sends SIGKILL to stopped ones past their grace.
  std::vector<ChildExit> Poll();
  bool Running(int64_t id) const { return children_.count(id) > 0; }
  pid_t Pid(int64_t id) const;
  size_t size() const { return children_.size(); }

  // The last `lines` lines of a file (for exit reports).
  static std::string Tail(const std::string& path, int lines);

 private:
  struct Child {
    pid_t pid = -1;
    std::string log_path;
    std::optional<absl::Time> kill_at;
  };
  std::map<int64_t, Child> children_;
  int64_t next_id_ = 1;
};

}  // namespace vsdm::worker
