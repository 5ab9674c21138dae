// vsdm-train: runs one process role of a job. With --standalone, the whole job in this
// process; otherwise one rank of a distributed attempt (--rank R --trainers W --store HOST:PORT).
// Composition root: parses flags (common/train_protocol.h), builds objects, wires them.
//
// Exit codes (train_protocol::TrainExit): 0 done; 1 failed (I/O, internal); 2 bad input (spec,
// flags), nothing written; 3 a collective failed: a peer died, hung past --pg-timeout, or never
// joined; 75 preempted: SIGTERM to this or another rank of the attempt, after trainer 0 wrote the
// round's checkpoint (Note [Preemption], preemption.h). $VSDM_PREEMPT_GRACE_SECONDS (default 8,
// under the agent's 10 s kill grace; 0: none) bounds how long after SIGTERM a rank may take to
// exit before its watchdog exits 75 without a new checkpoint. --backend auto|gloo|nccl (else
// $VSDM_BACKEND, else auto) picks a distributed rank's collective backend.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/job_spec.h"
#include "common/retry.h"
#include "common/stopwatch.h"
#include "common/train_protocol.h"
#include "core/threading.h"
#include "worker/train/distributed_job.h"
#include "worker/train/job_setup.h"
#include "worker/train/preemption.h"
#include "worker/train/standalone_job.h"

namespace {

using vsdm::train_protocol::ExitCode;
using vsdm::train_protocol::TrainArgs;
using vsdm::train_protocol::TrainExit;

int Fail(TrainExit code, const std::string& msg) {
  std::cerr << "vsdm-train: " << msg << std::endl;
  return ExitCode(code);
}

// A failed collective leaves c10d worker threads blocked on dead peers; exit without running
// their destructors (which would wait for them).
[[noreturn]] void ExitCollectiveFailure(const std::string& who, const absl::Status& s) {
  std::cerr << "vsdm-train[" << who << "]: " << s << "\n"
            << "vsdm-train[" << who << "]: a peer rank is gone or stuck; this attempt cannot continue"
            << " (start every rank again on the same --out to resume from the last checkpoint)" << std::endl;
  std::cout.flush();
  std::_Exit(ExitCode(TrainExit::kPeerLost));
}

// --backend auto|gloo|nccl: the collective backend of a distributed rank. Read here rather than by
// ParseTrainArgs, since the agent never passes it (common/train_protocol.h is the agent's
// contract): a rank started by an agent gets the default, or $VSDM_BACKEND from its environment.
constexpr char kBackendFlag[] = "--backend";
constexpr char kBackendEnv[] = "VSDM_BACKEND";
constexpr char kBackendHelp[] =
    "Collective backend:\n"
    "  --backend TEXT              distributed: auto | gloo | nccl (default $VSDM_BACKEND, else auto: nccl for\n"
    "                              resources.device cuda in a CUDA build, else gloo). gloo also carries CUDA\n"
    "                              tensors: use it when ranks share one GPU, which NCCL refuses\n";

// Removes every `--backend V` / `--backend=V` from `args` (argv[0] first, left alone) and returns
// the last V; "" when absent. INVALID_ARGUMENT when the flag has no value.
absl::StatusOr<std::string> TakeBackendFlag(std::vector<std::string>& args) {
  std::string value;
  std::vector<std::string> rest;
  const std::string with_value = std::string(kBackendFlag) + "=";
  for (size_t i = 0; i < args.size(); ++i) {
    if (i > 0 && args[i] == kBackendFlag) {
      if (i + 1 == args.size()) return absl::InvalidArgumentError("--backend: needs a value (auto | gloo | nccl)");
      value = args[++i];
    } else if (i > 0 && args[i].rfind(with_value, 0) == 0) {
      value = args[i].substr(with_value.size());
    } else {
      rest.push_back(args[i]);
    }
  }
  args = std::move(rest);
  return value;
}

// The backend a rank runs: --backend, else $VSDM_BACKEND, else auto (ResolveBackend, comm.h).
absl::StatusOr<std::string> ChooseBackend(const std::string& flag, const vsdm::JobSpec& spec) {
  std::string choice = flag, source = kBackendFlag;
  if (const char* env = std::getenv(kBackendEnv); choice.empty() && env != nullptr && *env != '\0') {
    choice = env;
    source = absl::StrCat("$", kBackendEnv);
  }
  if (choice.empty()) choice = "auto";
  auto backend = vsdm::worker::ResolveBackend(choice, spec.resources.device == "cuda");
  if (!backend.ok())
    return absl::Status(backend.status().code(), absl::StrCat(source, ": ", backend.status().message()));
  return backend;
}

vsdm::worker::CommOptions MakeCommOptions(const TrainArgs& opt, const std::string& backend, const std::string& host) {
  vsdm::worker::CommOptions co;
  co.backend = backend;
  co.timeout = std::chrono::milliseconds(static_cast<int64_t>(opt.pg_timeout_seconds * 1000));
  co.bind = !opt.bind.empty() ? opt.bind : (host == "127.0.0.1" || host == "localhost") ? "127.0.0.1" : "";
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME")) co.interface = ifname;  // as torchrun
  return co;
}

// The artifact names of a finished job (forecasting jobs write forecasts, not samples).
std::string ArtifactList(const nlohmann::json& m) {
  return m.contains("crps_sum") ? "{forecasts.npy,targets.npy,contexts.npy,forecast.png,metrics.json,model.pt}"
                                : "{samples.npy,samples.png,metrics.json,model.pt}";
}

// The headline quality figures of metrics.json: image quality for image jobs, else the
// energy distance and its floor.
std::string Headline(const nlohmann::json& m) {
  if (m.contains("quality") && m["quality"].contains("fd")) {
    const auto& q = m["quality"];
    return absl::StrFormat("FD %.2f (floor %.2f, Gaussian %.1f, blurred %.2f), confident %.2f (real %.2f)",
                           q["fd"].get<double>(), q["fd_floor"].get<double>(), q["fd_gaussian"].get<double>(),
                           q["fd_blur"].get<double>(), q["samples"]["confident_fraction"].get<double>(),
                           q["test"]["confident_fraction"].get<double>());
  }
  if (m.contains("crps_sum")) {
    return absl::StrFormat("CRPS-sum %.4f (best baseline %s %.4f), CRPS %.4f, energy CRPS %.4f",
                           m["crps_sum"].get<double>(), m["best_baseline"].get<std::string>(),
                           m["best_baseline_crps_sum"].get<double>(), m["crps"].get<double>(),
                           m["energy_crps"].get<double>());
  }
  if (!m.contains("energy_distance")) return "no quality figures (unlabelled images)";
  return absl::StrFormat("energy distance %.4f (data floor %.4f), straightness %.3f",
                         m["energy_distance"].get<double>(), m["energy_distance_floor"].get<double>(),
                         m["ode_straightness"].get<double>());
}

void PrintDistributedDone(const TrainArgs& opt, const std::string& who, const nlohmann::json& m) {
  if (opt.rank != 0) {
    std::cout << absl::StrFormat("vsdm-train[%s]: done\n", who);
    return;
  }
  std::cout << absl::StrFormat(
      "done in %.0fs: %s, trainer wait-for-A %.1f%%\n"
      "artifacts: %s/%s\n",
      m["wall_seconds"].get<double>(), Headline(m), 100.0 * m["distributed"]["wait_for_a_fraction"].get<double>(),
      opt.out_dir, ArtifactList(m));
}

// `secret`: the attempt's rendezvous secret, from the environment (train_protocol.h); `backend`:
// gloo | nccl (ChooseBackend).
int RunDistributed(const TrainArgs& opt, const vsdm::JobSpec& spec, const vsdm::worker::JobSetup& setup,
                   const std::string& secret, const std::string& backend) {
  using namespace vsdm::worker;
  const int W = opt.trainers;
  const std::string who = opt.rank < W ? absl::StrCat("trainer ", opt.rank) : std::string("variational");
  auto store = vsdm::train_protocol::ParseHostPort(opt.store);
  if (!store.ok()) return Fail(TrainExit::kBadInput, std::string(store.status().message()));
  const std::string& host = store->host;
  const int port = store->port;
  DistributedOptions d;
  d.out_dir = opt.out_dir;
  d.trainers = W;
  d.rank = opt.rank;
  d.attempt = opt.attempt;
  d.job_id = opt.job_id.empty() ? spec.name : opt.job_id;
  d.rendezvous_secret = secret;
  if (!opt.quiet) d.on_line = [](const std::string& line) { std::cout << line << std::endl; };
  d.on_event = [](const std::string& line) { std::cout << line << std::endl; };
  d.on_warning = [](const std::string& line) { std::cerr << line << std::endl; };
  d.job_uid = opt.job_uid;
  d.spec_hash = opt.spec_hash;
  d.stop_requested = PreemptionRequested;
  const CommOptions co = MakeCommOptions(opt, backend, host);
  std::cout << absl::StrFormat(
                   "vsdm-train[%s]: attempt %d, %d trainers + 1 variational rank, store %s, %s, "
                   "timeout %.0fs%s\n",
                   who, opt.attempt, W, opt.store, co.backend, opt.pg_timeout_seconds,
                   spec.variational.async ? ", async A" : "")
            << std::flush;
  const vsdm::Stopwatch rendezvous;
  auto comms = Rendezvous(host, port, d, co);
  if (!comms.ok()) ExitCollectiveFailure(who, comms.status());
  d.rendezvous_seconds = rendezvous.Seconds();
  auto result = RunRank(setup, *comms, d);
  if (IsPreempted(result.status())) {
    std::cerr << "vsdm-train[" << who << "]: " << result.status().message() << "; exit 75" << std::endl;
    return ExitCode(TrainExit::kPreempted);
  }
  if (!result.ok()) {
    if (vsdm::IsRetryable(result.status())) ExitCollectiveFailure(who, result.status());
    return Fail(TrainExit::kFailed, absl::StrCat(who, ": ", result.status().ToString()));
  }
  PrintDistributedDone(opt, who, *result);
  return ExitCode(TrainExit::kOk);
}

int RunStandaloneJob(const TrainArgs& opt, const vsdm::JobSpec& spec, const vsdm::worker::JobSetup& setup,
                     const std::string& thread_desc) {
  std::cout << absl::StrFormat("vsdm-train: %s (%s, %s), %d rounds x %d steps, batch %d, %s\n", spec.name,
                               spec.problem.dataset, spec.method, spec.train.rounds, spec.train.steps_per_round,
                               spec.train.batch_points, thread_desc)
            << std::flush;
  vsdm::worker::StandaloneOptions so;
  so.out_dir = opt.out_dir;
  so.job_uid = opt.job_uid;
  so.spec_hash = opt.spec_hash;
  so.stop_requested = vsdm::worker::PreemptionRequested;
  so.on_warning = [](const std::string& line) { std::cerr << "vsdm-train: " << line << std::endl; };
  if (!opt.quiet)
    so.on_round = [](const vsdm::worker::RoundReport& r) {
      std::cout << vsdm::worker::FormatRoundLine(r) << std::endl;
    };
  auto metrics = vsdm::worker::RunStandalone(setup, so);
  if (vsdm::worker::IsPreempted(metrics.status())) {
    std::cerr << "vsdm-train: " << metrics.status().message() << "; exit 75" << std::endl;
    return ExitCode(TrainExit::kPreempted);
  }
  if (!metrics.ok()) return Fail(TrainExit::kFailed, metrics.status().ToString());
  const auto& m = *metrics;
  std::string extra;
  if (m.contains("pmf_rmse"))
    extra = absl::StrFormat(", PMF-RMSE %.3e (floor %.3e), transport %.2f", m["pmf_rmse"].get<double>(),
                            m["pmf_rmse_floor"].get<double>(), m["ode_transport_cost"].get<double>());
  std::cout << absl::StrFormat("done in %.0fs: %s%s\nartifacts: %s/%s\n", m["wall_seconds"].get<double>(), Headline(m),
                               extra, opt.out_dir, ArtifactList(m));
  return ExitCode(TrainExit::kOk);
}

// The trainer count of a distributed run: --trainers if given, which must match the spec.
absl::Status CheckWorld(TrainArgs& opt, const vsdm::JobSpec& spec) {
  if (opt.trainers == 0) opt.trainers = static_cast<int>(spec.resources.trainers);
  if (opt.trainers != spec.resources.trainers)
    return absl::InvalidArgumentError(absl::StrFormat("--trainers %d does not match resources.trainers %d of the spec",
                                                      opt.trainers, spec.resources.trainers));
  if (opt.rank > opt.trainers)
    return absl::InvalidArgumentError(
        absl::StrFormat("--rank: must be in [0, %d] for %d trainers, got %d", opt.trainers, opt.trainers, opt.rank));
  return absl::OkStatus();
}

// $XDG_CACHE_HOME/vsdm, else $HOME/.cache/vsdm, else empty (no cache).
std::string DefaultCacheDir() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x != nullptr && *x != '\0') return std::string(x) + "/vsdm";
  if (const char* h = std::getenv("HOME"); h != nullptr && *h != '\0') return std::string(h) + "/.cache/vsdm";
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  // Idle OpenMP threads must sleep, not spin: ranks share cores, and a spinning pool slows its
  // neighbours several-fold (bench/unet_bench.cc; an image job's evaluation measured 12x slower).
  // libgomp reads the variable when it is loaded, before main, so set it and exec again.
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv("/proc/self/exe", argv);  // returns only on failure: carry on, spinning
  }
  // Note [Large tensors and the allocator] (core/threading.h): before the first tensor.
  vsdm::core::ConfigureAllocator();
  // Note [Preemption]: before anything slow (the spec's data, the rendezvous), so that a SIGTERM
  // at any moment ends in exit 75.
  double grace = 8;
  if (const char* g = std::getenv("VSDM_PREEMPT_GRACE_SECONDS"); g != nullptr && *g != '\0') grace = std::atof(g);
  vsdm::worker::InstallPreemptionHandler(grace);
  std::vector<std::string> args(argv, argv + argc);
  auto backend_flag = TakeBackendFlag(args);
  if (!backend_flag.ok()) return Fail(TrainExit::kBadInput, std::string(backend_flag.status().message()));
  auto parsed = vsdm::train_protocol::ParseTrainArgs(args);
  if (!parsed.ok()) return Fail(TrainExit::kBadInput, std::string(parsed.status().message()));
  if (!parsed->help.empty()) {
    std::cout << parsed->help;
    if (parsed->help.find("--spec") != std::string::npos) std::cout << kBackendHelp;  // not for --version
    return ExitCode(TrainExit::kOk);
  }
  TrainArgs opt = parsed->args;
  const char* secret_env = std::getenv(vsdm::train_protocol::kRendezvousSecretEnv);
  const std::string secret = secret_env != nullptr ? secret_env : "";
  if (absl::Status s = vsdm::train_protocol::CheckRendezvousSecret(secret); !s.ok())
    return Fail(TrainExit::kBadInput, absl::StrCat("$", vsdm::train_protocol::kRendezvousSecretEnv, ": ", s.message()));
  // Validate everything before touching the out dir: a refused spec writes nothing.
  vsdm::JobSpecLimits limits;
  if (opt.max_rank_memory_bytes >= 0) limits.max_rank_memory_bytes = opt.max_rank_memory_bytes;
  auto spec = vsdm::LoadJobSpecFile(opt.spec_path, opt.overrides, limits);
  if (!spec.ok()) return Fail(TrainExit::kBadInput, std::string(spec.status().message()));
  if (opt.print_world_size) {
    std::cout << spec->resources.trainers + 1 << "\n";
    return ExitCode(TrainExit::kOk);
  }
  vsdm::core::ImageDataPaths paths = vsdm::worker::DefaultImageDataPaths();
  if (!opt.data_dir.empty()) paths.data_dir = opt.data_dir;
  if (!opt.fashion_mnist_dir.empty()) paths.fashion_mnist_dir = opt.fashion_mnist_dir;
  auto setup = vsdm::worker::MakeJobSetup(*spec, paths);
  if (!setup.ok()) return Fail(TrainExit::kBadInput, std::string(setup.status().message()));
  setup->cache_dir = opt.cache_dir.empty() ? DefaultCacheDir() : opt.cache_dir;
  std::string backend;
  if (!opt.standalone) {
    if (absl::Status s = CheckWorld(opt, *spec); !s.ok()) return Fail(TrainExit::kBadInput, std::string(s.message()));
    if (auto store = vsdm::train_protocol::ParseHostPort(opt.store); !store.ok())
      return Fail(TrainExit::kBadInput, std::string(store.status().message()));
    auto chosen = ChooseBackend(*backend_flag, *spec);
    if (!chosen.ok()) return Fail(TrainExit::kBadInput, std::string(chosen.status().message()));
    backend = *chosen;
  }
  // --threads goes to the BLAS with 1 torch thread for fp32, to torch's pool (oneDNN runs the
  // bfloat16 matmuls) for bf16 (core/threading.h).
  const int threads =
      opt.threads > 0 ? opt.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const std::string thread_desc =
      vsdm::core::ConfigureThreads(threads, vsdm::core::DefaultThreadMode(setup->trainer_options.precision));
  // An image job's final evaluation runs on trainer 0 after the other ranks have exited: it takes
  // every core of the machine, whatever --threads the rank was given.
  setup->eval_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::error_code ec;
  std::filesystem::create_directories(opt.out_dir, ec);
  if (ec) return Fail(TrainExit::kFailed, "cannot create " + opt.out_dir + ": " + ec.message());
  if (!opt.standalone) return RunDistributed(opt, *spec, *setup, secret, backend);
  return RunStandaloneJob(opt, *spec, *setup, thread_desc);
}
