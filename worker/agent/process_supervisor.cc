#include "worker/agent/process_supervisor.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <deque>
#include <fstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/spawn.h"
#include "common/status_macros.h"

namespace vsdm::worker {
namespace {

// True when `pid` (a child) has exited; it stays a zombie, unreaped, so its pid and the number of
// its process group cannot be reused meanwhile.
bool HasExited(pid_t pid) {
  siginfo_t info{};
  info.si_pid = 0;
  return waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid;
}

void Reap(pid_t pid, int* status) {
  while (waitpid(pid, status, 0) < 0 && errno == EINTR) {
  }
}

// One line appended to a child's log (never through a symlink).
void AppendToLog(const std::string& path, const std::string& line) {
  const int fd = open(path.c_str(), O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n;
  do {
    n = write(fd, line.data(), line.size());
  } while (n < 0 && errno == EINTR);
  close(fd);
}

}  // namespace

PosixProcessSupervisor::PosixProcessSupervisor(const Clock& clock, PosixSupervisorOptions options)
    : clock_(clock), options_(std::move(options)) {}

PosixProcessSupervisor::~PosixProcessSupervisor() {
  for (auto& [id, c] : children_) {
    Kill(-c.identity.pgid, SIGKILL);  // before the reap (L2)
    Reap(c.identity.pid, nullptr);
  }
}

int PosixProcessSupervisor::Kill(pid_t target, int sig) const {
  return options_.kill ? options_.kill(target, sig) : ::kill(target, sig);
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
  o.die_with_parent = options_.die_with_parent;
  o.limits.push_back({RLIMIT_CORE, 0});
  o.limits.push_back(
      {RLIMIT_NOFILE, options.max_open_files > 0 ? static_cast<rlim_t>(options.max_open_files) : RLIM_INFINITY});
  if (options.max_address_space_bytes > 0)
    o.limits.push_back({RLIMIT_AS, static_cast<rlim_t>(options.max_address_space_bytes)});
  VSDM_ASSIGN_OR_RETURN(const pid_t pid, Spawn(argv, o));
  const int64_t id = next_id_++;
  Child& c = children_[id];
  c.identity = {pid, pid, ProcessStartTime(pid).value_or(0)};  // unreaped: /proc/<pid> is this child
  c.log_path = options.log_path;
  return id;
}

std::optional<ProcessIdentity> PosixProcessSupervisor::Identity(int64_t id) const {
  auto it = children_.find(id);
  if (it == children_.end()) return std::nullopt;
  return it->second.identity;
}

void PosixProcessSupervisor::Stop(int64_t id, const StopOptions& how) {
  auto it = children_.find(id);
  if (it == children_.end() || it->second.kill_at) return;
  Child& c = it->second;
  if (!HasExited(c.identity.pid)) Kill(-c.identity.pgid, SIGTERM);
  const absl::Time now = clock_.Monotonic();
  c.kill_at = now + how.grace;
  if (how.dump_stacks_after != absl::InfiniteDuration()) c.dump_at = now + how.dump_stacks_after;
}

void PosixProcessSupervisor::DumpDueStacks() {
  const absl::Time now = clock_.Monotonic();
  const bool have_gdb = !options_.gdb.empty() && access(options_.gdb.c_str(), X_OK) == 0;
  std::vector<std::pair<pid_t, std::string>> gdbs;  // gdb's pid, the log it writes
  for (auto& [id, c] : children_) {
    if (!c.dump_at || c.dumped || now < *c.dump_at) continue;
    c.dumped = true;
    if (!have_gdb || c.log_path.empty() || HasExited(c.identity.pid)) continue;
    AppendToLog(c.log_path, absl::StrCat("---- vsdm-worker: pid ", c.identity.pid,
                                         " is still running after SIGTERM; its stacks (gdb) ----\n"));
    SpawnOptions o;
    o.log_path = c.log_path;
    o.new_process_group = true;  // a timeout reaches whatever gdb started
    o.close_other_fds = true;
    o.env = ChildEnvironment(CurrentEnvironment(), {});
    auto gdb = Spawn({options_.gdb, "-p", absl::StrCat(c.identity.pid), "-batch", "-ex", "thread apply all bt"}, o);
    if (gdb.ok()) gdbs.emplace_back(*gdb, c.log_path);
  }
  const auto deadline = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(options_.gdb_timeout);
  while (!gdbs.empty()) {
    const bool late = std::chrono::steady_clock::now() >= deadline;
    for (auto it = gdbs.begin(); it != gdbs.end();) {
      if (!late && !HasExited(it->first)) {
        ++it;
        continue;
      }
      if (late) {
        ::kill(-it->first, SIGKILL);  // gdb's own group, not a rank's
        AppendToLog(it->second, absl::StrCat("---- vsdm-worker: gdb did not finish in ",
                                             absl::FormatDuration(options_.gdb_timeout), " ----\n"));
      }
      Reap(it->first, nullptr);
      it = gdbs.erase(it);
    }
    if (!gdbs.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::vector<ChildExit> PosixProcessSupervisor::Poll() {
  DumpDueStacks();
  std::vector<ChildExit> out;
  const absl::Time now = clock_.Monotonic();
  for (auto it = children_.begin(); it != children_.end();) {
    Child& c = it->second;
    if (HasExited(c.identity.pid)) {
      // L2: what it left behind in its group is killed while the leader is a zombie (the group's
      // number cannot have been reused), and only then is the leader reaped.
      Kill(-c.identity.pgid, SIGKILL);
      int status = 0;
      Reap(c.identity.pid, &status);
      ChildExit e;
      e.id = it->first;
      if (WIFSIGNALED(status)) {
        e.signal = WTERMSIG(status);
        e.exit_code = 128 + e.signal;
      } else {
        e.exit_code = WEXITSTATUS(status);
      }
      e.log_tail = Tail(c.log_path, 8);
      out.push_back(std::move(e));
      it = children_.erase(it);
      continue;
    }
    // SIGKILL once the grace is over, and never before a due stack dump was taken.
    if (c.kill_at && now >= *c.kill_at && (!c.dump_at || c.dumped)) Kill(-c.identity.pgid, SIGKILL);
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
