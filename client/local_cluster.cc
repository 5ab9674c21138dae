#include "client/local_cluster.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/call_unary.h"
#include "common/file_util.h"
#include "common/grpc_client.h"
#include "common/port_file.h"
#include "common/spawn.h"
#include "common/status_macros.h"
#include "vsdm/v1/service.grpc.pb.h"

namespace vsdm::client {
namespace fs = std::filesystem;
namespace {

constexpr absl::Duration kStopGrace = absl::Seconds(10);        // SIGTERM to SIGKILL
constexpr absl::Duration kAgentPortTimeout = absl::Seconds(5);  // an agent's metrics port file
constexpr absl::Duration kPoll = absl::Milliseconds(50);

std::string StatePath(const std::string& state_dir, const std::string& name) {
  return (fs::path(state_dir) / name).string();
}
std::string LogPath(const LocalClusterOptions& o, const std::string& process) {
  return (fs::path(o.state_dir) / "logs" / (process + ".log")).string();
}
std::string AuthPath(const std::string& state_dir, const std::string& name) {
  return (fs::path(state_dir) / "auth" / name).string();
}
std::string Bin(const LocalClusterOptions& o, const char* name) { return (fs::path(o.bin_dir) / name).string(); }
std::string AgentName(int w) { return absl::StrCat("worker-", w); }
std::string AgentPortFile(const LocalClusterOptions& o, int w) {
  return StatePath(o.state_dir, AgentName(w) + ".port");
}

// True while `pid` runs. An exited child of ours is reaped first (a zombie answers kill 0).
bool Running(pid_t pid) {
  if (pid <= 0) return false;
  if (waitpid(pid, nullptr, WNOHANG) == pid) return false;
  return kill(pid, 0) == 0;
}

bool AnyRunning(const std::vector<pid_t>& pids) {
  for (pid_t p : pids)
    if (Running(p)) return true;
  return false;
}

std::vector<pid_t> ReadPids(const std::string& state_dir) {
  std::vector<pid_t> pids;
  std::ifstream in(fs::path(state_dir) / "pids");
  pid_t p;
  while (in >> p) pids.push_back(p);
  return pids;
}

// When `pid` started, in Unix seconds (from /proc: its start in clock ticks after boot, plus the
// boot time); nullopt when /proc does not say.
std::optional<double> ProcessStartUnix(pid_t pid) {
  std::ifstream stat_file(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  const size_t paren = stat.rfind(')');  // the command name may hold spaces
  if (paren == std::string::npos) return std::nullopt;
  std::istringstream fields(stat.substr(paren + 2));
  std::string field;
  for (int i = 3; i <= 22 && fields >> field; ++i) {
    if (i < 22) continue;
    std::ifstream proc_stat("/proc/stat");
    std::string key;
    double btime = 0;
    while (proc_stat >> key)
      if (key == "btime" && proc_stat >> btime) return btime + std::stod(field) / sysconf(_SC_CLK_TCK);
  }
  return std::nullopt;
}

// SIGTERM to each (the last started first: agents stop their ranks), SIGKILL to what is left
// after kStopGrace; our own children are reaped. Review L1: with `not_after` (when the pids
// file was last written), a pid whose process started later is someone else's (pid reuse, or
// a reboot since) and is left alone.
void StopProcesses(const std::vector<pid_t>& all, std::optional<double> not_after = std::nullopt) {
  std::vector<pid_t> pids;
  for (pid_t p : all) {
    const std::optional<double> started = not_after ? ProcessStartUnix(p) : std::nullopt;
    if (started && *started > *not_after + 1.0) continue;  // 1 s: btime is whole seconds
    pids.push_back(p);
  }
  for (auto it = pids.rbegin(); it != pids.rend(); ++it)
    if (Running(*it)) kill(*it, SIGTERM);
  const absl::Time until = absl::Now() + kStopGrace;
  while (AnyRunning(pids) && absl::Now() < until) absl::SleepFor(absl::Milliseconds(100));
  for (pid_t p : pids) {
    if (!Running(p)) continue;
    kill(p, SIGKILL);
    waitpid(p, nullptr, 0);  // ECHILD at once when it is not ours
  }
}

// The files a cluster writes into its state dir besides logs/, data/ and work/.
void RemoveStateFiles(const LocalClusterOptions& o) {
  std::error_code ec;
  for (const char* f : {"pids", "coordinator", "ports", "prometheus-targets.json"})
    fs::remove(StatePath(o.state_dir, f), ec);
  for (int w = 0; w < o.workers; ++w) fs::remove(AgentPortFile(o, w), ec);
}

// The processes of a cluster being started. Add() records each in <state_dir>/pids at once
// (LocalClusterDown can then stop them even if vsdmctl dies half-way). Unless Commit() was
// called, the destructor stops them all and removes the state files.
class Launch {
 public:
  explicit Launch(const LocalClusterOptions& o) : o_(o) {}
  Launch(const Launch&) = delete;
  Launch& operator=(const Launch&) = delete;
  ~Launch() {
    if (committed_) return;
    StopProcesses(pids_);
    RemoveStateFiles(o_);
  }
  // INTERNAL if the pids file cannot be written (the process is still stopped on failure).
  absl::Status Add(pid_t pid) {
    pids_.push_back(pid);
    std::string text;
    for (pid_t p : pids_) absl::StrAppend(&text, p, "\n");
    return AtomicWriteFile(StatePath(o_.state_dir, "pids"), text);
  }
  const std::vector<pid_t>& pids() const { return pids_; }
  void Commit() { committed_ = true; }

 private:
  const LocalClusterOptions& o_;
  std::vector<pid_t> pids_;  // coordinator first, then agent w at w + 1
  bool committed_ = false;
};

absl::Status CheckCanStart(const LocalClusterOptions& o) {
  for (pid_t p : ReadPids(o.state_dir)) {
    if (Running(p)) {
      return absl::FailedPreconditionError(
          absl::StrCat("a local cluster is already up from ", o.state_dir, " (vsdmctl local down first)"));
    }
  }
  for (const char* b : {"vsdm-coordinator", "vsdm-worker", "vsdm-train"}) {
    if (access(Bin(o, b).c_str(), X_OK) != 0)
      return absl::FailedPreconditionError(absl::StrCat(Bin(o, b), " not found (build first)"));
  }
  std::error_code ec;
  fs::create_directories(fs::path(o.state_dir) / "logs", ec);
  if (ec) return absl::InternalError(absl::StrCat("state dir ", o.state_dir, ": ", ec.message()));
  return absl::OkStatus();
}

// Writes `text` to `path` readable by its owner only (a secret), not following a link there.
absl::Status WriteSecretFile(const std::string& path, const std::string& text) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return absl::InternalError(absl::StrCat(path, ": ", std::strerror(errno)));
  const bool ok = fchmod(fd, 0600) == 0 && write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                  fsync(fd) == 0;
  close(fd);
  return ok ? absl::OkStatus() : absl::InternalError(absl::StrCat(path, ": cannot write it"));
}

// 32 random hex characters.
std::string NewToken(std::random_device& rd) {
  std::string t;
  for (int i = 0; i < 4; ++i) absl::StrAppend(&t, absl::Hex(rd(), absl::kZeroPad8));
  return t;
}

// New tokens for this cluster (LocalClusterTokenFile says which files).
absl::Status WriteTokens(const LocalClusterOptions& o) {
  std::error_code ec;
  fs::create_directories(fs::path(o.state_dir) / "auth", ec);
  if (ec) return absl::InternalError(absl::StrCat(AuthPath(o.state_dir, ""), ": ", ec.message()));
  fs::permissions(fs::path(o.state_dir) / "auth", fs::perms::owner_all, ec);
  std::random_device rd;
  const std::string admin = NewToken(rd), user = NewToken(rd);
  std::string table = absl::StrCat("# vsdmctl local up: TOKEN PRINCIPAL ROLE\n", admin, " local-admin admin\n", user,
                                   " local-user user\n");
  for (int w = 0; w < o.workers; ++w) {
    const std::string t = NewToken(rd);
    absl::StrAppend(&table, t, " ", AgentName(w), " worker\n");
    VSDM_RETURN_IF_ERROR(WriteSecretFile(AuthPath(o.state_dir, AgentName(w) + ".token"), t + "\n"));
  }
  VSDM_RETURN_IF_ERROR(WriteSecretFile(AuthPath(o.state_dir, "admin.token"), admin + "\n"));
  VSDM_RETURN_IF_ERROR(WriteSecretFile(AuthPath(o.state_dir, "user.token"), user + "\n"));
  return WriteSecretFile(AuthPath(o.state_dir, "tokens"), table);
}

// Spawns a daemon (own session, stdin /dev/null, output to `log`) and records it in `launch`.
absl::StatusOr<pid_t> StartDaemon(const std::vector<std::string>& argv, const std::string& log, Launch& launch) {
  SpawnOptions so;
  so.log_path = log;
  so.stdin_devnull = true;
  so.new_session = true;  // survives this CLI and its terminal
  VSDM_ASSIGN_OR_RETURN(const pid_t pid, Spawn(argv, so));
  VSDM_RETURN_IF_ERROR(launch.Add(pid));
  return pid;
}

// The ports `pid` writes to `path` (wanting `want_grpc`), polled until `timeout`;
// UNAVAILABLE as soon as the process has exited, DEADLINE_EXCEEDED after the timeout.
absl::StatusOr<BoundPorts> WaitForPorts(const std::string& path, pid_t pid, bool want_grpc, absl::Duration timeout) {
  const absl::Time until = absl::Now() + timeout;
  for (;;) {
    auto ports = ReadPortFile(path);  // a garbled file counts as not written yet
    if (ports.ok() && (ports->grpc > 0 || !want_grpc) && ports->metrics > 0) return ports;
    if (!Running(pid)) return absl::UnavailableError(absl::StrCat("process ", pid, " exited"));
    if (absl::Now() >= until) return absl::DeadlineExceededError(path + ": not written in time");
    absl::SleepFor(kPoll);
  }
}

absl::StatusOr<BoundPorts> StartCoordinator(const LocalClusterOptions& o, const PortRange& stores, Launch& launch) {
  const std::string ports = StatePath(o.state_dir, "ports");
  VSDM_ASSIGN_OR_RETURN(const pid_t pid,
                        StartDaemon({Bin(o, "vsdm-coordinator"), "--listen", "127.0.0.1:0", "--metrics-listen",
                                     "127.0.0.1:0", "--data-dir", StatePath(o.state_dir, "data"), "--port-file", ports,
                                     "--lease-seconds", std::to_string(o.lease_seconds), "--restart-backoff-seconds",
                                     "1", "--store-port-range", absl::StrCat(stores.lo, "-", stores.hi),
                                     "--auth-tokens", AuthPath(o.state_dir, "tokens")},
                                    LogPath(o, "coordinator"), launch));
  auto bound = WaitForPorts(ports, pid, /*want_grpc=*/true, o.start_timeout);
  if (!bound.ok()) {
    return absl::UnavailableError(absl::StrCat("the coordinator did not start; see ", LogPath(o, "coordinator")));
  }
  return *bound;
}

absl::Status StartAgents(const LocalClusterOptions& o, const std::string& addr, Launch& launch) {
  for (int w = 0; w < o.workers; ++w) {
    VSDM_RETURN_IF_ERROR(StartDaemon({Bin(o, "vsdm-worker"), "--coordinator", addr, "--id", absl::StrCat("local-", w),
                                      "--slots", std::to_string(o.slots), "--work-dir", StatePath(o.state_dir, "work"),
                                      "--threads-per-rank", std::to_string(o.threads_per_rank), "--kill-grace", "5",
                                      "--metrics-listen", "127.0.0.1:0", "--port-file", AgentPortFile(o, w),
                                      "--token-file", AuthPath(o.state_dir, AgentName(w) + ".token")},
                                     LogPath(o, AgentName(w)), launch)
                             .status());
  }
  return absl::OkStatus();
}

// Prometheus file_sd targets of the cluster (deploy/prometheus/local.yml reads this file). An
// agent whose port file does not appear in time is left out.
absl::Status WritePrometheusTargets(const LocalClusterOptions& o, int coordinator_metrics,
                                    const std::vector<pid_t>& pids) {
  std::string targets = absl::StrCat("[{\"targets\": [\"127.0.0.1:", coordinator_metrics,
                                     "\"], \"labels\": {\"component\": \"coordinator\"}}");
  for (int w = 0; w < o.workers; ++w) {
    auto ports = WaitForPorts(AgentPortFile(o, w), pids[w + 1], /*want_grpc=*/false, kAgentPortTimeout);
    if (!ports.ok()) continue;
    absl::StrAppend(&targets, ", {\"targets\": [\"127.0.0.1:", ports->metrics,
                    "\"], \"labels\": {\"component\": \"worker\", \"worker\": \"local-", w, "\"}}");
  }
  return AtomicWriteFile(StatePath(o.state_dir, "prometheus-targets.json"), targets + "]\n");
}

// UNAVAILABLE naming the first process of the cluster that is no longer running, and its log.
absl::Status CheckStillRunning(const LocalClusterOptions& o, const std::vector<pid_t>& pids) {
  for (size_t i = 0; i < pids.size(); ++i) {
    if (Running(pids[i])) continue;
    const std::string name = i == 0 ? "coordinator" : AgentName(static_cast<int>(i) - 1);
    return absl::UnavailableError(
        absl::StrCat("the ", name, " (pid ", pids[i], ") exited during start-up; see ", LogPath(o, name)));
  }
  return absl::OkStatus();
}

absl::Status WaitForRegistration(const LocalClusterOptions& o, const std::string& addr,
                                 const std::vector<pid_t>& pids) {
  VSDM_ASSIGN_OR_RETURN(const std::string token, ReadToken(AuthPath(o.state_dir, "admin.token"), nullptr));
  ClientSecurity security;
  security.token = token;
  VSDM_ASSIGN_OR_RETURN(auto channel, MakeChannel(addr, security));
  auto stub = v1::JobService::NewStub(channel);
  const absl::Time until = absl::Now() + o.register_timeout;
  for (;;) {
    VSDM_RETURN_IF_ERROR(CheckStillRunning(o, pids));
    v1::ListWorkersResponse resp;
    const absl::Status s = CallUnary("workers", absl::Seconds(2), [&](grpc::ClientContext* ctx) {
      return stub->ListWorkers(ctx, v1::ListWorkersRequest(), &resp);
    });
    if (s.ok() && resp.workers_size() >= o.workers) return absl::OkStatus();
    if (absl::Now() >= until)
      return absl::UnavailableError("the agents did not register; see " + o.state_dir + "/logs/");
    absl::SleepFor(absl::Milliseconds(100));
  }
}

}  // namespace

absl::StatusOr<std::string> LocalClusterAddress(const std::string& state_dir) {
  auto pids = ReadPids(state_dir);
  std::ifstream in(fs::path(state_dir) / "coordinator");
  std::string addr;
  if (pids.empty() || !Running(pids.front()) || !(in >> addr))
    return absl::NotFoundError(absl::StrCat("no local cluster running from ", state_dir));
  return addr;
}

std::string LocalClusterTokenFile(const std::string& state_dir) { return AuthPath(state_dir, "admin.token"); }

std::string DefaultStateDir(const char* vsdm_home, const char* home) {
  if (vsdm_home && *vsdm_home) return vsdm_home;
  return (fs::path(home ? home : ".") / ".vsdm" / "local").string();
}

std::string ResolveCoordinator(const std::string& flag, const char* env, const std::string& state_dir) {
  if (!flag.empty()) return flag;
  if (env && *env) return env;
  auto local = LocalClusterAddress(state_dir);
  return local.ok() ? *local : "127.0.0.1:50051";
}

std::string LocalClusterStateDirFor(const std::string& coordinator, const std::string& state_dir) {
  auto local = LocalClusterAddress(state_dir);
  return local.ok() && *local == coordinator ? state_dir : "";
}

absl::StatusOr<std::string> LocalClusterUp(const LocalClusterOptions& o) {
  VSDM_RETURN_IF_ERROR(CheckCanStart(o));
  std::mt19937 rng(std::random_device{}());
  VSDM_ASSIGN_OR_RETURN(const PortRange stores, ChooseFreePortRange(o.store_ports, rng));
  RemoveStateFiles(o);  // a dead cluster's leftovers (CheckCanStart: none of it runs)
  VSDM_RETURN_IF_ERROR(WriteTokens(o));
  Launch launch(o);     // from here on a failure stops what was started
  VSDM_ASSIGN_OR_RETURN(const BoundPorts ports, StartCoordinator(o, stores, launch));
  const std::string addr = absl::StrCat("127.0.0.1:", ports.grpc);
  VSDM_RETURN_IF_ERROR(StartAgents(o, addr, launch));
  VSDM_RETURN_IF_ERROR(AtomicWriteFile(StatePath(o.state_dir, "coordinator"), addr + "\n"));
  VSDM_RETURN_IF_ERROR(WritePrometheusTargets(o, ports.metrics, launch.pids()));
  VSDM_RETURN_IF_ERROR(WaitForRegistration(o, addr, launch.pids()));
  launch.Commit();
  return addr;
}

absl::Status LocalClusterDown(const std::string& state_dir) {
  struct stat st;
  std::optional<double> not_after;
  if (::stat((fs::path(state_dir) / "pids").c_str(), &st) == 0)
    not_after = static_cast<double>(st.st_mtim.tv_sec) + 1e-9 * static_cast<double>(st.st_mtim.tv_nsec);
  StopProcesses(ReadPids(state_dir), not_after);
  std::error_code ec;
  fs::remove(fs::path(state_dir) / "pids", ec);
  fs::remove(fs::path(state_dir) / "coordinator", ec);
  return absl::OkStatus();
}

}  // namespace vsdm::client
