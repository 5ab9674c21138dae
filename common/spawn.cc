#include "common/spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

extern char** environ;

namespace vsdm {
namespace {

// What the child was doing when it failed, reported to the parent over the exec pipe.
enum Step : int { kSession = 1, kStdin, kLog, kLimit, kFds, kDeathSignal, kExec };

struct ChildError {
  int step = 0;
  int err = 0;
};

// Child side, between fork and exec: async-signal-safe calls only.
[[noreturn]] void ChildFail(int pipe_fd, Step step) {
  const ChildError e{step, errno};
  ssize_t n;
  do {
    n = write(pipe_fd, &e, sizeof e);
  } while (n < 0 && errno == EINTR);
  _exit(127);
}

// `from` onto `to`, without close-on-exec on `to` (dup2 onto itself would keep the flag).
bool Redirect(int from, int to) {
  if (from == to) return fcntl(to, F_SETFD, 0) == 0;
  return dup2(from, to) == to;
}

bool CloseOtherFdsOnExec(int max_fd) {
#ifdef CLOSE_RANGE_CLOEXEC
  if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return true;
#endif
  for (int fd = 3; fd < max_fd; ++fd) {
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0 && errno != EBADF) return false;
  }
  return true;
}

// What the child does between fork and exec, all prepared by the parent.
struct ChildPlan {
  const SpawnOptions* options = nullptr;
  std::vector<char*> argv, envp;  // envp empty: inherit environ
  std::vector<std::pair<int, rlimit>> limits;
  int null_fd = -1, log_fd = -1, report_fd = -1;
  int max_fd = 0;
  pid_t parent = 0;  // getpid() before the fork (die_with_parent)
};

[[noreturn]] void ExecChild(const ChildPlan& p) {
  const SpawnOptions& o = *p.options;
  if (o.die_with_parent) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) ChildFail(p.report_fd, kDeathSignal);
    if (getppid() != p.parent) _exit(127);  // the parent went before the prctl: nobody to die with
  }
  if (o.new_session) {
    if (setsid() < 0) ChildFail(p.report_fd, kSession);
  } else if (o.new_process_group) {
    if (setpgid(0, 0) != 0) ChildFail(p.report_fd, kSession);
  }
  if (p.null_fd >= 0 && !Redirect(p.null_fd, 0)) ChildFail(p.report_fd, kStdin);
  if (p.log_fd >= 0 && (!Redirect(p.log_fd, 1) || !Redirect(p.log_fd, 2))) ChildFail(p.report_fd, kLog);
  for (const auto& [resource, value] : p.limits)
    if (setrlimit(resource, &value) != 0) ChildFail(p.report_fd, kLimit);
  if (o.close_other_fds && !CloseOtherFdsOnExec(p.max_fd)) ChildFail(p.report_fd, kFds);
  execve(p.argv[0], p.argv.data(), p.envp.empty() ? environ : p.envp.data());
  ChildFail(p.report_fd, kExec);
}

// The log, opened for appending without following a symlink; its error names the path.
absl::StatusOr<int> OpenLog(const std::string& path) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    const int err = errno;
    return absl::InternalError(
        absl::StrCat("log ", path, ": ", strerror(err), err == ELOOP ? " (a symlink: refused)" : ""));
  }
  // A second name for the file means someone linked it from elsewhere (a planted hard link).
  struct stat st {};
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink > 1) {
    close(fd);
    return absl::InternalError(absl::StrCat("log ", path, ": has ", st.st_nlink, " hard links: refused"));
  }
  return fd;
}

std::string DescribeStep(int step) {
  switch (step) {
    case kSession:
      return "new session or process group: ";
    case kStdin:
      return "stdin: ";
    case kLog:
      return "log: ";
    case kLimit:
      return "setrlimit: ";
    case kFds:
      return "close-on-exec: ";
    case kDeathSignal:
      return "PR_SET_PDEATHSIG: ";
    default:
      return "";
  }
}

}  // namespace

std::vector<std::string> CurrentEnvironment() {
  std::vector<std::string> out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) out.emplace_back(*e);
  return out;
}

absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& args, const SpawnOptions& o) {
  if (args.empty()) return absl::InvalidArgumentError("argv: empty");
  const std::string what = absl::StrCat("start ", args[0], ": ");
  // Everything the child needs is built here: it must not allocate between fork and exec.
  ChildPlan plan;
  plan.options = &o;
  for (const auto& a : args) plan.argv.push_back(const_cast<char*>(a.c_str()));
  plan.argv.push_back(nullptr);
  if (o.env) {
    for (const auto& e : *o.env) plan.envp.push_back(const_cast<char*>(e.c_str()));
    plan.envp.push_back(nullptr);
  }
  for (const ResourceLimit& l : o.limits) {
    rlimit cur{};
    if (getrlimit(l.resource, &cur) != 0)
      return absl::InternalError(absl::StrCat(what, "getrlimit(", l.resource, "): ", strerror(errno)));
    const rlim_t v = l.limit == RLIM_INFINITY ? cur.rlim_max : std::min(l.limit, cur.rlim_max);
    plan.limits.push_back({l.resource, rlimit{v, v}});
  }
  rlimit nofile{};
  getrlimit(RLIMIT_NOFILE, &nofile);
  plan.max_fd = static_cast<int>(std::min<rlim_t>(nofile.rlim_cur, 1 << 16));
  auto close_fds = [&] {
    if (plan.null_fd >= 0) close(plan.null_fd);
    if (plan.log_fd >= 0) close(plan.log_fd);
  };
  if (o.stdin_devnull && (plan.null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
    return absl::InternalError(absl::StrCat(what, "/dev/null: ", strerror(errno)));
  if (!o.log_path.empty()) {
    absl::StatusOr<int> fd = OpenLog(o.log_path);
    if (!fd.ok()) {
      close_fds();
      return absl::InternalError(absl::StrCat(what, fd.status().message()));
    }
    plan.log_fd = *fd;
  }
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    const int err = errno;
    close_fds();
    return absl::InternalError(absl::StrCat(what, "pipe: ", strerror(err)));
  }
  plan.report_fd = pipe_fds[1];
  plan.parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) ExecChild(plan);
  const int fork_errno = errno;
  close(pipe_fds[1]);
  close_fds();
  if (pid < 0) {
    close(pipe_fds[0]);
    return absl::InternalError(absl::StrCat(what, "fork: ", strerror(fork_errno)));
  }
  // EOF: exec succeeded (the pipe closed on exec). A record: the child failed and exited 127.
  ChildError e;
  ssize_t n;
  do {
    n = read(pipe_fds[0], &e, sizeof e);
  } while (n < 0 && errno == EINTR);
  close(pipe_fds[0]);
  if (n == static_cast<ssize_t>(sizeof e)) {
    while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    return absl::InternalError(absl::StrCat(what, DescribeStep(e.step), strerror(e.err)));
  }
  return pid;
}

}  // namespace vsdm
