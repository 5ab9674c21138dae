#include "worker/agent/process_supervisor.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <deque>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
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

bool IsAllowedChildVariable(const std::string& name) {
  const std::string upper = absl::AsciiStrToUpper(name);
  for (const char* secret : {"TOKEN", "SECRET", "PASSW", "CREDENTIAL", "PRIVATE"})
    if (absl::StrContains(upper, secret)) return false;
  if (absl::EndsWith(upper, "_KEY")) return false;
  static constexpr const char* kNames[] = {"PATH",
                                           "HOME",
                                           "USER",
                                           "LOGNAME",
                                           "LANG",
                                           "LANGUAGE",
                                           "TZ",
                                           "TMPDIR",
                                           "LD_LIBRARY_PATH",
                                           "XDG_CACHE_HOME",
                                           "GOTO_NUM_THREADS"};
  for (const char* n : kNames)
    if (name == n) return true;
  static constexpr const char* kPrefixes[] = {"LC_",   "OMP_",  "KMP_",  "MKL_",   "OPENBLAS_",
                                              "CUDA_", "NCCL_", "GLOO_", "TORCH_", "VSDM_"};
  for (const char* p : kPrefixes)
    if (absl::StartsWith(name, p)) return true;
  for (const char* san : {"ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "TSAN_OPTIONS"})
    if (name == san) return true;
  return false;
}

std::vector<std::string> ChildEnvironment(const std::vector<std::string>& parent,
                                          const std::map<std::string, std::string>& set) {
  std::vector<std::string> out;
  for (const std::string& entry : parent) {
    const size_t eq = entry.find('=');
    if (eq == std::string::npos || eq == 0) continue;
    const std::string name = entry.substr(0, eq);
    if (set.count(name) == 0 && IsAllowedChildVariable(name)) out.push_back(entry);
  }
  for (const auto& [name, value] : set) out.push_back(absl::StrCat(name, "=", value));
  return out;
}

absl::StatusOr<int64_t> PosixProcessSupervisor::Start(const std::vector<std::string>& argv,
                                                      const ChildOptions& options) {
  SpawnOptions o;
  o.log_path = options.log_path;
  o.stdin_devnull = false;     // as before: ranks inherit the agent's stdin
  o.new_process_group = true;  // its own group: a stop reaches its children too
  o.env = ChildEnvironment(CurrentEnvironment(), options.env);
  o.close_other_fds = true;  // the agent's gRPC and metrics sockets stay with the agent
  o.limits.push_back({RLIMIT_CORE, 0});
  o.limits.push_back(
      {RLIMIT_NOFILE, options.max_open_files > 0 ? static_cast<rlim_t>(options.max_open_files) : RLIM_INFINITY});
  if (options.max_address_space_bytes > 0)
    o.limits.push_back({RLIMIT_AS, static_cast<rlim_t>(options.max_address_space_bytes)});
  VSDM_ASSIGN_OR_RETURN(const pid_t pid, Spawn(argv, o));
  const int64_t id = next_id_++;
  children_[id] = {pid, options.log_path, std::nullopt};
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
