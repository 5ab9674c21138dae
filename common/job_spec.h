// The job spec: what a user writes (YAML) and what every process of a job reads. Field names
// and defaults follow ../shared/JOBSPEC.md; this header is the single list of fields, their
// types and their allowed ranges (see VisitJobSpecFields), so parsing, validation and
// serialisation can never disagree about a field.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace vsdm {

struct ProblemSpec {
  // 2-D toy sets: spiral | checkerboard | gaussian | moons | eight_gaussians; images:
  // fashion_mnist (Debian dataset-fashion-mnist) | digits (8x8, vendored) | images:<path> (IDX,
  // .npy or a folder of PNG files on the worker); time series (forecasting): series:<csv> (a wide
  // CSV on the worker) | weather (vendored NOAA daily weather) | var1 (synthetic VAR(1), known law).
  std::string dataset = "spiral";
  std::vector<double> scale = {1.0, 1.0};  // per-axis scale for toy sets
  double test_fraction = 0.1;              // images without an official split: held-out share
  int64_t train_limit = 0;                 // images: use only the first N training images (0: all)
  // time series only (core/series_data.h):
  int64_t context = 28;        // C: steps the forecaster sees
  int64_t horizon = 7;         // H: steps it forecasts
  std::string columns;         // comma-separated column names; empty: every numeric column but the date
  std::string log1p = "auto";  // auto (non-negative columns with >= 20% zeros) | none | column names
  std::string test_start;      // first test row: a date YYYY-MM-DD or a row index; empty: last 20%
  int64_t eval_stride = 7;     // one test forecast origin every eval_stride steps
};

struct DiffusionSpec {
  double beta_min = 0.1;
  double beta_max = 10.0;
  double beta_r = 1.7;
  double t_min = 0.001;
  int64_t steps = 100;  // sampler steps, also the simulation steps of the variational update
};

struct VariationalSpec {
  std::string form = "full";       // full | diagonal
  std::string update = "exact";    // exact | sa | adam
  double interact = 1.0;           // zeta
  std::string prior = "adaptive";  // adaptive: N(0, Sigma_T) | standard: N(0, I) | conditional (time series)
  int64_t trajectories = 500;      // backward trajectories per round
  double lr = 1.0;                 // rho (exact), eta_0 (sa), lr (adam)
  double decay = 0.6;              // sa only: alpha in eta_k = eta_0 (k+1)^-alpha
  double d_min = 0.05;             // PD floor of the symmetric part of D
  bool async = false;              // A one round stale; trainers never wait
  int64_t adam_steps = 100;        // adam: optimiser steps per round
  int64_t adam_batch = 1000;       // adam: trajectories per minibatch
};

// The momentum variant (method: vsmd; spec §5): constant beta, friction gamma, damping u of the
// critical-damping transform and the initial variational parameter c (per coordinate).
struct MomentumSpec {
  double beta = 10.0;
  double gamma = 2.0;
  double damping = 1.0;  // u: 1 critically damped, < 1 under-damped
  double c_init = 0.0;   // 0: the process starts as CLD (M = 1, Gamma = 2)
};

struct ModelSpec {
  std::string arch = "toy_resnet";          // toy_resnet | mlp (points) | unet (images) | forecast (series)
  int64_t hidden = 256;                     // toy_resnet / mlp width
  std::string parameterization = "policy";  // policy | eps
  bool input_scaling = true;                // scale net input per axis by 1/std(x_t) (EDM c_in)
  // unet only (core/unet.h):
  int64_t channels = 32;                         // width of the first level (forecast: of the context encoder)
  std::vector<double> channel_mult = {1, 2, 2};  // whole-number width multiplier per level
  int64_t res_blocks = 1;                        // residual blocks per level
  bool attention = true;                         // self-attention at the lowest resolution
  double dropout = 0.1;
};

struct TrainSpec {
  int64_t rounds = 100;
  int64_t steps_per_round = 100;
  int64_t batch_points = 1024;
  int64_t times_per_point = 1;
  double lr = 1e-3;
  double ema = 0.99;
  int64_t seed = 42;
  int64_t checkpoint_every = 10;
  double grad_clip = 0.0;          // clip the global gradient norm to this (0: off)
  std::string precision = "fp32";  // fp32 | bf16: the score network under autocast (job.proto)
};

struct SampleSpec {
  int64_t n = 10000;
  std::string solver = "heun";  // heun | euler | sde
  // images: the feature-net weights for the quality figures (vsdm-featnet writes them); empty:
  // the worker's cache (trained there on first use, then reused).
  std::string classifier;
};

struct ResourcesSpec {
  int64_t trainers = 2;
  std::string device = "cpu";  // cpu | cuda
  int64_t max_restarts = 3;
  int64_t min_trainers = 0;  // elastic restarts down to this many trainers; 0 = off (job.proto)
};

struct JobSpec {
  std::string name = "vsdm-job";
  std::string owner;
  int64_t priority = 0;
  ProblemSpec problem;
  std::string method = "vsdm";  // vsdm | dsm | vsmd
  DiffusionSpec diffusion;
  VariationalSpec variational;
  MomentumSpec momentum;
  ModelSpec model;
  TrainSpec train;
  SampleSpec sample;
  ResourcesSpec resources;
};

// One field of the spec, as the visitor sees it. `path` is the dotted key path.
class JobSpecVisitor {
 public:
  virtual ~JobSpecVisitor() = default;
  virtual void Int(const char* path, int64_t& v, int64_t lo, int64_t hi) = 0;
  virtual void Double(const char* path, double& v, double lo, double hi) = 0;
  virtual void Bool(const char* path, bool& v) = 0;
  // Free text of at most `max_len` characters.
  virtual void String(const char* path, std::string& v, size_t max_len) = 0;
  // Exactly one of `choices`; a choice that ends in ':' (e.g. "images:") stands for that prefix
  // followed by any non-empty text (the whole value at most 4096 characters).
  virtual void Choice(const char* path, std::string& v, const std::vector<std::string>& choices) = 0;
  // A list of `min_len`..`max_len` numbers each in [lo, hi].
  virtual void DoubleList(const char* path, std::vector<double>& v, size_t min_len, size_t max_len, double lo,
                          double hi) = 0;
};

// Calls `v` once for every field of `spec`, in a fixed order, with its range.
void VisitJobSpecFields(JobSpec& spec, JobSpecVisitor& v);

// Whether `dataset` names an image source (fashion_mnist, digits, images:<path>).
bool IsImageDatasetName(const std::string& dataset);
// Whether `dataset` names a time series (series:<path>, weather, var1).
bool IsSeriesDatasetName(const std::string& dataset);

// --- bounds on what one job may ask (Note [Rank memory estimate]) ---

// The default of JobSpecLimits::max_rank_memory_bytes: 16 GiB per rank.
inline constexpr int64_t kDefaultMaxRankMemoryBytes = int64_t{16} << 30;
// The most optimiser steps a job may ask for in all: train.rounds x train.steps_per_round.
inline constexpr int64_t kMaxTrainSteps = 100'000'000;
// The largest spec file LoadJobSpecFile reads (a real spec is a few KiB).
inline constexpr int64_t kMaxSpecFileBytes = int64_t{1} << 20;

// The bounds validation applies besides each field's range and the cross-field rules.
struct JobSpecLimits {
  // CheckRankMemory's limit: the estimated peak bytes of any one rank (0: no memory bound).
  int64_t max_rank_memory_bytes = kDefaultMaxRankMemoryBytes;
};

// The data's shape as the estimate sees it. The spec alone fixes it for the built-in sets; for
// a user's files (images:<path>, series:<csv>) NominalDataShape assumes one, and a process that
// has loaded the data can pass the real one.
struct DataShape {
  int64_t dim = 2;  // d: numbers per data point (a toy point, an image's C*H*W, a window's H*D)
  int64_t channels = 0, height = 0, width = 0;  // images (0 otherwise)
  int64_t items = 0;                            // images: training + test images kept in memory
  int64_t series = 0, covariates = 0;           // time series: D and the covariates per window
  int64_t test_windows = 0;                     // time series: forecast origins of the evaluation
};

// The spec's data shape: 2-D toy points; fashion_mnist 1x28x28 (70000 images); digits 1x8x8
// (1797); images:<path> 3x32x32 (60000, or problem.train_limit), assumed; weather 8 series with
// 2 calendar covariates and a 365-day test year; var1 4 series, 400 test rows; series:<csv> the
// number of problem.columns (16 when empty) over 2000 test rows, assumed.
DataShape NominalDataShape(const JobSpec& spec);

// One term of a rank's estimated memory.
struct MemoryTerm {
  std::string what;    // what allocates it: "the final evaluation's ODE trajectory [...]"
  std::string fields;  // the spec fields that drive it: "sample.n × diffusion.steps"
  std::string hint;    // how to shrink it: "lower them"
  double bytes = 0;
};

// The estimated peak bytes of one rank: what it holds all along (the nets, the optimiser, the
// data) plus the largest of its phases (training steps, the final evaluation, the variational
// statistics), each phase the sum of what it holds at once.
struct RankMemory {
  std::string role;  // "trainer" (trainer 0, which also runs the final evaluation) | "variational"
  double peak_bytes = 0;
  std::vector<MemoryTerm> terms;  // the resident terms and those of the largest phase, largest first
};

struct JobMemoryEstimate {
  RankMemory trainer;
  RankMemory variational;
};

// An upper-ish estimate of what each rank of the job allocates at its peak, from the shapes the
// worker code builds (Note [Rank memory estimate]); the trainer at its shard of train.batch_points
// (a standalone run holds the whole batch and both roles). REQUIRES: every field in its range.
JobMemoryEstimate EstimateRankMemory(const JobSpec& spec);
JobMemoryEstimate EstimateRankMemory(const JobSpec& spec, const DataShape& shape);

// OK when both ranks' estimates are at most `limit_bytes` (<= 0: always OK). Otherwise
// INVALID_ARGUMENT naming the fields behind the largest term of the larger rank, e.g.
// "variational.trajectories × variational.adam_batch: the variational rank needs about 22 TiB,
// mostly for the variational statistics' [...] (limit 16 GiB per rank; lower ...)".
absl::Status CheckRankMemory(const JobSpec& spec, int64_t limit_bytes);
absl::Status CheckRankMemory(const JobSpec& spec, const DataShape& shape, int64_t limit_bytes);

// Parses YAML text into a spec, starting from the defaults. Refuses (INVALID_ARGUMENT, the
// message naming the key path) an unknown key, a wrong type or a value out of range, and
// cross-field inconsistencies; whatever the text, it returns (a YAML the parser cannot read is
// INVALID_ARGUMENT "spec: ..."). Messages quote at most kQuotedInputBytes of any value or key.
absl::StatusOr<JobSpec> ParseJobSpecYaml(const std::string& yaml_text);
// The same with `overrides` applied to the YAML tree first, in order (a later one wins). Each is
// "dotted.key=value" (what `--set` takes): the value is parsed as YAML (a scalar, or a flow list
// or mapping such as "problem.scale=[1, 8]") and set at that path, creating the mappings on the
// way, so an override is refused with exactly the message the same key and value would get in
// the file ("train.batch_pointz: unknown key"). A malformed override (no '=', an empty key or key
// segment) is INVALID_ARGUMENT "--set: want key=value, got '...'".
// `limits` as ValidateJobSpec takes them.
absl::StatusOr<JobSpec> ParseJobSpecYaml(const std::string& yaml_text, const std::vector<std::string>& overrides,
                                         const JobSpecLimits& limits = {});
// Reads and parses a YAML file; NOT_FOUND if it cannot be opened, INVALID_ARGUMENT if it is a
// directory or longer than kMaxSpecFileBytes (read no further than that: /dev/zero is refused).
absl::StatusOr<JobSpec> LoadJobSpecFile(const std::string& path);
// The same with `overrides` applied as ParseJobSpecYaml(text, overrides) does.
absl::StatusOr<JobSpec> LoadJobSpecFile(const std::string& path, const std::vector<std::string>& overrides,
                                        const JobSpecLimits& limits = {});

// Checks ranges and cross-field rules of an already-built spec (e.g. one from the wire): free
// text without control characters (common/format.h HasControlCharacters), train.rounds x
// train.steps_per_round at most kMaxTrainSteps, and CheckRankMemory at
// limits.max_rank_memory_bytes. INVALID_ARGUMENT naming the field(s).
absl::Status ValidateJobSpec(const JobSpec& spec, const JobSpecLimits& limits = {});

// The spec as JSON (every field, including defaults).
nlohmann::json JobSpecToJson(const JobSpec& spec);

}  // namespace vsdm
