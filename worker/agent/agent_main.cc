// vsdm-worker: the agent of one node (or GPU slot group). Registers with the coordinator, keeps
// its lease, and runs the `vsdm-train` ranks the coordinator assigns it. Composition root.
#include <signal.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/metrics_exposer.h"
#include "common/port_file.h"
#include "worker/agent/agent.h"
#include "worker/agent/agent_metrics.h"
#include "worker/agent/coordinator_client.h"
#include "worker/agent/process_supervisor.h"

namespace {

volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

struct Options {
  std::string coordinator;                        // HOST:PORT; default $VSDM_COORDINATOR, then 127.0.0.1:50051
  std::string id;                                 // stable worker id; default the hostname
  int slots = 1;                                  // ranks it runs at once
  int devices = 0;                                // GPUs it offers
  std::string work_dir = "vsdm-work";             // jobs' out dirs (jobs/<job_id>/)
  std::string host = "127.0.0.1";                 // address other ranks reach this node at
  std::string train_bin;                          // default: vsdm-train beside this binary
  int threads_per_rank = 1;                       // torch/BLAS threads of each rank
  double pg_timeout = 60;                         // seconds, passed to vsdm-train --pg-timeout
  double kill_grace = 10;                         // seconds between SIGTERM and SIGKILL on abort
  double fence_after = 120;                       // seconds without an answer before it stops its ranks; 0 = never
  std::string metrics_listen = "127.0.0.1:9465";  // Prometheus /metrics of this node; "" = off; port 0 = any
  std::string port_file;                          // written once listening (common/port_file.h)
  int64_t rank_max_open_files = 65536;            // RLIMIT_NOFILE of each rank
  int64_t rank_max_address_space_bytes = 0;       // RLIMIT_AS of each rank; 0 = unlimited
  std::string token_file;                         // bearer token of role worker; default $VSDM_TOKEN
  vsdm::ClientSecurity security;                  // TLS: --tls-ca, --tls-cert/--tls-key (mTLS)
};

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  if (const char* c = std::getenv("VSDM_COORDINATOR"); c && *c) opt.coordinator = c;
  if (opt.coordinator.empty()) opt.coordinator = "127.0.0.1:50051";
  char hostname[HOST_NAME_MAX + 1] = {0};
  gethostname(hostname, sizeof hostname);
  opt.id = hostname;
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  opt.train_bin = (self.parent_path() / "vsdm-train").string();

  CLI::App app{"vsdm-worker: runs the training ranks the coordinator assigns to this node"};
  app.add_option("--coordinator", opt.coordinator, "coordinator address (default $VSDM_COORDINATOR, 127.0.0.1:50051)");
  app.add_option("--id", opt.id,
                 "stable worker id (default: the hostname; set one wherever two agents can share a hostname: "
                 "containers with host networking, cloned VMs)");
  app.add_option("--slots", opt.slots, "ranks it runs at once")->check(CLI::Range(1, 4096));
  app.add_option("--devices", opt.devices, "GPUs it offers")->check(CLI::Range(0, 1024));
  app.add_option("--work-dir", opt.work_dir, "jobs' out dirs (share it between agents for cross-agent resume)");
  app.add_option("--host", opt.host, "address other ranks reach this node at");
  app.add_option("--train-bin", opt.train_bin, "vsdm-train binary");
  app.add_option("--threads-per-rank", opt.threads_per_rank, "threads of each rank")->check(CLI::Range(1, 1024));
  app.add_option("--pg-timeout", opt.pg_timeout, "collective timeout of the ranks, seconds")
      ->check(CLI::Range(1.0, 3600.0));
  app.add_option("--kill-grace", opt.kill_grace,
                 "SIGTERM to SIGKILL when a rank is stopped (abort, fence, this agent's SIGTERM), seconds")
      ->check(CLI::Range(0.0, 600.0));
  app.add_option("--fence-after", opt.fence_after,
                 "stop every rank when the coordinator has answered no heartbeat for this long, seconds (its lease "
                 "has expired and the attempts run elsewhere; 0 = never)")
      ->check(CLI::Range(0.0, 86400.0));
  app.add_option("--metrics-listen", opt.metrics_listen, "Prometheus /metrics address (\"\" = off)");
  app.add_option("--port-file", opt.port_file, "write the bound metrics port here");
  app.add_option("--rank-max-open-files", opt.rank_max_open_files, "RLIMIT_NOFILE of each rank (0 = the agent's hard limit)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 24));
  app.add_option("--rank-max-address-space", opt.rank_max_address_space_bytes,
                 "RLIMIT_AS of each rank in bytes (0 = unlimited; CUDA reserves far more than it uses)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 50));
  app.add_option("--token-file", opt.token_file, "bearer token (role worker) for the coordinator; default $VSDM_TOKEN");
  app.add_option("--tls-ca", opt.security.tls_ca, "CA of the coordinator's certificate (PEM): use TLS");
  app.add_option("--tls-cert", opt.security.tls_cert, "this worker's client certificate (PEM), for mTLS");
  app.add_option("--tls-key", opt.security.tls_key, "its private key (PEM)");
  app.add_option("--tls-server-name", opt.security.tls_server_name, "name to verify in the coordinator's certificate");
  app.set_version_flag("--version", std::string("vsdm-worker ") + VSDM_VERSION);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (app.count("--id") == 0)
    std::cerr << "vsdm-worker: warning: no --id: the worker id is the hostname \"" << opt.id
              << "\"; two agents with one hostname would share one identity (set --id)\n";
  if (access(opt.train_bin.c_str(), X_OK) != 0) {
    std::cerr << "vsdm-worker: --train-bin " << opt.train_bin << " is not executable\n";
    return 2;
  }
  std::filesystem::create_directories(opt.work_dir, ec);
  if (ec) {
    std::cerr << "vsdm-worker: --work-dir " << opt.work_dir << ": " << ec.message() << "\n";
    return 2;
  }
  signal(SIGTERM, OnSignal);
  signal(SIGINT, OnSignal);
  signal(SIGPIPE, SIG_IGN);

  auto registry = std::make_shared<prometheus::Registry>();
  vsdm::worker::AgentMetrics metrics(registry, VSDM_VERSION);
  auto endpoint = vsdm::ServeMetrics(opt.metrics_listen, registry);
  if (!endpoint.ok()) {
    std::cerr << "vsdm-worker: " << endpoint.status().message() << "\n";
    return 2;
  }
  const int metrics_port = endpoint->port;
  if (!opt.port_file.empty()) {
    if (absl::Status s = vsdm::WritePortFile(opt.port_file, vsdm::BoundPorts{0, metrics_port}); !s.ok()) {
      std::cerr << "vsdm-worker: --port-file: " << s.message() << "\n";
      return 1;
    }
  }
  auto token = vsdm::ReadToken(opt.token_file, std::getenv("VSDM_TOKEN"));
  if (!token.ok()) {
    std::cerr << "vsdm-worker: " << token.status().message() << "\n";
    return 2;
  }
  opt.security.token = *token;
  unsetenv("VSDM_TOKEN");  // the ranks this agent starts must not inherit it
  auto client_or = vsdm::worker::GrpcCoordinatorClient::Create(opt.coordinator, absl::Seconds(5), opt.security);
  if (!client_or.ok()) {
    std::cerr << "vsdm-worker: " << client_or.status().message() << "\n";
    return 2;
  }
  vsdm::worker::GrpcCoordinatorClient& client = **client_or;
  vsdm::RealClock clock;  // its monotonic time: grace periods and the fence (Note [Two clocks])
  vsdm::worker::PosixProcessSupervisor processes(clock);
  vsdm::worker::AgentOptions ao;
  ao.worker_id = opt.id;
  ao.slots = opt.slots;
  ao.devices = opt.devices;
  if (const char* cvd = std::getenv("CUDA_VISIBLE_DEVICES"); cvd && *cvd)
    ao.visible_devices = absl::StrSplit(cvd, ',', absl::SkipEmpty());
  ao.host = opt.host;
  ao.work_dir = std::filesystem::absolute(opt.work_dir).string();
  ao.train_bin = opt.train_bin;
  ao.threads_per_rank = opt.threads_per_rank;
  ao.pg_timeout_seconds = opt.pg_timeout;
  ao.kill_grace = absl::Seconds(opt.kill_grace);
  ao.fence_after = absl::Seconds(opt.fence_after);
  ao.rank_max_open_files = opt.rank_max_open_files;
  ao.rank_max_address_space_bytes = opt.rank_max_address_space_bytes;
  vsdm::worker::Agent agent(ao, client, processes, &metrics, &clock);
  std::cout << "vsdm-worker " << opt.id << ": " << opt.slots << " slots, coordinator " << opt.coordinator
            << ", work dir " << ao.work_dir << ", metrics port " << metrics_port << ", instance "
            << agent.instance_id() << std::endl;
  agent.Recover();  // the ranks a predecessor of this id left, before the first Register
  agent.StartHeartbeatThread();
  bool was_registered = false;
  while (!g_stop) {
    const absl::Duration wait = agent.Step();
    if (agent.registered() != was_registered) {
      std::cout << "vsdm-worker " << opt.id << ": " << (agent.registered() ? "registered" : "lost the coordinator")
                << std::endl;
      was_registered = agent.registered();
    }
    absl::SleepFor(wait);
  }
  std::cout << "vsdm-worker " << opt.id << ": stopping, killing " << agent.running() << " ranks (SIGTERM, SIGKILL after "
            << opt.kill_grace << " s)" << std::endl;
  agent.Shutdown();  // their exits (75 after a checkpoint) reported
  std::cout << "vsdm-worker " << opt.id << ": stopped" << std::endl;
  return 0;  // ~PosixProcessSupervisor kills what is left
}
