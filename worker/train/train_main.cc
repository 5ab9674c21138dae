// vsdm-train: runs one process role of a job. With --standalone, the whole job in this
// process; otherwise one rank of a distributed attempt (--rank R --trainers W --store HOST:PORT).
// Composition root: parses flags, builds objects, wires them.
//
// Exit codes: 0 done; 1 failed (I/O, internal); 2 bad input (spec, flags), nothing written;
// 3 a collective failed: a peer died, hung past --pg-timeout, or never joined.
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <thread>

#include <torch/torch.h>

#include "CLI/CLI.hpp"
#include "absl/strings/str_format.h"
#include "common/job_spec.h"
#include "core/threading.h"
#include "absl/strings/numbers.h"
#include "worker/train/distributed_job.h"
#include "worker/train/job_setup.h"
#include "worker/train/standalone_job.h"

namespace {

struct Options {
  std::string spec_path;    // job spec YAML
  std::string out_dir;      // artifacts + checkpoint/
  bool standalone = false;  // the whole job in this process
  int threads = 0;          // torch intra-op threads; 0 = all cores
  bool quiet = false;       // no per-round lines
  // Distributed mode.
  int rank = -1;            // 0..W-1 trainer, W variational
  int trainers = 0;         // W (0 = resources.trainers of the spec)
  std::string store;        // HOST:PORT of the TCPStore trainer 0 hosts
  int attempt = 0;
  double pg_timeout = 60;   // seconds before a collective with a dead/stuck peer fails
  std::string bind;         // gloo: address to bind
};

int Fail(int code, const std::string& msg) {
  std::cerr << "vsdm-train: " << msg << std::endl;
  return code;
}

// A failed collective leaves c10d worker threads blocked on dead peers; exit without running
// their destructors (which would wait for them).
[[noreturn]] void ExitCollectiveFailure(const std::string& who, const absl::Status& s) {
  std::cerr << "vsdm-train[" << who << "]: " << s << "\n"
            << "vsdm-train[" << who << "]: a peer rank is gone or stuck; this attempt cannot continue"
            << " (start every rank again on the same --out to resume from the last checkpoint)"
            << std::endl;
  std::cout.flush();
  std::_Exit(3);
}

int RunDistributed(const Options& opt, const vsdm::JobSpec& spec, const vsdm::worker::JobSetup& setup) {
  using namespace vsdm::worker;
  const int W = opt.trainers;
  const std::string who = opt.rank < W ? absl::StrCat("trainer ", opt.rank) : std::string("variational");
  const auto colon = opt.store.rfind(':');
  int port = 0;
  if (colon == std::string::npos || colon == 0 || !absl::SimpleAtoi(opt.store.substr(colon + 1), &port) ||
      port <= 0 || port > 65535)
    return Fail(2, "--store: must be HOST:PORT with a port in [1, 65535], got '" + opt.store + "'");
  const std::string host = opt.store.substr(0, colon);
  DistributedOptions d;
  d.out_dir = opt.out_dir;
  d.trainers = W;
  d.rank = opt.rank;
  d.attempt = opt.attempt;
  if (!opt.quiet) d.on_line = [](const std::string& line) { std::cout << line << std::endl; };
  d.on_event = [](const std::string& line) { std::cout << line << std::endl; };
  CommOptions co;
  co.backend = DefaultBackend(spec.resources.device == "cuda");
  co.timeout = std::chrono::milliseconds(static_cast<int64_t>(opt.pg_timeout * 1000));
  co.bind = !opt.bind.empty() ? opt.bind : (host == "127.0.0.1" || host == "localhost") ? "127.0.0.1" : "";
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME")) co.interface = ifname;  // as torchrun
  std::cout << absl::StrFormat("vsdm-train[%s]: attempt %d, %d trainers + 1 variational rank, store %s, %s, "
                               "timeout %.0fs%s\n",
                               who, opt.attempt, W, opt.store, co.backend, opt.pg_timeout,
                               spec.variational.async ? ", async A" : "")
            << std::flush;
  const auto t_rendezvous = std::chrono::steady_clock::now();
  auto comms = Rendezvous(host, port, d, co);
  if (!comms.ok()) ExitCollectiveFailure(who, comms.status());
  d.rendezvous_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_rendezvous).count();
  auto result = RunRank(setup, *comms, d);
  if (!result.ok()) {
    const auto code = result.status().code();
    if (code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded)
      ExitCollectiveFailure(who, result.status());
    return Fail(1, absl::StrCat(who, ": ", result.status().ToString()));
  }
  const auto& m = *result;
  if (opt.rank == 0) {
    std::cout << absl::StrFormat(
        "done in %.0fs: energy distance %.4f (data floor %.4f), straightness %.3f, trainer wait-for-A %.1f%%\n"
        "artifacts: %s/{samples.npy,samples.png,metrics.json,model.pt}\n",
        m["wall_seconds"].get<double>(), m["energy_distance"].get<double>(),
        m["energy_distance_floor"].get<double>(), m["ode_straightness"].get<double>(),
        100.0 * m["distributed"]["wait_for_a_fraction"].get<double>(), opt.out_dir);
  } else {
    std::cout << absl::StrFormat("vsdm-train[%s]: done\n", who);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{"vsdm-train: train a VSDM job (one role of it, or all of it with --standalone)"};
  app.add_option("--spec", opt.spec_path, "job spec YAML")->required();
  app.add_option("--out", opt.out_dir, "output directory (artifacts, checkpoint/)")->required();
  app.add_flag("--standalone", opt.standalone, "run the whole job in this process");
  app.add_option("--threads", opt.threads, "torch threads (0 = all cores)");
  app.add_flag("--quiet", opt.quiet, "no per-round progress lines");
  app.add_option("--rank", opt.rank, "distributed: this rank (0..W-1 trainers, W the variational rank)");
  app.add_option("--trainers", opt.trainers, "distributed: trainer ranks W (default: resources.trainers)");
  app.add_option("--store", opt.store, "distributed: HOST:PORT of the TCPStore (trainer 0 hosts it)");
  app.add_option("--attempt", opt.attempt, "distributed: attempt number (logs, store prefix)");
  app.add_option("--pg-timeout", opt.pg_timeout, "distributed: seconds before a collective fails (default 60)");
  app.add_option("--bind", opt.bind, "distributed: address Gloo binds (default: 127.0.0.1 for a loopback store, "
                                     "else $GLOO_SOCKET_IFNAME or the hostname)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (!opt.standalone) {
    if (opt.rank < 0) return Fail(2, "--rank: required without --standalone");
    if (opt.store.empty()) return Fail(2, "--store: required without --standalone (HOST:PORT)");
    if (!(opt.pg_timeout > 0 && opt.pg_timeout <= 3600)) return Fail(2, "--pg-timeout: must be in (0, 3600] seconds");
  }
  // Validate everything before touching the out dir: a refused spec writes nothing.
  auto spec = vsdm::LoadJobSpecFile(opt.spec_path);
  if (!spec.ok()) {
    std::cerr << "vsdm-train: " << spec.status().message() << "\n";
    return 2;
  }
  auto setup = vsdm::worker::MakeJobSetup(*spec);
  if (!setup.ok()) {
    std::cerr << "vsdm-train: " << setup.status().message() << "\n";
    return 2;
  }
  if (!opt.standalone) {
    if (opt.trainers == 0) opt.trainers = static_cast<int>(spec->resources.trainers);
    if (opt.trainers != spec->resources.trainers)
      return Fail(2, absl::StrFormat("--trainers %d does not match resources.trainers %d of the spec",
                                     opt.trainers, spec->resources.trainers));
    if (opt.rank > opt.trainers)
      return Fail(2, absl::StrFormat("--rank: must be in [0, %d] for %d trainers, got %d", opt.trainers,
                                     opt.trainers, opt.rank));
  }
  const int threads = opt.threads > 0 ? opt.threads : std::max(1u, std::thread::hardware_concurrency());
  const std::string thread_desc = vsdm::core::ConfigureThreads(threads);

  std::error_code ec;
  std::filesystem::create_directories(opt.out_dir, ec);
  if (ec) {
    std::cerr << "vsdm-train: cannot create " << opt.out_dir << ": " << ec.message() << "\n";
    return 1;
  }
  if (!opt.standalone) return RunDistributed(opt, *spec, *setup);
  std::cout << absl::StrFormat("vsdm-train: %s (%s, %s), %d rounds x %d steps, batch %d, %s\n",
                               spec->name, spec->problem.dataset, spec->method, spec->train.rounds,
                               spec->train.steps_per_round, spec->train.batch_points, thread_desc)
            << std::flush;
  vsdm::worker::StandaloneOptions so;
  so.out_dir = opt.out_dir;
  if (!opt.quiet)
    so.on_round = [](const vsdm::worker::RoundReport& r) {
      std::cout << vsdm::worker::FormatRoundLine(r) << std::endl;
    };
  auto metrics = vsdm::worker::RunStandalone(*setup, so);
  if (!metrics.ok()) {
    std::cerr << "vsdm-train: " << metrics.status() << "\n";
    return 1;
  }
  const auto& m = *metrics;
  std::cout << absl::StrFormat(
      "done in %.0fs: energy distance %.4f (data floor %.4f), PMF-RMSE %.3e (floor %.3e), "
      "straightness %.3f, transport %.2f\nartifacts: %s/{samples.npy,samples.png,metrics.json,model.pt}\n",
      m["wall_seconds"].get<double>(), m["energy_distance"].get<double>(),
      m["energy_distance_floor"].get<double>(), m["pmf_rmse"].get<double>(),
      m["pmf_rmse_floor"].get<double>(), m["ode_straightness"].get<double>(),
      m["ode_transport_cost"].get<double>(), opt.out_dir);
  return 0;
}
