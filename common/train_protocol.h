// The contract between the node agent (worker/agent/, vsdm-worker) and the training runtime
// (worker/train/, vsdm-train): the only things the two programs share. No LibTorch, no gRPC.
//
//   agent -> runtime   argv (TrainArgs), spec.json in the out dir, the attempt's rendezvous
//                      secret in the environment (kRendezvousSecretEnv; never in argv)
//   runtime -> agent   progress.json (trainer 0, TrainerProgress), progress-variational.json
//                      (the variational rank, VariationalProgress), the artifacts of
//                      kArtifacts (rank 0, on success), the exit code (TrainExit)
//
// Each progress file is rewritten atomically after every round. A new per-round figure is one
// field in a record below plus one line in its VisitFields: the JSON, the parser and the tests
// follow from that, and the compiler checks both programs against the same struct.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace vsdm::train_protocol {

// ---- Files in a job's out dir (<work dir>/jobs/<job_id>/) -------------------------------------
inline constexpr char kSpecFile[] = "spec.json";  // the spec the agent hands to every rank (JSON is YAML)
inline constexpr char kProgressFile[] = "progress.json";
inline constexpr char kVariationalProgressFile[] = "progress-variational.json";
inline constexpr char kMetricsFile[] = "metrics.json";
inline constexpr char kSamplesNpyFile[] = "samples.npy";
inline constexpr char kSamplesPngFile[] = "samples.png";
inline constexpr char kModelFile[] = "model.pt";  // TorchScript: torch.jit.load(...)
// Forecasting jobs (time series) write these instead of samples.npy / samples.png:
inline constexpr char kForecastsNpyFile[] = "forecasts.npy";  // float32 [W, S, H, D], original units
inline constexpr char kTargetsNpyFile[] = "targets.npy";      // float32 [W, H, D]
inline constexpr char kContextsNpyFile[] = "contexts.npy";    // float32 [W, C, D]
inline constexpr char kForecastPngFile[] = "forecast.png";    // fan charts and the learned A_D
inline constexpr char kCheckpointDir[] = "checkpoint";
inline constexpr char kLogsDir[] = "logs";
// What rank 0 leaves for the user on success; the agent uploads these, `vsdmctl artifacts`
// downloads them. metrics.json first: it is what the coordinator reads.
// Each is uploaded when present.
inline constexpr std::array<const char*, 8> kArtifacts = {kMetricsFile,      kSamplesNpyFile,  kSamplesPngFile,
                                                          kModelFile,        kForecastsNpyFile, kTargetsNpyFile,
                                                          kContextsNpyFile,  kForecastPngFile};

// "attempt-<attempt>-rank-<rank>.log", under kLogsDir.
std::string RankLogName(int64_t attempt, int64_t rank);

// "ckpt-<round, 8 digits>.pt", under kCheckpointDir (what core/checkpoint.cc writes), and the
// round such a name holds (nullopt for any other name, a ".part" upload or a ".tmp" file).
std::string CheckpointFileName(int64_t round);
std::optional<int64_t> CheckpointRound(const std::string& file_name);
// The newest checkpoint file in `dir` by round: {round, path}; nullopt if none (or no dir).
std::optional<std::pair<int64_t, std::string>> NewestCheckpointFile(const std::string& dir);
// Deletes all checkpoint files of `dir` but the newest `keep` (other files are left alone).
void PruneCheckpointFiles(const std::string& dir, int keep);

// OK when `job_id` can name a directory under <work dir>/jobs/: 1 to kMaxJobIdLength characters
// of [A-Za-z0-9._-], the first one a letter, digit or '_' (so never ".", "..", a hidden name or
// something that reads as a flag). INVALID_ARGUMENT naming job_id and the rule otherwise.
inline constexpr size_t kMaxJobIdLength = 128;
absl::Status CheckJobId(const std::string& job_id);

// ---- The rendezvous --------------------------------------------------------------------------
// The environment variable the agent hands a rank its attempt's rendezvous secret in (hex, from
// the coordinator's Assignment); unset or empty = no secret (standalone runs, tests).
inline constexpr char kRendezvousSecretEnv[] = "VSDM_RENDEZVOUS_SECRET";
inline constexpr size_t kMaxRendezvousSecretLength = 256;
// OK for "" or up to kMaxRendezvousSecretLength hex digits; INVALID_ARGUMENT otherwise.
absl::Status CheckRendezvousSecret(const std::string& secret);

// A --store value split: `host` without the brackets of an IPv6 literal.
struct HostPort {
  std::string host;
  int port = 0;
};
// Parses HOST:PORT. HOST is a dotted IPv4 address, a bracketed IPv6 address ("[::1]") or a DNS
// name (labels of [A-Za-z0-9-], 1 to 63 characters, no leading or trailing '-', 253 in all);
// PORT is decimal in [1, 65535]. INVALID_ARGUMENT naming `what` and the rule otherwise.
absl::StatusOr<HostPort> ParseHostPort(const std::string& value, const std::string& what = "--store");

// ---- Exit codes of vsdm-train ------------------------------------------------------------------
enum class TrainExit : int {
  kOk = 0,
  kFailed = 1,    // I/O or an internal error
  kBadInput = 2,  // the spec or the flags are refused; nothing was written
  kPeerLost = 3,  // a collective failed: a peer died, hung past --pg-timeout, or never joined
  // Stopped by a preemption notice (SIGTERM: scancel, pod deletion, the agent's stop) after
  // trainer 0 wrote a checkpoint; the coordinator requeues without counting a restart.
  kPreempted = 75,
};
inline int ExitCode(TrainExit e) { return static_cast<int>(e); }
// "ok", "failed", "bad input", "peer lost", "preempted", or "exit N" for anything else.
std::string DescribeExit(int code);

// ---- argv ---------------------------------------------------------------------------------------
struct TrainArgs {
  std::string spec_path;               // --spec: job spec YAML (or the agent's spec.json)
  std::string out_dir;                 // --out: artifacts, checkpoint/, progress files
  std::vector<std::string> overrides;  // --set KEY=VALUE, applied to the spec (repeatable)
  bool standalone = false;             // --standalone: the whole job in this process
  bool print_world_size = false;       // --print-world-size: print trainers + 1 and exit
  int threads = 0;                     // --threads: BLAS threads (torch gets 1); 0 = all cores
  bool quiet = false;                  // --quiet: no per-round lines
  // One rank of a distributed attempt.
  int rank = -1;                   // --rank: 0..W-1 trainer, W the variational rank
  int trainers = 0;                // --trainers: W (0 = resources.trainers of the spec)
  std::string store;               // --store: HOST:PORT of the TCPStore trainer 0 hosts (argv: "--store=V")
  std::string job_id;              // --job-id: the store key prefix's job (empty: the spec's name)
  int attempt = 0;                 // --attempt: attempt number (logs, store prefix)
  // --job-uid / --spec-hash: the fencing token (Note [Job identity], job.proto): checkpoints
  // carry them and resume refuses one of another job or spec. Empty: not checked (standalone).
  std::string job_uid;
  std::string spec_hash;
  double pg_timeout_seconds = 60;  // --pg-timeout: before a collective with a dead peer fails
  std::string bind;                // --bind: the address Gloo binds
  // Where the built-in datasets and the feature-net cache live on this worker (empty: the
  // defaults vsdm-train resolves: the source tree's data/, /usr/share/datasets/fashion-mnist,
  // $XDG_CACHE_HOME/vsdm or ~/.cache/vsdm).
  std::string data_dir;           // --data-dir
  std::string fashion_mnist_dir;  // --fashion-mnist-dir
  std::string cache_dir;          // --cache-dir
  // --max-rank-memory: the spec's estimated per-rank peak bound (JobSpecLimits); -1 = the
  // default (16 GiB), 0 = none (the agent passes 0: the coordinator checked its own limit).
  int64_t max_rank_memory_bytes = -1;

  // argv for exec: `binary` first, then every field that differs from its default.
  std::vector<std::string> ToArgv(const std::string& binary) const;
};

// The outcome of parsing vsdm-train's argv: the args, or the text --help asked for.
struct ParsedTrainArgs {
  TrainArgs args;
  std::string help;  // non-empty: print it and exit 0
};

// argv[0] is skipped. INVALID_ARGUMENT naming the flag for a bad or missing one (--spec and --out
// are required; --rank and --store without --standalone; --pg-timeout in (0, 3600]; --store is
// not checked here: see ParseHostPort).
absl::StatusOr<ParsedTrainArgs> ParseTrainArgs(const std::vector<std::string>& argv);

// ---- Progress records ----------------------------------------------------------------------------
// Trainer 0 after each round. Counts are since the job began (a resumed attempt continues them);
// byte totals are since this attempt started, so a reader sees nothing lost when it misses a
// file version (it polls; rounds can be faster than its poll).
struct TrainerProgress {
  int64_t round = 0, rounds = 0;  // rounds done, rounds in the job
  double loss = 0;
  double a_norm = 0;  // |A| (VSDM, DSM) or |c| (VSMD): the variational parameter
  double steps_per_second = 0, eta_seconds = 0;
  int64_t steps = 0, samples = 0;  // since the job began
  // This round's breakdown (seconds); compute + allreduce + broadcast + wait_for_a ~ round.
  double round_seconds = 0, compute_seconds = 0, allreduce_seconds = 0, broadcast_seconds = 0, wait_for_a_seconds = 0;
  int64_t allreduce_bytes_total = 0, broadcast_bytes_total = 0;  // since this attempt started
  double ode_straightness = 0;                                   // at the last checkpoint round
  double rendezvous_seconds = 0, restore_seconds = 0;            // this attempt's start-up
  int64_t checkpoint_round = 0;                                  // the round the newest checkpoint holds
  double checkpoint_seconds = 0;                                 // since the job began, when it was written
  double checkpoint_unix_seconds = 0;                            // wall clock when it was written (0 = none yet)
  int64_t device_memory_used_bytes = -1;                         // CUDA only; -1 = not measured
  // This attempt's resume (Note [Resume from the newest good checkpoint] in core/checkpoint.h):
  // the newer checkpoints it refused (renamed .bad), and the round it resumed from.
  int64_t checkpoints_skipped = 0;
  int64_t resumed_from_round = 0;

  // v(key, field) for every field, in a fixed order; Self is TrainerProgress or its const.
  template <class Self, class V>
  static void VisitFields(Self& p, V&& v) {
    v("round", p.round);
    v("rounds", p.rounds);
    v("loss", p.loss);
    v("a_norm", p.a_norm);
    v("steps_per_second", p.steps_per_second);
    v("eta_seconds", p.eta_seconds);
    v("steps", p.steps);
    v("samples", p.samples);
    v("round_seconds", p.round_seconds);
    v("compute_seconds", p.compute_seconds);
    v("allreduce_seconds", p.allreduce_seconds);
    v("broadcast_seconds", p.broadcast_seconds);
    v("wait_for_a_seconds", p.wait_for_a_seconds);
    v("allreduce_bytes_total", p.allreduce_bytes_total);
    v("broadcast_bytes_total", p.broadcast_bytes_total);
    v("ode_straightness", p.ode_straightness);
    v("rendezvous_seconds", p.rendezvous_seconds);
    v("restore_seconds", p.restore_seconds);
    v("checkpoint_round", p.checkpoint_round);
    v("checkpoint_seconds", p.checkpoint_seconds);
    v("checkpoint_unix_seconds", p.checkpoint_unix_seconds);
    v("device_memory_used_bytes", p.device_memory_used_bytes);
    v("checkpoints_skipped", p.checkpoints_skipped);
    v("resumed_from_round", p.resumed_from_round);
  }
  std::string ToJson() const;
  bool operator==(const TrainerProgress& o) const;
};

// The variational rank after each round.
struct VariationalProgress {
  int64_t round = 0, rounds = 0;
  double variational_seconds = 0;        // trajectories + statistics + update
  double wait_for_trainers_seconds = 0;  // blocked for the trainers' round
  double a_norm = 0;                     // after this round's update
  int64_t a_staleness_rounds = 0;        // rounds the trainers' A lags (1 with async A)

  template <class Self, class V>
  static void VisitFields(Self& p, V&& v) {
    v("round", p.round);
    v("rounds", p.rounds);
    v("variational_seconds", p.variational_seconds);
    v("wait_for_trainers_seconds", p.wait_for_trainers_seconds);
    v("a_norm", p.a_norm);
    v("a_staleness_rounds", p.a_staleness_rounds);
  }
  std::string ToJson() const;
  bool operator==(const VariationalProgress& o) const;
};

// Strict parsers: INVALID_ARGUMENT naming the key for an unknown key, a value of the wrong type,
// or text that is not a JSON object. A missing key keeps its default.
absl::StatusOr<TrainerProgress> TrainerProgressFromJson(const std::string& text);
absl::StatusOr<VariationalProgress> VariationalProgressFromJson(const std::string& text);

}  // namespace vsdm::train_protocol
