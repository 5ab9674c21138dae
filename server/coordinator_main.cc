// vsdm-coordinator: the gRPC API for users and worker agents, the durable job store, the gang
// scheduler and worker leases, and /metrics. Composition root: parses flags, builds objects,
// wires them, runs the scheduling ticker until SIGINT/SIGTERM. `vsdm-coordinator backup` copies
// the job store of a data dir (running or not) and exits.
// Exit codes: 0; 1 when it cannot start (or a backup fails); 2 for a bad flag or a refused
// configuration (no --auth-tokens on a routable --listen, a data dir in use by another one).
#include <atomic>
#include <csignal>
#include <fstream>
#include <iostream>
#include <sstream>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "CLI/CLI.hpp"
#include "grpc/health/v1/health.grpc.pb.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/clock.h"
#include "common/metrics_exposer.h"
#include "common/port_file.h"
#include "server/artifact_store.h"
#include "server/assignment_book.h"
#include "server/audit_log.h"
#include "server/auth.h"
#include "server/coordinator_metrics.h"
#include "server/job_manager.h"
#include "server/job_service.h"
#include "server/log_book.h"
#include "server/job_store.h"
#include "server/worker_service.h"

namespace {

using vsdm::server::CoordinatorMetrics;
using vsdm::server::JobManager;

struct Options {
  std::string listen = "127.0.0.1:50051";         // gRPC address; port 0 = any free port (printed)
  std::string data_dir = "vsdm-data";             // the SQLite job store (vsdm.db) lives here
  std::string metrics_listen = "127.0.0.1:9464";  // Prometheus /metrics; "" = off; port 0 = any
  std::string health_listen;  // --health-listen: plaintext gRPC health only ("" = off)
  std::string artifact_root;                      // jobs' artifacts; default <data-dir>/artifacts
  double lease_seconds = 15;                      // a worker without heartbeat for this long is lost
  double tick_seconds = 0.2;                      // scheduling pass / lease check period
  double reserve_after_seconds = 600;             // starvation guard (Note [Backfill with a starvation guard])
  double restart_backoff_seconds = 5;             // first requeue delay after a failed attempt (doubles)
  int max_running_per_owner = 0;                  // quota; 0 = none
  std::string store_port_range = "29500-29999";   // TCPStore ports for attempts' rank 0, "LO-HI" inclusive
  std::string port_file;                          // written once listening: "grpc PORT\nmetrics PORT\n"
  // Security (server/auth.h, DESIGN.md §Security).
  std::string auth_tokens;     // TOKEN PRINCIPAL ROLE lines; "" = auth off (loopback only unless insecure)
  bool insecure = false;       // allow a routable --listen without --auth-tokens
  std::string tls_cert, tls_key;  // PEM; both or neither
  std::string tls_client_ca;   // PEM CA: verify client certs; WorkerService then needs one (mTLS)
  bool tls_require_client_cert = false;  // refuse every connection without a verified client cert
  std::string audit_log;       // default <data-dir>/audit.log; "-" = off
  int64_t priority_ceiling = 100;  // users may not submit above it
  int max_queued_per_owner = 1000;  // quota on queued jobs per owner; 0 = none
  int max_message_bytes = 8 << 20;  // gRPC receive limit (artifact chunks are 1 MiB)
  int64_t max_rank_memory = vsdm::kDefaultMaxRankMemoryBytes;  // per-rank estimate bound; 0 = none
  int retain_finished = 10000;      // finished jobs kept (the oldest beyond are deleted); 0 = all
  double store_probe_seconds = 1;   // Note [Health follows the store]: probe period while no write commits
  // Note [Progress deadlines], Note [Lease safety] (server/job_manager.h).
  double startup_deadline_seconds = 600;
  double progress_deadline_factor = 10;
  double progress_deadline_min_seconds = 60;
  double stall_seconds = 5;
  double max_expire_fraction = 0.5;
  int64_t artifact_quota_bytes = int64_t{64} << 30;  // per job; 0 = none
  // Note [Handlers off the reactor] (server/handler_pool.h): the threads every gRPC handler runs
  // on, and how many calls may wait for one before new ones are refused RESOURCE_EXHAUSTED.
  int handler_threads = 16;
  int handler_queue = 10000;
  // `backup` subcommand: copy <data-dir>/vsdm.db to this file and exit ("" = run the coordinator).
  std::string backup_out;
};

// True for 127.0.0.0/8, ::1 and localhost (what only this machine can reach).
bool IsLoopback(const std::string& listen) {
  std::string host = listen.substr(0, listen.rfind(':'));
  if (host == "localhost" || host == "[::1]" || host == "::1") return true;
  return absl::StartsWith(host, "127.");
}

// The secure default and the TLS flags that go together.
absl::Status CheckSecurityFlags(const Options& o) {
  if (o.tls_cert.empty() != o.tls_key.empty())
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  if (!o.tls_client_ca.empty() && o.tls_cert.empty())
    return absl::InvalidArgumentError("--tls-client-ca needs --tls-cert and --tls-key (mTLS is TLS first)");
  if (o.tls_require_client_cert && o.tls_client_ca.empty())
    return absl::InvalidArgumentError("--tls-require-client-cert needs --tls-client-ca");
  if (o.auth_tokens.empty() && o.tls_client_ca.empty() && !o.insecure && !IsLoopback(o.listen))
    return absl::InvalidArgumentError(absl::StrCat(
        "refusing to listen on ", o.listen, " without --auth-tokens: anyone who reaches it could submit, cancel "
        "and read every job and pose as a worker. Give --auth-tokens FILE (and --tls-cert/--tls-key), listen on "
        "127.0.0.1, or pass --insecure if the network is trusted"));
  return absl::OkStatus();
}

// The security flags (server/auth.h, DESIGN.md §Security).
void AddSecurityFlags(CLI::App& app, Options* opt) {
  app.add_option("--auth-tokens", opt->auth_tokens,
                 "bearer tokens, a line each: TOKEN PRINCIPAL ROLE (user|admin|worker); re-read on SIGHUP")
      ->check(CLI::ExistingFile);
  app.add_flag("--insecure", opt->insecure, "allow a non-loopback --listen without --auth-tokens (anyone can do anything)");
  app.add_option("--tls-cert", opt->tls_cert, "server certificate chain (PEM)")->check(CLI::ExistingFile);
  app.add_option("--tls-key", opt->tls_key, "server private key (PEM)")->check(CLI::ExistingFile);
  app.add_option("--tls-client-ca", opt->tls_client_ca, "verify client certificates against this CA; WorkerService then needs one")
      ->check(CLI::ExistingFile);
  app.add_flag("--tls-require-client-cert", opt->tls_require_client_cert,
               "refuse any connection without a client certificate signed by --tls-client-ca");
  app.add_option("--audit-log", opt->audit_log, "audit log file (default <data-dir>/audit.log; - = off)");
  app.add_option("--priority-ceiling", opt->priority_ceiling, "the highest priority a user may ask")
      ->check(CLI::Range(-1000, 1000));
  app.add_option("--max-queued-per-owner", opt->max_queued_per_owner, "queued jobs per owner (0 = no quota)")
      ->check(CLI::Range(0, 1 << 24));
}

// `vsdm-coordinator backup --data-dir D --out FILE` (Options::backup_out).
void AddBackupCommand(CLI::App& app, Options* opt) {
  CLI::App* backup = app.add_subcommand(
      "backup",
      "copy the job store of --data-dir to --out with SQLite's online backup (also while a coordinator runs "
      "on it), check the copy, print its job count and exit. To restore: stop the coordinator, put FILE at "
      "<data-dir>/vsdm.db and remove vsdm.db-wal and vsdm.db-shm");
  backup->add_option("--data-dir", opt->data_dir, "directory of the SQLite job store");
  backup->add_option("--out", opt->backup_out, "the copy (written atomically)")->required();
}

void AddReliabilityFlags(CLI::App& app, Options* opt) {
  app.add_option("--startup-deadline-seconds", opt->startup_deadline_seconds,
                 "an attempt with no progress report this long after its start, or after its last round, is "
                 "failed and requeued")
      ->check(CLI::Range(1.0, 1e6));
  app.add_option("--progress-deadline-factor", opt->progress_deadline_factor,
                 "between rounds, an attempt silent for this many times its round time is failed and requeued")
      ->check(CLI::Range(1.0, 1e6));
  app.add_option("--progress-deadline-min-seconds", opt->progress_deadline_min_seconds,
                 "the least time between progress reports before an attempt is failed")
      ->check(CLI::Range(1.0, 1e6));
  app.add_option("--stall-seconds", opt->stall_seconds,
                 "a gap between scheduling ticks longer than this (the coordinator stalled) extends every lease")
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--max-expire-fraction", opt->max_expire_fraction,
                 "more than this fraction of the workers losing their lease at once get one more lease first")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--artifact-quota-bytes", opt->artifact_quota_bytes, "artifact bytes a job may store (0 = none)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 50));
  app.add_option("--handler-threads", opt->handler_threads, "threads the gRPC handlers run on (not gRPC's own)")
      ->check(CLI::Range(1, 1024));
  app.add_option("--handler-queue", opt->handler_queue,
                 "calls that may wait for a handler thread; more are refused RESOURCE_EXHAUSTED (retried)")
      ->check(CLI::Range(1, 1000000));
}

// Fills `opt` from argv. nullopt to go on; else the exit code: 0 after --help or --version, 2
// for a bad flag (CLI11 prints the flag and what is wrong).
std::optional<int> ParseFlags(int argc, char** argv, Options* opt) {
  CLI::App app{"vsdm-coordinator: job API, durable store, gang scheduler, worker leases, /metrics"};
  app.set_version_flag("--version", "vsdm-coordinator " VSDM_VERSION);
  app.add_option("--listen", opt->listen, "gRPC listen address (host:port; port 0 = any)");
  app.add_option("--data-dir", opt->data_dir, "directory of the SQLite job store");
  app.add_option("--metrics-listen", opt->metrics_listen, "Prometheus /metrics address (\"\" = off)");
  app.add_option("--health-listen", opt->health_listen,
                 "a second, plaintext gRPC server with only grpc.health.v1 (for kubelet gRPC probes when --listen is TLS)");
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
  AddSecurityFlags(app, opt);
  app.add_option("--max-rank-memory", opt->max_rank_memory,
                 "refuse specs whose estimated per-rank peak memory exceeds this many bytes (0 = no bound)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 50));
  app.add_option("--retain-finished", opt->retain_finished,
                 "finished jobs kept with their events; older ones are deleted (0 = keep all)")
      ->check(CLI::Range(0, 1 << 24));
  app.add_option("--max-message-bytes", opt->max_message_bytes, "largest gRPC message received")
      ->check(CLI::Range(1 << 20, 64 << 20));
  app.add_option("--store-probe-seconds", opt->store_probe_seconds,
                 "how often health checks that the job store can write while nothing else does")
      ->check(CLI::Range(0.05, 60.0));
  AddReliabilityFlags(app, opt);
  AddBackupCommand(app, opt);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (opt->artifact_root.empty()) opt->artifact_root = opt->data_dir + "/artifacts";
  if (opt->audit_log.empty()) opt->audit_log = opt->data_dir + "/audit.log";
  if (opt->audit_log == "-") opt->audit_log.clear();
  if (absl::Status s = CheckSecurityFlags(*opt); !s.ok()) {
    std::cerr << "vsdm-coordinator: " << s.message() << "\n";
    return 2;
  }
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
  mo.max_queued_per_owner = opt.max_queued_per_owner;
  mo.retain_finished = opt.retain_finished;
  mo.spec_limits.max_rank_memory_bytes = opt.max_rank_memory;
  mo.startup_deadline = absl::Seconds(opt.startup_deadline_seconds);
  mo.progress_deadline_factor = opt.progress_deadline_factor;
  mo.progress_deadline_min = absl::Seconds(opt.progress_deadline_min_seconds);
  mo.stall_threshold = absl::Seconds(opt.stall_seconds);
  mo.max_expire_fraction = opt.max_expire_fraction;
  return mo;
}

// Blocks SIGINT and SIGTERM in this thread and every thread started after it, so that only
// WaitForStopSignal (on the main thread) takes them.
sigset_t BlockStopSignals() {
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  return sigs;
}

// Waits for SIGINT or SIGTERM; each SIGHUP on the way re-reads the tokens file.
int WaitForStopSignal(const sigset_t& sigs, vsdm::server::Authenticator& auth) {
  for (;;) {
    int sig = 0;
    sigwait(&sigs, &sig);
    if (sig != SIGHUP) return sig;
    const absl::Status s = auth.Reload();
    std::cout << "vsdm-coordinator: SIGHUP: "
              << (s.ok() ? std::string(auth.enabled() ? "tokens re-read" : "no --auth-tokens to re-read")
                         : absl::StrCat(s.message(), " (keeping the previous tokens)"))
              << std::endl;
  }
}

int Fail(const std::string& what) {
  std::cerr << "vsdm-coordinator: " << what << "\n";
  return 1;
}

std::optional<std::string> ReadPem(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// TLS (and mTLS) server credentials from the flags, insecure ones without --tls-cert; null with
// the error in `*error` when a PEM file cannot be read.
std::shared_ptr<grpc::ServerCredentials> ServerCredentials(const Options& o, std::string* error) {
  if (o.tls_cert.empty()) return grpc::InsecureServerCredentials();
  auto cert = ReadPem(o.tls_cert), key = ReadPem(o.tls_key);
  std::optional<std::string> ca = o.tls_client_ca.empty() ? std::string() : ReadPem(o.tls_client_ca);
  if (!cert || !key || !ca) {
    *error = "cannot read --tls-cert, --tls-key or --tls-client-ca";
    return nullptr;
  }
  grpc::SslServerCredentialsOptions so(o.tls_client_ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                       : o.tls_require_client_cert
                                           ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                           : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  so.pem_root_certs = *ca;
  so.pem_key_cert_pairs.push_back({*key, *cert});
  return grpc::SslServerCredentials(so);
}

// The gRPC server with both services and health; null when it cannot listen. No server
// reflection: gRPC 1.51's reflection service registers itself for every caller once linked
// (a static initializer) and cannot be put behind our tokens.
std::unique_ptr<grpc::Server> StartGrpc(const Options& o, std::vector<grpc::Service*> services, int* port,
                                        std::string* error) {
  grpc::EnableDefaultHealthCheckService(true);
  std::shared_ptr<grpc::ServerCredentials> creds = ServerCredentials(o, error);
  if (!creds) return nullptr;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(o.listen, creds, port);
  builder.SetMaxReceiveMessageSize(o.max_message_bytes);
  builder.SetMaxSendMessageSize(o.max_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, 256);
  builder.AddChannelArgument(GRPC_ARG_MAX_METADATA_SIZE, 16 * 1024);
  for (grpc::Service* s : services) builder.RegisterService(s);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || *port == 0) {
    *error = "cannot listen on " + o.listen;
    return nullptr;
  }
  // "" (the whole server) and each service by name; StoreHealth flips them all together.
  for (const char* name : {vsdm::v1::JobService::service_full_name(), vsdm::v1::WorkerService::service_full_name()})
    server->GetHealthCheckService()->SetServingStatus(name, true);
  server->GetHealthCheckService()->SetServingStatus(true);
  return server;
}

// The plaintext health-only server of --health-listen (the kubelet's gRPC probe cannot speak
// TLS): its one service is grpc.health.v1.Health/Check (no Watch), so it tells nothing but
// SERVING / NOT_SERVING. Exits the process when it cannot listen.
class HealthOnlyServer {
 public:
  explicit HealthOnlyServer(const std::string& listen) {
    grpc::EnableDefaultHealthCheckService(false);  // a global, read by the builder: ours instead
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
    builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, 16);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    if (!server_ || port == 0) {
      Fail("cannot listen on --health-listen " + listen);
      std::exit(2);
    }
  }
  // What Check answers (StoreHealth).
  void SetServing(bool serving) { service_.serving = serving; }
  // Probes fail from now on (called before the main server shuts down, after StoreHealth stopped).
  void NotServing() { service_.serving = false; }
  ~HealthOnlyServer() { server_->Shutdown(std::chrono::system_clock::now()); }

 private:
  struct Service : grpc::health::v1::Health::CallbackService {
    std::atomic<bool> serving{true};
    grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* ctx, const grpc::health::v1::HealthCheckRequest*,
                                    grpc::health::v1::HealthCheckResponse* resp) override {
      resp->set_status(serving ? grpc::health::v1::HealthCheckResponse::SERVING
                               : grpc::health::v1::HealthCheckResponse::NOT_SERVING);
      auto* reactor = ctx->DefaultReactor();
      reactor->Finish(grpc::Status::OK);
      return reactor;
    }
  };
  Service service_;
  std::unique_ptr<grpc::Server> server_;
};

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
  // `pools` (name, pool) are reported in vsdm_handler_calls each tick; all must outlive this.
  Ticker(JobManager& manager, CoordinatorMetrics& metrics, absl::Duration period,
         std::vector<std::pair<std::string, const vsdm::server::HandlerPool*>> pools)
      : thread_([this, &manager, &metrics, period, pools = std::move(pools)] {
          while (!stop_.WaitForNotificationWithTimeout(period)) {
            manager.Tick();
            metrics.Update(manager.TakeStats());  // the only caller of Update from now on
            for (const auto& [name, pool] : pools) metrics.SetHandlerCalls(name, pool->queued(), pool->busy());
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

// Note [Health follows the store]: while the job store cannot write (a full or read-only disk,
// I/O errors; Note [Storage faults] in job_store.h) every submit and state change is refused, so
// health says NOT_SERVING, on the main port ("" and each service) and on --health-listen alike,
// and load balancers and kubelet readiness probes stop sending traffic. Every period a probe
// (SqliteJobStore::Probe: a tiny transaction, skipped when a write committed within the period)
// notices when the disk fails while nothing writes, and when it works again, so SERVING comes
// back by itself. (Review M5: health was set once at start and never changed.)
class StoreHealth {
 public:
  // Both servers must outlive this; `health_only` may be null.
  StoreHealth(vsdm::server::SqliteJobStore& store, grpc::Server& server, HealthOnlyServer* health_only,
              CoordinatorMetrics& metrics, absl::Duration period)
      : thread_([this, &store, &server, health_only, &metrics, period] {
          bool serving = true;
          while (!stop_.WaitForNotificationWithTimeout(period)) {
            const absl::Status s = store.Probe(period);
            if (s.ok() == serving) continue;
            serving = s.ok();
            metrics.SetStoreWritable(serving);
            server.GetHealthCheckService()->SetServingStatus(serving);
            if (health_only) health_only->SetServing(serving);
            std::cerr << "vsdm-coordinator: "
                      << (serving ? std::string("job store writable again: health SERVING")
                                  : absl::StrCat("job store cannot write (", s.message(),
                                                 "): health NOT_SERVING, submits refused (UNAVAILABLE) until a "
                                                 "write succeeds"))
                      << std::endl;
          }
        }) {}
  ~StoreHealth() {
    stop_.Notify();
    thread_.join();
  }

 private:
  absl::Notification stop_;
  std::thread thread_;
};

// `vsdm-coordinator backup`: exit 0 with a line saying what the copy holds, 1 if it failed.
int RunBackup(const Options& opt) {
  const absl::Time start = absl::Now();
  auto r = vsdm::server::BackupJobStore(opt.data_dir, opt.backup_out);
  if (!r.ok()) return Fail(absl::StrCat("backup of ", opt.data_dir, ": ", r.status().message()));
  std::cout << "vsdm-coordinator: backup of " << opt.data_dir << "/vsdm.db written to " << opt.backup_out << ": "
            << r->jobs << " jobs, " << r->events << " events, " << r->bytes << " bytes, quick_check ok, in "
            << absl::ToInt64Milliseconds(absl::Now() - start) << " ms" << std::endl;
  return 0;
}

// The data dir's instance lock (held as long as `lock` lives, so for the process: Note
// [Instance lock]), then the store. nullopt to go on, else the exit code: 2 when another
// coordinator holds the dir (review H8), 1 when the store cannot be opened.
struct Storage {
  std::unique_ptr<vsdm::server::DataDirLock> lock;  // declared first: released after the store closed
  std::unique_ptr<vsdm::server::SqliteJobStore> store;
};
std::optional<int> OpenStorage(const Options& opt, Storage* out) {
  auto lock = vsdm::server::DataDirLock::Acquire(opt.data_dir);
  if (!lock.ok()) {
    Fail(std::string(lock.status().message()));
    return absl::IsFailedPrecondition(lock.status()) ? 2 : 1;
  }
  out->lock = std::move(*lock);
  auto store = vsdm::server::SqliteJobStore::Open(opt.data_dir);
  if (!store.ok()) return Fail(std::string(store.status().message()));
  out->store = std::move(*store);
  return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  if (std::optional<int> exit_code = ParseFlags(argc, argv, &opt)) return *exit_code;
  if (!opt.backup_out.empty()) return RunBackup(opt);
  const sigset_t stop_signals = BlockStopSignals();

  Storage storage;
  if (std::optional<int> exit_code = OpenStorage(opt, &storage)) return *exit_code;
  vsdm::RealClock clock;
  JobManager manager(*storage.store, clock, ManagerOptions(opt));
  if (auto s = manager.Recover(); !s.ok()) return Fail(absl::StrCat("recovering ", opt.data_dir, ": ", s.ToString()));

  auto registry = std::make_shared<prometheus::Registry>();
  CoordinatorMetrics metrics(registry);
  auto endpoint = vsdm::ServeMetrics(opt.metrics_listen, registry);
  if (!endpoint.ok()) return Fail(std::string(endpoint.status().message()));

  auto auth = vsdm::server::Authenticator::Create(
      {opt.auth_tokens, /*worker_cert_required=*/!opt.tls_client_ca.empty()});
  if (!auth.ok()) return Fail(std::string(auth.status().message()));
  auto audit = vsdm::server::AuditLog::Open(opt.audit_log);
  if (!audit.ok()) return Fail(std::string(audit.status().message()));
  vsdm::server::ArtifactStoreOptions artifact_options;
  artifact_options.max_job_bytes = opt.artifact_quota_bytes;
  vsdm::server::ArtifactStore artifacts(opt.artifact_root, artifact_options);
  vsdm::server::HandlerPool pool(opt.handler_threads, opt.handler_queue);  // both outlive the server
  vsdm::server::HandlerPool heartbeat_pool(4, opt.handler_queue);
  vsdm::server::LogBook logs;
  const vsdm::server::ServiceDeps deps{manager, artifacts,      metrics,  **auth, **audit,
                                       pool,    heartbeat_pool, opt.priority_ceiling, &logs};
  vsdm::server::JobServiceImpl jobs(deps);
  vsdm::server::WorkerServiceImpl workers(deps);
  int port = 0;
  std::string error;
  std::unique_ptr<grpc::Server> server = StartGrpc(opt, {&jobs, &workers}, &port, &error);
  if (!server) return Fail(error);
  std::unique_ptr<HealthOnlyServer> health =
      opt.health_listen.empty() ? nullptr : std::make_unique<HealthOnlyServer>(opt.health_listen);
  Announce(opt, manager, metrics, {port, endpoint->port});
  {
    Ticker ticker(manager, metrics, absl::Seconds(opt.tick_seconds),
                  {{"handlers", &pool}, {"heartbeats", &heartbeat_pool}});
    StoreHealth store_health(*storage.store, *server, health.get(), metrics, absl::Seconds(opt.store_probe_seconds));
    const int sig = WaitForStopSignal(stop_signals, **auth);
    std::cout << "vsdm-coordinator: signal " << sig << ", shutting down" << std::endl;
  }
  if (health) health->NotServing();  // probes fail first
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  return 0;
}
