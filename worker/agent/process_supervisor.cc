#include "worker/agent/process_supervisor.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include <deque>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/spawn.h"
#include "common/status_macros.h"

namespace vsdm::worker {

PosixProcessSupervisor::~PosixProcessSupervisor() {
  for (auto& [id, c] : children_) {
    kill(-c.pid, SIGKILL);
    waitpid(c.pid, nullptr, 0);
  }
}

absl::StatusOr<int64_t> PosixProcessSupervisor::Start(const std::vector<std::string>& argv,
                                                      const std::string& log_path) {
  SpawnOptions o;
  o.log_path = log_path;
  o.stdin_devnull = false;     // as before: ranks inherit the agent's stdin
  o.new_process_group = true;  // its own group: a stop reaches its children too
  VSDM_ASSIGN_OR_RETURN(const pid_t pid, Spawn(argv, o));
  const int64_t id = next_id_++;
  children_[id] = {pid, log_path, std::nullopt};
  return id;
}

void PosixProcessSupervisor::Stop(int64_t id, absl::Duration grace) {
  auto it = children_.find(id);
  if (it == children_.end() || it->second.kill_at) return;
  kill(-it->second.pid, SIGTERM);
  it->second.kill_at = clock_.Now() + grace;
}

std::vector<ChildExit> PosixProcessSupervisor::Poll() {
  std::vector<ChildExit> out;
  const absl::Time now = clock_.Now();
  for (auto it = children_.begin(); it != children_.end();) {
    Child& c = it->second;
    int status = 0;
    const pid_t r = waitpid(c.pid, &status, WNOHANG);
    if (r == c.pid) {
      ChildExit e;
      e.id = it->first;
      if (WIFSIGNALED(status)) {
        e.signal = WTERMSIG(status);
        e.exit_code = 128 + e.signal;
      } else {
        e.exit_code = WEXITSTATUS(status);
      }
      kill(-c.pid, SIGKILL);  // anything it left behind in its group
      e.log_tail = Tail(c.log_path, 8);
      out.push_back(std::move(e));
      it = children_.erase(it);
      continue;
    }
    if (c.kill_at && now >= *c.kill_at) kill(-c.pid, SIGKILL);
    ++it;
  }
  return out;
}

std::string PosixProcessSupervisor::Tail(const std::string& path, int lines) {
  std::ifstream in(path);
  std::deque<std::string> last;
  std::string line;
  while (std::getline(in, line)) {
    last.push_back(line);
    if (static_cast<int>(last.size()) > lines) last.pop_front();
  }
  return absl::StrJoin(last, "\n");
}

}  // namespace vsdm::worker
