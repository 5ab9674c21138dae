// vsdm-coordinator: the gRPC API for users and worker agents, the durable job store, the gang
// scheduler and worker leases, and /metrics. Composition root: parses flags, builds objects,
// wires them, runs the scheduling ticker until SIGINT/SIGTERM.
#include <csignal>
#include <iostream>
#include <optional>
#include <thread>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/clock.h"
#include "common/metrics_exposer.h"
#include "common/port_file.h"
#include "server/artifact_store.h"
#include "server/assignment_book.h"
#include "server/coordinator_metrics.h"
#include "server/job_manager.h"
#include "server/job_service.h"
#include "server/job_store.h"
#include "server/worker_service.h"

namespace {

using vsdm::server::CoordinatorMetrics;
using vsdm::server::JobManager;

struct Options {
  std::string listen = "127.0.0.1:50051";         // gRPC address; port 0 = any free port (printed)
  std::string data_dir = "vsdm-data";             // the SQLite job store (vsdm.db) lives here
  std::string metrics_listen = "127.0.0.1:9464";  // Prometheus /metrics; "" = off; port 0 = any
  std::string artifact_root;                      // jobs' artifacts; default <data-dir>/artifacts
  double lease_seconds = 15;                      // a worker without heartbeat for this long is lost
  double tick_seconds = 0.2;                      // scheduling pass / lease check period
  double reserve_after_seconds = 600;             // starvation guard (Note [Backfill with a starvation guard])
  double restart_backoff_seconds = 5;             // first requeue delay after a failed attempt (doubles)
  int max_running_per_owner = 0;                  // quota; 0 = none
  std::string store_port_range = "29500-29999";   // TCPStore ports for attempts' rank 0, "LO-HI" inclusive
  std::string port_file;                          // written once listening: "grpc PORT\nmetrics PORT\n"
};

// Fills `opt` from argv. nullopt to go on; else the exit code: 0 after --help or --version, 2
// for a bad flag (CLI11 prints the flag and what is wrong).
std::optional<int> ParseFlags(int argc, char** argv, Options* opt) {
  CLI::App app{"vsdm-coordinator: job API, durable store, gang scheduler, worker leases, /metrics"};
  app.set_version_flag("--version", "vsdm-coordinator " VSDM_VERSION);
  app.add_option("--listen", opt->listen, "gRPC listen address (host:port; port 0 = any)");
  app.add_option("--data-dir", opt->data_dir, "directory of the SQLite job store");
  app.add_option("--metrics-listen", opt->metrics_listen, "Prometheus /metrics address (\"\" = off)");
  app.add_option("--artifact-root", opt->artifact_root, "jobs' artifact root (default <data-dir>/artifacts)");
  app.add_option("--lease-seconds", opt->lease_seconds, "worker lease")->check(CLI::Range(1.0, 3600.0));
  app.add_option("--tick-seconds", opt->tick_seconds, "scheduling period")->check(CLI::Range(0.01, 60.0));
  app.add_option("--reserve-after-seconds", opt->reserve_after_seconds, "starvation guard")
      ->check(CLI::Range(0.0, 1e7));
  app.add_option("--restart-backoff-seconds", opt->restart_backoff_seconds, "first restart backoff")
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--max-running-per-owner", opt->max_running_per_owner, "per-owner quota (0 = none)")
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("--store-port-range", opt->store_port_range,
                 "TCPStore ports handed to attempts, LO-HI inclusive (default 29500-29999)")
      ->check(CLI::Validator(
          [](std::string& v) {
            auto r = vsdm::server::ParsePortRange(v);
            return r.ok() ? std::string() : std::string(r.status().message());
          },
          "LO-HI"));
  app.add_option("--port-file", opt->port_file, "write the bound ports here once listening");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (opt->artifact_root.empty()) opt->artifact_root = opt->data_dir + "/artifacts";
  return std::nullopt;
}

vsdm::server::JobManagerOptions ManagerOptions(const Options& opt) {
  vsdm::server::JobManagerOptions mo;
  mo.lease = absl::Seconds(opt.lease_seconds);
  mo.restart_backoff = absl::Seconds(opt.restart_backoff_seconds);
  mo.scheduler.reserve_after = absl::Seconds(opt.reserve_after_seconds);
  mo.scheduler.max_running_per_owner = opt.max_running_per_owner;
  mo.artifact_root = opt.artifact_root;
  mo.store_ports = *vsdm::server::ParsePortRange(opt.store_port_range);  // validated by ParseFlags
  return mo;
}

// Blocks SIGINT and SIGTERM in this thread and every thread started after it, so that only
// WaitForStopSignal (on the main thread) takes them.
sigset_t BlockStopSignals() {
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  return sigs;
}

int WaitForStopSignal(const sigset_t& sigs) {
  int sig = 0;
  sigwait(&sigs, &sig);
  return sig;
}

int Fail(const std::string& what) {
  std::cerr << "vsdm-coordinator: " << what << "\n";
  return 1;
}

// The gRPC server with both services, health and reflection; null when it cannot listen.
std::unique_ptr<grpc::Server> StartGrpc(const std::string& listen, std::vector<grpc::Service*> services, int* port) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), port);
  for (grpc::Service* s : services) builder.RegisterService(s);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || *port == 0) return nullptr;
  server->GetHealthCheckService()->SetServingStatus(true);
  return server;
}

// The start-up line (the tests and vsdmctl local up read "N jobs recovered"), the first metrics,
// then the port file: a parent waiting on it finds the coordinator serving.
void Announce(const Options& opt, JobManager& manager, CoordinatorMetrics& metrics, const vsdm::BoundPorts& ports) {
  const std::string host = opt.listen.substr(0, opt.listen.rfind(':'));
  auto counts = manager.TakeStats();
  int recovered = 0;
  for (const auto& [s, n] : counts.jobs_by_state) recovered += n;
  const std::string metrics_url =
      ports.metrics ? absl::StrCat("http://", opt.metrics_listen.substr(0, opt.metrics_listen.rfind(':')), ":",
                                   ports.metrics, "/metrics")
                    : std::string("off");
  std::cout << "vsdm-coordinator: listening on " << host << ":" << ports.grpc << ", metrics " << metrics_url
            << ", data dir " << opt.data_dir << " (" << recovered << " jobs recovered)" << std::endl;
  metrics.Update(counts);
  if (opt.port_file.empty()) return;
  if (absl::Status s = vsdm::WritePortFile(opt.port_file, ports); !s.ok()) Fail(s.ToString());
}

// Tick and metrics every `period` on its own thread, until destroyed.
class Ticker {
 public:
  Ticker(JobManager& manager, CoordinatorMetrics& metrics, absl::Duration period)
      : thread_([this, &manager, &metrics, period] {
          while (!stop_.WaitForNotificationWithTimeout(period)) {
            manager.Tick();
            metrics.Update(manager.TakeStats());  // the only caller of Update from now on
          }
        }) {}
  ~Ticker() {
    stop_.Notify();
    thread_.join();
  }

 private:
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  if (std::optional<int> exit_code = ParseFlags(argc, argv, &opt)) return *exit_code;
  const sigset_t stop_signals = BlockStopSignals();

  auto store = vsdm::server::SqliteJobStore::Open(opt.data_dir);
  if (!store.ok()) return Fail(store.status().ToString());
  vsdm::RealClock clock;
  JobManager manager(**store, clock, ManagerOptions(opt));
  if (auto s = manager.Recover(); !s.ok()) return Fail(absl::StrCat("recovering ", opt.data_dir, ": ", s.ToString()));

  auto registry = std::make_shared<prometheus::Registry>();
  CoordinatorMetrics metrics(registry);
  auto endpoint = vsdm::ServeMetrics(opt.metrics_listen, registry);
  if (!endpoint.ok()) return Fail(std::string(endpoint.status().message()));

  vsdm::server::ArtifactStore artifacts(opt.artifact_root);
  vsdm::server::JobServiceImpl jobs(manager, artifacts, metrics);
  vsdm::server::WorkerServiceImpl workers(manager, artifacts, metrics);
  int port = 0;
  std::unique_ptr<grpc::Server> server = StartGrpc(opt.listen, {&jobs, &workers}, &port);
  if (!server) return Fail("cannot listen on " + opt.listen);
  Announce(opt, manager, metrics, {port, endpoint->port});
  {
    Ticker ticker(manager, metrics, absl::Seconds(opt.tick_seconds));
    const int sig = WaitForStopSignal(stop_signals);
    std::cout << "vsdm-coordinator: signal " << sig << ", shutting down" << std::endl;
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  return 0;
}
