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
// prior draw (centred) and whose condition is a random training window's; Sample and Stats add the
// condition's prior mean (0 but for the conditional prior), integrate the target part and hold the
// condition fixed. Sample's x and trajectory hold the target part only.
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
  torch::Tensor data_cov;         // [D, D] float64 covariance of the standardised training values (input scale)
  torch::Tensor train_condition;  // [N, C*D + F] float32: the training windows' conditions (SamplePrior draws)
  // The conditional prior (variational.prior: conditional; undefined: the prior N(0, Sigma_T)). A
  // ridge regression of the standardised target block on the condition's features (PriorFeatures)
  // and its residual covariance, both from the training windows (FitConditionalPrior). The terminal
  // law of the forward process given the context c is then approximately N(M_T mu(c), Sigma_T +
  // M_T Sigma_r M_T^T) on every horizon row, which is what the sampler starts from: with a learned
  // A the forward process contracts less (M_T up to ~0.4 here, ~0.08 for DSM), and a prior that
  // ignores the context would start it in the wrong place.
  torch::Tensor prior_weight;  // [2D + F + 1, H*D] float64
  torch::Tensor residual_cov;  // [D, D] float64, pooled over the horizon rows
  // The series' transform, for the export's forecast() in original units (may be undefined):
  torch::Tensor value_mean, value_std, log1p;  // [D] float64; log1p 1.0 where log1p is applied
};

// The family of a forecasting job: net_in_dim = H*D + C*D + F, net_out_dim = H*D,
// InitialParam() = zeros [D, D] (variational.form diagonal keeps A_D diagonal through the
// objective, so the process needs no flag for it).
std::unique_ptr<ProcessFamily> MakeForecastFamily(const ForecastProcessOptions& o);

// The conditional prior's regression features of conditions `cond` ([n, C*D + F], standardised):
// the context's last step and mean (D each), the covariates (F) and 1. [n, 2D + F + 1], cond's dtype.
torch::Tensor PriorFeatures(const torch::Tensor& cond, int64_t context, int64_t series);

// Fits o.prior_weight and o.residual_cov on packed training windows ([N, packed], core::SeriesData::
// Windows): ridge regression (penalty 1e-3 N on every weight but the intercept) in float64.
void FitConditionalPrior(const torch::Tensor& windows, ForecastProcessOptions& o);

// Replaces the condition of packed rows `prior` ([n, packed]) by `condition` ([n, C*D + F]);
// used to forecast given test contexts. Returns a new tensor.
torch::Tensor WithCondition(const torch::Tensor& prior, const torch::Tensor& condition);

}  // namespace vsdm::core
