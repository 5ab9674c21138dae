// Multivariate time series for probabilistic forecasting (problem.dataset: series:<csv> | weather
// | var1): a wide CSV (one row per time step, one column per series, an optional date column),
// per-series transforms (log1p for zero-inflated series, then standardisation with the training
// span's mean and std only), a time split, and (context, horizon) windows. A bad CSV is refused
// before anything is written, naming the file, the line and the column.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/status/statusor.h"

namespace vsdm::core {

struct SeriesOptions {
  std::string dataset;         // series:<path> | weather (data_dir/series/weather.csv) | var1 (synthetic)
  std::string data_dir;        // the repository's data/; relative series: paths are tried against
                               // the working directory, then against data_dir's parent
  int64_t context = 28;        // C: steps the model sees
  int64_t horizon = 7;         // H: steps it forecasts
  std::string columns;         // comma-separated column names; empty: every numeric column but the date
  std::string log1p = "auto";  // auto (non-negative columns with >= 20% zeros) | none | comma-separated names
  std::string test_start;      // first test row: a date (YYYY-MM-DD, needs a date column) or a row index;
                               // empty: the last 20% of the rows
  int64_t eval_stride = 7;     // one test forecast origin every eval_stride rows
  uint64_t seed = 0;           // var1 only: the synthetic series' seed
};

// The synthetic VAR(1) of `var1`: x_{t+1} = phi x_t + e_t, e_t ~ N(0, sigma), whose h-step predictive
// law given x_t is N(phi^h x_t, sum_{i<h} phi^i sigma phi^iT): the oracle of the forecasting check.
struct Var1Truth {
  torch::Tensor phi;    // [D, D] float64
  torch::Tensor sigma;  // [D, D] float64 innovation covariance
};

struct SeriesData {
  std::string source;                // the file read ("var1" for the synthetic series)
  std::vector<std::string> columns;  // the D series used
  std::vector<bool> log1p;           // per series: whether log1p is applied before standardising
  std::vector<std::string> dates;    // [T] the date column's text (empty when the CSV has none)
  std::vector<int> day_of_year;      // [T] 1..366 when dates parse as YYYY-MM-DD, else empty
  torch::Tensor raw;                 // [T, D] float64, original units
  torch::Tensor values;              // [T, D] float64: transformed, standardised with train-span moments
  torch::Tensor mean, std;           // [D] float64: the transformed training span's mean and std
  int64_t test_start = 0;            // first row of the test span; rows [0, test_start) are training
  int64_t context = 0, horizon = 0;  // C, H
  std::vector<int64_t> train_origins;  // o with o >= C and o + H <= test_start (targets [o, o+H) train only)
  std::vector<int64_t> test_origins;   // o = test_start, test_start + stride, ... with o + H <= T
  Var1Truth truth;                     // var1 only (undefined tensors otherwise)

  int64_t dim() const { return static_cast<int64_t>(columns.size()); }  // D
  int64_t steps() const { return raw.size(0); }                          // T
  // Covariate features per window: sin and cos of the origin's day of year when dates parse, else 0.
  int64_t covariates() const { return day_of_year.empty() ? 0 : 2; }
  // The width of one packed window row: H*D (target) + C*D (context) + covariates().
  int64_t packed_width() const { return (horizon + context) * dim() + covariates(); }
  // Packed windows [n, packed_width()] float32 (standardised): the target block rows [o, o+H) then
  // the context rows [o-C, o), each row-major [step][series], then the covariates of origin o.
  torch::Tensor Windows(const std::vector<int64_t>& origins) const;
  torch::Tensor Windows(const torch::Tensor& origins) const;  // [n] int64
  // The covariance of `values` over the training span (float64 [D, D], divided by n - 1): the
  // input scale's data covariance and, normalised, the correlation shown beside A_D.
  torch::Tensor TrainCovariance() const;
  // Standardised transformed values [..., D] back to original units (undo standardisation, then
  // expm1 for log1p series, clamped at 0). float64.
  torch::Tensor ToOriginal(const torch::Tensor& standardised) const;
};

// True for series:<path>, weather and var1.
bool IsSeriesDataset(const std::string& dataset);

// Loads and checks the series. INVALID_ARGUMENT naming problem.dataset, the file, the line (1-based,
// the header is line 1) and the column for: a missing/unreadable file, an empty file, a ragged row,
// a non-numeric or NaN/inf cell in a used column, an unknown name in `columns` or `log1p`, a log1p
// column with values <= -1, fewer rows than C + H in either span, a test_start that is not a row or
// date of the file (problem.test_start), a constant series on the training span.
absl::StatusOr<SeriesData> LoadSeriesData(const SeriesOptions& options);

}  // namespace vsdm::core
