// Scoring probabilistic forecasts the way GluonTS does, the simple baselines every forecast is
// compared with, and the fan-chart picture. Forecasts are sample paths [W, S, H, D] (W windows,
// S samples, H steps, D series); targets [W, H, D]; any float dtype (computed in float64).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/status/status.h"
#include "core/series_data.h"

namespace vsdm::core {

// The 19 quantile levels 0.05, 0.10, ..., 0.95.
std::vector<double> CrpsQuantileLevels();

// The sample quantile at level q of sorted samples: index round((S - 1) q), no interpolation.
// samples [W, S, H, D] -> [W, H, D].
torch::Tensor SampleQuantile(const torch::Tensor& samples, double q);

// GluonTS' mean weighted quantile loss: mean over the 19 levels q of
//   2 * sum |(qhat - y) (1{y <= qhat} - q)| / sum |y|   (sums over W, H, D).
// Samples {0,1,2,3,4} and y = 2.5 give 0.18315789.
double QuantileCrps(const torch::Tensor& samples, const torch::Tensor& targets);
// The same on the sum over the D series (samples summed per path before the quantiles).
double QuantileCrpsSum(const torch::Tensor& samples, const torch::Tensor& targets);
// ND: sum |median - y| / sum |y|.
double NormalizedDeviation(const torch::Tensor& samples, const torch::Tensor& targets);
// NRMSE: sqrt(mean (mean_forecast - y)^2) / mean |y|.
double NormalizedRmse(const torch::Tensor& samples, const torch::Tensor& targets);
// The energy form of the CRPS, E|X - y| - E|X - X'|/2 per scalar (the unbiased all-pairs estimate
// over the S samples), averaged over W, H, D. Meant for standardised data (no Σ|y| normaliser).
// An exact N(0, 1) at y = 0 has CRPS 0.2336950.
double EnergyCrps(const torch::Tensor& samples, const torch::Tensor& targets);

struct ForecastScores {
  double crps = 0, crps_sum = 0, nd = 0, nrmse = 0;  // on original units
  double energy_crps = 0;                            // on standardised units
};
// All five: `samples`/`targets` in original units, `samples_std`/`targets_std` standardised.
ForecastScores ScoreForecasts(const torch::Tensor& samples, const torch::Tensor& targets,
                              const torch::Tensor& samples_std, const torch::Tensor& targets_std);

// Baselines on the standardised values of `data` for the given forecast origins: each returns
// [W, S, H, D] float64 standardised sample paths, fitted on the training span
// [0, data.test_start) only; draws from `gen`.
//   persistence: the last context value plus, for step h, residuals y_{t+h} - y_t drawn from the
//     training span (empirical quantiles of the h-step errors, jointly across series);
//   seasonal_naive: the same with the value one season before the target (season rows); it is
//     persistence when season = 1;
//   random_walk: the last value plus a Gaussian random walk with the training span's per-series
//     step std;
//   var1: a Gaussian VAR(1) x_{t+1} = c + phi x_t + e fitted by least squares, simulated forward;
//   climatology: for each target row, a training row whose day of year is within +-10 days
//     (needs dates; all rows with dates in other years only are fine), drawn independently per
//     step, series jointly.
torch::Tensor PersistenceForecast(const SeriesData& data, const std::vector<int64_t>& origins, int64_t samples,
                                  torch::Generator& gen);
torch::Tensor SeasonalNaiveForecast(const SeriesData& data, const std::vector<int64_t>& origins, int64_t samples,
                                    int64_t season, torch::Generator& gen);
torch::Tensor RandomWalkForecast(const SeriesData& data, const std::vector<int64_t>& origins, int64_t samples,
                                 torch::Generator& gen);
torch::Tensor Var1Forecast(const SeriesData& data, const std::vector<int64_t>& origins, int64_t samples,
                           torch::Generator& gen);
torch::Tensor ClimatologyForecast(const SeriesData& data, const std::vector<int64_t>& origins, int64_t samples,
                                  torch::Generator& gen);
// The exact predictive law of a var1 series (data.truth defined): N(phi^h x_o-1, sum phi^i sigma phi^iT),
// sampled; in standardised units like the others.
torch::Tensor OracleVar1Forecast(const SeriesData& data, const std::vector<int64_t>& origins, int64_t samples,
                                 torch::Generator& gen);

// forecast.png: for a few windows (rows) and every series (columns), the context, the truth and
// the forecast's median with its 50% and 90% bands; below, the learned A_D and the data's
// cross-series correlation as heat maps. All tensors in original units except `a` and `corr`.
struct FanChart {
  std::string title;
  std::vector<std::string> caption;
  std::vector<std::string> series;    // D names
  torch::Tensor contexts;             // [W, C, D]
  torch::Tensor targets;              // [W, H, D]
  torch::Tensor forecasts;            // [W, S, H, D]
  std::vector<int64_t> windows;       // which of the W windows to draw (a few)
  std::vector<std::string> window_labels;  // e.g. the origin dates, one per drawn window
  torch::Tensor a;                    // [D, D] learned A_D (may be undefined: DSM)
  torch::Tensor corr;                 // [D, D] the training span's correlation of the standardised values
};
absl::Status WriteFanChartPng(const std::string& path, const FanChart& chart);

}  // namespace vsdm::core
