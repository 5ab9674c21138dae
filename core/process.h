// The forward process of a job behind one interface, so that the runtime (standalone job,
// trainer and variational ranks, final artifacts) runs VSDM, DSM and the momentum variant VSMD
// through the same code. A ProcessFamily is fixed by the job spec; Make(phi) binds it to one
// value of the variational parameter phi (A for VSDM/DSM, c for VSMD) and precomputes the
// kernels on a time grid. The method switch lives here and in MakeJobSetup, nowhere else.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "absl/status/status.h"
#include "common/job_spec.h"
#include "core/diffusion.h"
#include "core/momentum.h"
#include "core/sampler.h"
#include "core/score_model.h"
#include "core/score_net.h"
#include "core/variational.h"

namespace vsdm::core {

// One forward process with its variational parameter fixed. Immutable; methods that take a
// net borrow it for the call only.
class Process {
 public:
  virtual ~Process() = default;

  // The denoising loss (spec §2, §5) on data x0 [B, d], draws from `gen`. Differentiable.
  virtual torch::Tensor Loss(ScoreNet& net, const torch::Tensor& x0, torch::Generator& gen) const = 0;
  // n prior states at T (N(0, Sigma_T) when `adaptive`, else standard normal): [n, state_dim].
  virtual torch::Tensor SamplePrior(int64_t n, bool adaptive, torch::Generator& gen) const = 0;
  // Reverse-time integration from `prior` to t_min; x and trajectory hold data coordinates.
  virtual SampleResult Sample(ScoreNet& net, const torch::Tensor& prior, Solver solver, torch::Generator& gen,
                              bool keep_trajectory) const = 0;
  // Backward trajectories from `prior` reduced to the statistics of the variational loss.
  virtual VariationalStats Stats(ScoreNet& net, const torch::Tensor& prior, int64_t group_size,
                                 torch::Generator& gen) const = 0;
  // A self-contained TorchScript module of `net` under this process (torch.jit.load-able).
  virtual absl::Status Export(const std::string& path, ScoreNet& net, const std::string& method) const = 0;
  // Named float64 tensors that describe the process for metrics.json (A, D, prior_cov / a, c, ...).
  virtual std::vector<std::pair<std::string, torch::Tensor>> Describe() const = 0;
  // The same process on another time grid (e.g. fewer sampler steps).
  virtual std::unique_ptr<Process> WithGrid(const TimeGrid& grid) const = 0;
  virtual const TimeGrid& grid() const = 0;
  // The same process with every table on `device` (dtypes kept: the float64 copies stay float64).
  virtual std::unique_ptr<Process> To(const torch::Device& device) const = 0;
};

// The job's process, not yet bound to a parameter.
class ProcessFamily {
 public:
  virtual ~ProcessFamily() = default;
  virtual int64_t net_in_dim() const = 0;   // d (VSDM) or 2d (VSMD: x and v)
  virtual int64_t net_out_dim() const = 0;  // d
  // The variational parameter at round 0 (float64): A = 0 [d, d], or c [d].
  virtual torch::Tensor InitialParam() const = 0;
  virtual std::unique_ptr<Process> Make(const torch::Tensor& phi, const TimeGrid& grid) const = 0;
  // The same, its tables on `device` (built on the CPU in float64 from phi, then moved).
  std::unique_ptr<Process> Make(const torch::Tensor& phi, const TimeGrid& grid, const torch::Device& device) const;
  // The loss the variational update minimises over phi.
  virtual std::shared_ptr<const VariationalObjective> Objective(const VariationalOptions& o) const = 0;
};

struct VsdmProcessOptions {
  BetaSchedule schedule;
  Parameterization param = Parameterization::kPolicy;
  int64_t times_per_point = 1;
  bool diagonal = false;   // A is stored dense [d, d]; the diagonal form uses its diagonal
  torch::Tensor data_cov;  // [d, d] float64 for input scaling, or undefined
};
std::unique_ptr<ProcessFamily> MakeVsdmFamily(int64_t dim, const VsdmProcessOptions& o);

struct VsmdProcessOptions {
  MomentumOptions momentum;
  double c_init = 0.0;
  int64_t times_per_point = 1;
  torch::Tensor data_var;  // [d] float64 for input scaling, or undefined
};
std::unique_ptr<ProcessFamily> MakeVsmdFamily(int64_t dim, const VsmdProcessOptions& o);

// An image shape for exports and pictures (all zero for point data).
struct ImageShape {
  int64_t channels = 0, height = 0, width = 0;
  bool defined() const { return channels > 0; }
};

// What the forward process needs to know of the data (float64 moments only when
// model.input_scaling is on; the dense form reads `cov`, the diagonal form `second_moment`).
struct DataMoments {
  int64_t dim = 0;
  torch::Tensor cov;            // [d, d] centred covariance, or undefined
  torch::Tensor second_moment;  // [d] E[x0^2] per coordinate, or undefined
  ImageShape image;             // set for image data
};

// The family a validated spec asks for: VSMD for method vsmd; VSDM with a vector A for
// variational.form diagonal (core/diagonal_process.h); else VSDM with a dense A (DSM is VSDM
// with A held at 0 by the caller). The one place outside the job spec that reads `method`.
std::unique_ptr<ProcessFamily> MakeProcessFamily(const JobSpec& spec, const DataMoments& data);
// Whether the method learns the variational parameter (false for dsm: A stays 0).
bool LearnsVariationalParam(const JobSpec& spec);

}  // namespace vsdm::core
