// Exports a trained score model as a self-contained TorchScript module that Python loads with
// torch.jit.load: forward(x, t) returns the score s(x, t); sample(n, steps) runs the Heun
// probability-flow ODE from the prior N(0, Sigma_T); A, D and the schedule are attributes.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "core/diagonal_process.h"
#include "core/diffusion.h"
#include "core/momentum.h"
#include "core/score_model.h"
#include "core/score_net.h"

namespace vsdm::core {

struct ExportInfo {
  BetaSchedule schedule;
  Parameterization param = Parameterization::kPolicy;
  std::string method = "vsdm";
};

// Builds the module from `net` (usually the EMA net) and `table` (the final A) and saves it to
// `path` atomically. INTERNAL if TorchScript compilation or the write fails.
absl::Status ExportTorchScript(const std::string& path, ScoreNet& net, const KernelTable& table,
                               const ExportInfo& info);

// The VSMD export: forward(z, t) returns the velocity score s_v(z, t) for z = (x, v) [B, 2d];
// sample(n, steps) runs the Heun probability-flow ODE from N(0, Sigma_T) (with its x-v
// correlation) and returns the x part; a, c, beta, gamma are attributes.
absl::Status ExportMomentumTorchScript(const std::string& path, ScoreNet& net, const MomentumTable& table,
                                       const std::string& method);

struct DiagonalExportInfo {
  BetaSchedule schedule;
  Parameterization param = Parameterization::kEps;
  std::string method = "vsdm";
  int64_t channels = 0, height = 0, width = 0;  // image data: sample() returns [n, C, H, W] in [0, 1]
};

// The diagonal-A export: forward(x, t) takes x of any shape [B, ...] (d values per row) and
// returns the score in that shape; sample(n, steps) runs the Heun probability-flow ODE from
// N(0, diag(sigma_T^2)) and, for image data, returns [n, C, H, W] mapped from [-1, 1] to [0, 1]
// (else [n, d]); a, d, prior_std are attributes.
absl::Status ExportDiagonalTorchScript(const std::string& path, ScoreNet& net, const DiagonalKernelTable& table,
                                       const DiagonalExportInfo& info);

struct ForecastExportInfo {
  BetaSchedule schedule;
  Parameterization param = Parameterization::kEps;
  std::string method = "vsdm";
  int64_t horizon = 0, context = 0, series = 0, covariates = 0;  // H, C, D, F
  torch::Tensor value_mean, value_std, log1p;  // [D]: the series' transform (standardised = (f(y) - mean) / std)
  // The conditional prior's mean map [2D + F + 1, H*D] (core::PriorFeatures of the condition times
  // it is M_T mu(c)); undefined: the prior has mean 0.
  torch::Tensor prior_shift;
};

// The forecasting export (core/forecast_process.h): forward(x, cond, t) returns the score of the
// standardised horizon block x [B, H*D] given the packed condition cond [B, C*D + F];
// forecast(context, covariates, samples, steps) takes raw contexts [n, C, D] in original units and
// covariates [n, F] and returns sample paths [n, samples, H, D] in original units (Heun
// probability-flow ODE from the job's prior: N(0, I_H (x) Sigma_T), or the conditional prior's
// N(M_T mu(c), I_H (x) (Sigma_T + M_T Sigma_r M_T^T))); A, D and the transform are attributes.
absl::Status ExportForecastTorchScript(const std::string& path, ScoreNet& net, const KernelTable& table,
                                       const ForecastExportInfo& info);

}  // namespace vsdm::core
