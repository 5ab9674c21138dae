#include "client/local_cluster.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "vsdm/v1/service.grpc.pb.h"

extern char** environ;

namespace vsdm::client {
namespace fs = std::filesystem;
namespace {

absl::StatusOr<pid_t> SpawnDetached(std::vector<std::string> args, const std::string& log) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);  // survives this CLI and its terminal
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return absl::InternalError(absl::StrCat("start ", args[0], ": ", strerror(rc)));
  return pid;
}

bool Alive(pid_t pid) { return pid > 0 && kill(pid, 0) == 0; }

std::vector<pid_t> ReadPids(const std::string& state_dir) {
  std::vector<pid_t> pids;
  std::ifstream in(fs::path(state_dir) / "pids");
  pid_t p;
  while (in >> p) pids.push_back(p);
  return pids;
}

}  // namespace

absl::StatusOr<std::string> LocalClusterAddress(const std::string& state_dir) {
  auto pids = ReadPids(state_dir);
  std::ifstream in(fs::path(state_dir) / "coordinator");
  std::string addr;
  if (pids.empty() || !Alive(pids.front()) || !(in >> addr))
    return absl::NotFoundError(absl::StrCat("no local cluster running from ", state_dir));
  return addr;
}

absl::StatusOr<std::string> LocalClusterUp(const LocalClusterOptions& o) {
  if (LocalClusterAddress(o.state_dir).ok())
    return absl::FailedPreconditionError(
        absl::StrCat("a local cluster is already up from ", o.state_dir, " (vsdmctl local down first)"));
  for (const char* b : {"vsdm-coordinator", "vsdm-worker", "vsdm-train"})
    if (access((fs::path(o.bin_dir) / b).c_str(), X_OK) != 0)
      return absl::FailedPreconditionError(absl::StrCat((fs::path(o.bin_dir) / b).string(), " not found (build first)"));
  std::error_code ec;
  fs::create_directories(fs::path(o.state_dir) / "logs", ec);
  if (ec) return absl::InternalError(absl::StrCat("state dir ", o.state_dir, ": ", ec.message()));
  const std::string ports = (fs::path(o.state_dir) / "ports").string();
  fs::remove(ports, ec);
  std::vector<pid_t> pids;
  auto coord = SpawnDetached({(fs::path(o.bin_dir) / "vsdm-coordinator").string(), "--listen", "127.0.0.1:0",
                              "--metrics-listen", "127.0.0.1:0", "--data-dir",
                              (fs::path(o.state_dir) / "data").string(), "--port-file", ports, "--lease-seconds",
                              std::to_string(o.lease_seconds), "--restart-backoff-seconds", "1"},
                             (fs::path(o.state_dir) / "logs" / "coordinator.log").string());
  if (!coord.ok()) return coord.status();
  pids.push_back(*coord);
  int port = 0, mport = 0;
  for (int i = 0; i < 200 && port == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::ifstream in(ports);
    std::string k1, k2;
    if (!(in >> k1 >> port >> k2 >> mport)) port = 0;
  }
  if (port == 0) {
    kill(*coord, SIGKILL);
    return absl::UnavailableError("the coordinator did not start; see " + o.state_dir + "/logs/coordinator.log");
  }
  const std::string addr = absl::StrCat("127.0.0.1:", port);
  for (int w = 0; w < o.workers; ++w) {
    fs::remove(fs::path(o.state_dir) / absl::StrCat("worker-", w, ".port"), ec);
    auto pid = SpawnDetached({(fs::path(o.bin_dir) / "vsdm-worker").string(), "--coordinator", addr, "--id",
                              absl::StrCat("local-", w), "--slots", std::to_string(o.slots), "--work-dir",
                              (fs::path(o.state_dir) / "work").string(), "--threads-per-rank",
                              std::to_string(o.threads_per_rank), "--kill-grace", "5", "--metrics-listen",
                              "127.0.0.1:0", "--port-file",
                              (fs::path(o.state_dir) / absl::StrCat("worker-", w, ".port")).string()},
                             (fs::path(o.state_dir) / "logs" / absl::StrCat("worker-", w, ".log")).string());
    if (!pid.ok()) return pid.status();
    pids.push_back(*pid);
  }
  {
    std::ofstream out(fs::path(o.state_dir) / "pids");
    for (pid_t p : pids) out << p << "\n";
    std::ofstream a(fs::path(o.state_dir) / "coordinator");
    a << addr << "\n";
  }
  // Prometheus file_sd targets of the cluster (deploy/prometheus/local.yml reads this file).
  {
    std::string targets = absl::StrCat("[{\"targets\": [\"127.0.0.1:", mport, "\"], \"labels\": {\"component\": \"coordinator\"}}");
    for (int w = 0; w < o.workers; ++w) {
      int wport = 0;
      for (int i = 0; i < 100 && wport == 0; ++i) {
        std::ifstream in(fs::path(o.state_dir) / absl::StrCat("worker-", w, ".port"));
        std::string k;
        if (!(in >> k >> wport)) wport = 0;
        if (wport == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      if (wport > 0)
        absl::StrAppend(&targets, ", {\"targets\": [\"127.0.0.1:", wport, "\"], \"labels\": {\"component\": \"worker\", \"worker\": \"local-", w, "\"}}");
    }
    std::ofstream(fs::path(o.state_dir) / "prometheus-targets.json") << targets << "]\n";
  }
  // Wait until every agent has registered.
  auto stub = v1::JobService::NewStub(grpc::CreateChannel(addr, grpc::InsecureChannelCredentials()));
  for (int i = 0; i < 200; ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    v1::ListWorkersResponse resp;
    if (stub->ListWorkers(&ctx, {}, &resp).ok() && resp.workers_size() >= o.workers) return addr;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return absl::UnavailableError("the agents did not register; see " + o.state_dir + "/logs/");
}

absl::Status LocalClusterDown(const std::string& state_dir) {
  auto pids = ReadPids(state_dir);
  // Agents first (they stop their ranks), then the coordinator.
  for (auto it = pids.rbegin(); it != pids.rend(); ++it)
    if (Alive(*it)) kill(*it, SIGTERM);
  for (int i = 0; i < 100; ++i) {
    bool any = false;
    for (pid_t p : pids) {
      waitpid(p, nullptr, WNOHANG);
      any = any || Alive(p);
    }
    if (!any) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (pid_t p : pids)
    if (Alive(p)) kill(p, SIGKILL);
  std::error_code ec;
  fs::remove(fs::path(state_dir) / "pids", ec);
  fs::remove(fs::path(state_dir) / "coordinator", ec);
  return absl::OkStatus();
}

}  // namespace vsdm::client
