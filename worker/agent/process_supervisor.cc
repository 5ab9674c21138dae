#include "worker/agent/process_supervisor.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <deque>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"

extern char** environ;

namespace vsdm::worker {

ProcessSupervisor::~ProcessSupervisor() {
  for (auto& [id, c] : children_) {
    kill(-c.pid, SIGKILL);
    waitpid(c.pid, nullptr, 0);
  }
}

absl::StatusOr<int64_t> ProcessSupervisor::Start(const std::vector<std::string>& argv_in, const std::string& log_path) {
  if (argv_in.empty()) return absl::InvalidArgumentError("argv: empty");
  std::vector<std::string> args = argv_in;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);  // its own group: a stop reaches its children too
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return absl::InternalError(absl::StrCat("start ", args[0], ": ", strerror(rc)));
  const int64_t id = next_id_++;
  children_[id] = {pid, log_path, std::nullopt};
  return id;
}

void ProcessSupervisor::Stop(int64_t id, absl::Duration grace) {
  auto it = children_.find(id);
  if (it == children_.end() || it->second.kill_at) return;
  kill(-it->second.pid, SIGTERM);
  it->second.kill_at = absl::Now() + grace;
}

std::vector<ChildExit> ProcessSupervisor::Poll() {
  std::vector<ChildExit> out;
  const absl::Time now = absl::Now();
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

pid_t ProcessSupervisor::Pid(int64_t id) const {
  auto it = children_.find(id);
  return it == children_.end() ? -1 : it->second.pid;
}

std::string ProcessSupervisor::Tail(const std::string& path, int lines) {
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
