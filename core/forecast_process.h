// Conditional VSDM for forecasting (problem.dataset: series:<csv> | weather | var1): the state is
// the horizon block x in R^{H x D} of a window, the condition its context (C x D) and covariates,
// and the forward process is the OU process of spec §1 with I_H (x) A_D: every horizon step is
// one D-vector under the same dense D x D kernel, so the kernel table, the samplers and the
// variational statistics are the dense ones of core/diffusion.h, core/sampler.h and
// core/variational.h applied to the H rows of each window (A_D learned from backward
// trajectories exactly as for the toy problems; DSM holds it at 0).
//
// Rows everywhere are packed windows (core::SeriesData::Windows): [target H*D | context C*D |
// covariates F]. Loss reads all three; SamplePrior returns packed rows whose target part is the
// prior draw and whose condition is a random training window's; Sample and Stats integrate the
// target part and hold the condition fixed. Sample's x and trajectory hold the target part only.
#pragma once

#include <cstdint>
#include <memory>

#include <torch/torch.h>

#include "core/process.h"

namespace vsdm::core {

struct ForecastProcessOptions {
  BetaSchedule schedule;
  Parameterization param = Parameterization::kEps;
  int64_t times_per_point = 1;
  int64_t horizon = 0, context = 0, series = 0, covariates = 0;  // H, C, D, F
  torch::Tensor data_cov;        // [D, D] float64 covariance of the standardised training values (input scale)
  torch::Tensor train_condition; // [N, C*D + F] float32: the training windows' conditions (SamplePrior draws)
  // The series' transform, for the export's forecast() in original units (may be undefined):
  torch::Tensor value_mean, value_std, log1p;  // [D] float64; log1p 1.0 where log1p is applied
};

// The family of a forecasting job: net_in_dim = H*D + C*D + F, net_out_dim = H*D,
// InitialParam() = zeros [D, D] (variational.form diagonal keeps A_D diagonal through the
// objective, so the process needs no flag for it).
std::unique_ptr<ProcessFamily> MakeForecastFamily(const ForecastProcessOptions& o);

// Replaces the condition of packed rows `prior` ([n, packed]) by `condition` ([n, C*D + F]);
// used to forecast given test contexts. Returns a new tensor.
torch::Tensor WithCondition(const torch::Tensor& prior, const torch::Tensor& condition);

}  // namespace vsdm::core
