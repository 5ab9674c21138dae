// vsdm-coordinator: the gRPC API for users and worker agents, the durable job store, the gang
// scheduler and worker leases, and /metrics. Composition root: parses flags, builds objects,
// wires them, runs the scheduling ticker until SIGINT/SIGTERM.
#include <csignal>
#include <iostream>
#include <thread>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/clock.h"
#include "common/file_util.h"
#include "common/metrics_exposer.h"
#include "server/artifact_store.h"
#include "server/coordinator_metrics.h"
#include "server/job_manager.h"
#include "server/job_service.h"
#include "server/job_store.h"
#include "server/worker_service.h"

namespace {

struct Options {
  std::string listen = "127.0.0.1:50051";        // gRPC address; port 0 = any free port (printed)
  std::string data_dir = "vsdm-data";            // the SQLite job store (vsdm.db) lives here
  std::string metrics_listen = "127.0.0.1:9464";  // Prometheus /metrics; "" = off; port 0 = any
  std::string artifact_root;                     // jobs' artifacts; default <data-dir>/artifacts
  double lease_seconds = 15;                     // a worker without heartbeat for this long is lost
  double tick_seconds = 0.2;                     // scheduling pass / lease check period
  double reserve_after_seconds = 600;            // starvation guard (Note [Backfill with a starvation guard])
  double restart_backoff_seconds = 5;            // first requeue delay after a failed attempt (doubles)
  int max_running_per_owner = 0;                 // quota; 0 = none
  std::string port_file;                         // written once listening: "grpc PORT\nmetrics PORT\n"
};

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{"vsdm-coordinator: job API, durable store, gang scheduler, worker leases, /metrics"};
  app.add_option("--listen", opt.listen, "gRPC listen address (host:port; port 0 = any)");
  app.add_option("--data-dir", opt.data_dir, "directory of the SQLite job store");
  app.add_option("--metrics-listen", opt.metrics_listen, "Prometheus /metrics address (\"\" = off)");
  app.add_option("--artifact-root", opt.artifact_root, "jobs' artifact root (default <data-dir>/artifacts)");
  app.add_option("--lease-seconds", opt.lease_seconds, "worker lease")->check(CLI::Range(1.0, 3600.0));
  app.add_option("--tick-seconds", opt.tick_seconds, "scheduling period")->check(CLI::Range(0.01, 60.0));
  app.add_option("--reserve-after-seconds", opt.reserve_after_seconds, "starvation guard")
      ->check(CLI::Range(0.0, 1e7));
  app.add_option("--restart-backoff-seconds", opt.restart_backoff_seconds, "first restart backoff")
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--max-running-per-owner", opt.max_running_per_owner, "per-owner quota (0 = none)")
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("--port-file", opt.port_file, "write the bound ports here once listening");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (opt.artifact_root.empty()) opt.artifact_root = opt.data_dir + "/artifacts";

  // Signals are taken by sigwait below, on the main thread only.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  auto store = vsdm::server::SqliteJobStore::Open(opt.data_dir);
  if (!store.ok()) {
    std::cerr << "vsdm-coordinator: " << store.status() << "\n";
    return 1;
  }
  vsdm::RealClock clock;
  vsdm::server::JobManagerOptions mo;
  mo.lease = absl::Seconds(opt.lease_seconds);
  mo.restart_backoff = absl::Seconds(opt.restart_backoff_seconds);
  mo.scheduler.reserve_after = absl::Seconds(opt.reserve_after_seconds);
  mo.scheduler.max_running_per_owner = opt.max_running_per_owner;
  mo.artifact_root = opt.artifact_root;
  vsdm::server::JobManager manager(**store, clock, mo);
  if (auto s = manager.Recover(); !s.ok()) {
    std::cerr << "vsdm-coordinator: recovering " << opt.data_dir << ": " << s << "\n";
    return 1;
  }

  auto registry = std::make_shared<prometheus::Registry>();
  vsdm::server::CoordinatorMetrics metrics(registry);
  auto endpoint = vsdm::ServeMetrics(opt.metrics_listen, registry);
  if (!endpoint.ok()) {
    std::cerr << "vsdm-coordinator: " << endpoint.status().message() << "\n";
    return 1;
  }
  const int metrics_port = endpoint->port;

  vsdm::server::ArtifactStore artifacts(opt.artifact_root);
  vsdm::server::JobServiceImpl jobs(manager, artifacts, metrics);
  vsdm::server::WorkerServiceImpl workers(manager, artifacts, metrics);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(opt.listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&jobs);
  builder.RegisterService(&workers);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::cerr << "vsdm-coordinator: cannot listen on " << opt.listen << "\n";
    return 1;
  }
  server->GetHealthCheckService()->SetServingStatus(true);
  const std::string host = opt.listen.substr(0, opt.listen.rfind(':'));
  auto counts = manager.Stats();
  int recovered = 0;
  for (const auto& [s, n] : counts.jobs_by_state) recovered += n;
  std::cout << "vsdm-coordinator: listening on " << host << ":" << port << ", metrics "
            << (metrics_port ? absl::StrCat("http://", opt.metrics_listen.substr(0, opt.metrics_listen.rfind(':')), ":",
                                            metrics_port, "/metrics")
                             : std::string("off"))
            << ", data dir " << opt.data_dir << " (" << recovered << " jobs recovered)" << std::endl;
  metrics.Update(counts);
  if (!opt.port_file.empty()) {
    auto s = vsdm::AtomicWriteFile(opt.port_file, absl::StrCat("grpc ", port, "\nmetrics ", metrics_port, "\n"));
    if (!s.ok()) std::cerr << "vsdm-coordinator: " << s << "\n";
  }

  absl::Notification stop;
  std::thread ticker([&] {
    while (!stop.WaitForNotificationWithTimeout(absl::Seconds(opt.tick_seconds))) {
      manager.Tick();
      metrics.Update(manager.Stats());
    }
  });
  int sig = 0;
  sigwait(&sigs, &sig);
  std::cout << "vsdm-coordinator: signal " << sig << ", shutting down" << std::endl;
  stop.Notify();
  ticker.join();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  return 0;
}
