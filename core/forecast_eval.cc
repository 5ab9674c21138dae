#include "core/forecast_eval.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

// Note [Forecast scores]
// All scores follow GluonTS' evaluator on sample forecasts. The sample quantile at level q is the
// sorted sample at index round((S - 1) q), rounded half to even like numpy's np.round (GluonTS'
// SampleForecast.quantile), with no interpolation. The weighted quantile loss is
// 2 sum |(qhat - y)(1{y <= qhat} - q)| / sum |y| over every (window, step, series); "CRPS" is its mean
// over the 19 levels 0.05..0.95, "CRPS-sum" the same on the per-path sum over the series. A target
// with sum |y| = 0 gives inf or NaN (as GluonTS does); callers standardise or avoid it.
//
// Note [Energy CRPS]
// Per scalar, CRPS = E|X - y| - E|X - X'|/2. With S sorted samples x_(0) <= ... <= x_(S-1), the sum
// over unordered pairs sum_{i<j} (x_(j) - x_(i)) = sum_i (2i - S + 1) x_(i), so the unbiased
// estimate of E|X - X'| over the S (S - 1) ordered pairs i != j is 2 sum_i (2i - S + 1) x_(i) / (S (S-1)):
// O(S log S) per scalar. S = 1 has no pairs and drops the term. (The V-statistic with i = j pairs
// would divide by S^2 instead; the unbiased one is what properscoring's fair CRPS uses.)

namespace vsdm::core {
namespace {

const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

std::string Shape(const torch::Tensor& t) {
  if (!t.defined()) return "undefined";
  return absl::StrCat("[", absl::StrJoin(t.sizes(), ", "), "]");
}

torch::Tensor F64(const torch::Tensor& t) { return t.detach().to(torch::kCPU, torch::kFloat64).contiguous(); }

void CheckForecast(const torch::Tensor& samples, const torch::Tensor& targets) {
  TORCH_CHECK(samples.defined() && samples.dim() == 4 && samples.size(1) >= 1,
              "forecast scores: samples must be [W, S, H, D] with S >= 1, got ", Shape(samples));
  TORCH_CHECK(targets.defined() && targets.dim() == 3 && targets.size(0) == samples.size(0) &&
                  targets.size(1) == samples.size(2) && targets.size(2) == samples.size(3),
              "forecast scores: targets must be [W, H, D] matching samples ", Shape(samples), ", got ",
              Shape(targets));
}

// Index round((S - 1) q), half to even (np.round).
int64_t QuantileIndex(int64_t s, double q) {
  const double idx = std::nearbyint(static_cast<double>(s - 1) * q);
  return std::clamp<int64_t>(static_cast<int64_t>(idx), 0, s - 1);
}

// The mean weighted quantile loss of already sorted (along dim 1) float64 samples.
double QuantileLossOfSorted(const torch::Tensor& sorted, const torch::Tensor& y) {
  const double denom = y.abs().sum().item<double>();
  double total = 0;
  const std::vector<double> levels = CrpsQuantileLevels();
  for (double q : levels) {
    const torch::Tensor qhat = sorted.select(1, QuantileIndex(sorted.size(1), q));
    const torch::Tensor below = (y <= qhat).to(torch::kFloat64);
    total += 2.0 * ((qhat - y) * (below - q)).abs().sum().item<double>() / denom;
  }
  return total / static_cast<double>(levels.size());
}

void CheckOrigins(const SeriesData& data, const std::vector<int64_t>& origins, int64_t samples, int64_t min_origin) {
  TORCH_CHECK(data.values.defined() && data.values.dim() == 2, "baseline: data.values must be [T, D], got ",
              Shape(data.values));
  TORCH_CHECK(samples >= 1, "baseline: samples must be >= 1, got ", samples);
  TORCH_CHECK(data.horizon >= 1, "baseline: data.horizon must be >= 1, got ", data.horizon);
  TORCH_CHECK(data.test_start >= 2 && data.test_start <= data.values.size(0),
              "baseline: data.test_start must be in [2, T = ", data.values.size(0), "], got ", data.test_start);
  for (int64_t o : origins)
    TORCH_CHECK(o >= min_origin && o <= data.values.size(0),
                "baseline: origin ", o, " must be in [", min_origin, ", T = ", data.values.size(0), "]");
}

// values[o - 1] for each origin: [W, D] float64.
torch::Tensor LastValues(const torch::Tensor& values, const std::vector<int64_t>& origins) {
  std::vector<int64_t> rows;
  rows.reserve(origins.size());
  for (int64_t o : origins) rows.push_back(o - 1);
  return values.index_select(0, torch::tensor(rows, torch::kInt64));
}

// Lower Cholesky factor of a symmetric PSD matrix, with a growing jitter if it is singular.
torch::Tensor SafeCholesky(const torch::Tensor& cov) {
  const torch::Tensor sym = 0.5 * (cov + cov.t());
  const torch::Tensor eye = torch::eye(sym.size(0), kF64);
  const double scale = std::max(sym.diagonal().abs().max().item<double>(), 1e-300);
  for (double jitter = 0; jitter < 1.0; jitter = jitter == 0 ? 1e-12 : jitter * 10) {
    auto [factor, info] = torch::linalg_cholesky_ex(sym + jitter * scale * eye);
    if (info.item<int64_t>() == 0) return factor;
  }
  // Not PSD even with a large jitter: fall back to the diagonal's square root.
  return torch::diag(sym.diagonal().clamp_min(0).sqrt());
}

// Simulates x_{k+1} = c + phi x_k + chol eps from x0 [W, D] for `horizon` steps, `samples` paths per
// window: [W, S, H, D]. `c` may be undefined (no intercept).
torch::Tensor SimulateVar1(const torch::Tensor& x0, const torch::Tensor& c, const torch::Tensor& phi,
                           const torch::Tensor& chol, int64_t samples, int64_t horizon, torch::Generator& gen) {
  const int64_t w = x0.size(0), d = x0.size(1);
  torch::Tensor x = x0.unsqueeze(1).expand({w, samples, d}).contiguous();
  std::vector<torch::Tensor> steps;
  steps.reserve(horizon);
  for (int64_t h = 0; h < horizon; ++h) {
    const torch::Tensor eps = torch::randn({w, samples, d}, gen, kF64);
    x = torch::matmul(x, phi.t()) + torch::matmul(eps, chol.t());
    if (c.defined()) x = x + c;
    steps.push_back(x);
  }
  return torch::stack(steps, 2);
}

}  // namespace

std::vector<double> CrpsQuantileLevels() {
  std::vector<double> levels;
  for (int k = 1; k <= 19; ++k) levels.push_back(k / 20.0);
  return levels;
}

torch::Tensor SampleQuantile(const torch::Tensor& samples, double q) {
  TORCH_CHECK(samples.defined() && samples.dim() == 4 && samples.size(1) >= 1,
              "SampleQuantile: samples must be [W, S, H, D] with S >= 1, got ", Shape(samples));
  const torch::Tensor sorted = std::get<0>(F64(samples).sort(1));
  return sorted.select(1, QuantileIndex(sorted.size(1), q));
}

double QuantileCrps(const torch::Tensor& samples, const torch::Tensor& targets) {
  CheckForecast(samples, targets);
  return QuantileLossOfSorted(std::get<0>(F64(samples).sort(1)), F64(targets));
}

double QuantileCrpsSum(const torch::Tensor& samples, const torch::Tensor& targets) {
  CheckForecast(samples, targets);
  return QuantileCrps(F64(samples).sum(3, /*keepdim=*/true), F64(targets).sum(2, /*keepdim=*/true));
}

double NormalizedDeviation(const torch::Tensor& samples, const torch::Tensor& targets) {
  CheckForecast(samples, targets);
  const torch::Tensor y = F64(targets);
  return (SampleQuantile(samples, 0.5) - y).abs().sum().item<double>() / y.abs().sum().item<double>();
}

double NormalizedRmse(const torch::Tensor& samples, const torch::Tensor& targets) {
  CheckForecast(samples, targets);
  const torch::Tensor y = F64(targets);
  const torch::Tensor mean = F64(samples).mean(1);
  return std::sqrt((mean - y).square().mean().item<double>()) / y.abs().mean().item<double>();
}

double EnergyCrps(const torch::Tensor& samples, const torch::Tensor& targets) {
  CheckForecast(samples, targets);
  const torch::Tensor x = std::get<0>(F64(samples).sort(1));  // [W, S, H, D]
  const torch::Tensor y = F64(targets).unsqueeze(1);          // [W, 1, H, D]
  const int64_t s = x.size(1);
  const torch::Tensor abs_err = (x - y).abs().mean(1);  // E|X - y|, [W, H, D]
  if (s == 1) return abs_err.mean().item<double>();
  // Note [Energy CRPS]: E|X - X'| = 2 sum_i (2i - S + 1) x_(i) / (S (S - 1)).
  const torch::Tensor weights = (2 * torch::arange(s, kF64) - static_cast<double>(s - 1)).view({1, s, 1, 1});
  const torch::Tensor spread = 2.0 * (weights * x).sum(1) / (static_cast<double>(s) * static_cast<double>(s - 1));
  return (abs_err - 0.5 * spread).mean().item<double>();
}

ForecastScores ScoreForecasts(const torch::Tensor& samples, const torch::Tensor& targets,
                              const torch::Tensor& samples_std, const torch::Tensor& targets_std) {
  ForecastScores s;
  s.crps = QuantileCrps(samples, targets);
  s.crps_sum = QuantileCrpsSum(samples, targets);
  s.nd = NormalizedDeviation(samples, targets);
  s.nrmse = NormalizedRmse(samples, targets);
  s.energy_crps = EnergyCrps(samples_std, targets_std);
  return s;
}

// ---- baselines --------------------------------------------------------------------------------

// Target o + h gets values[o + h - L] + r with lag L = season * ceil((h + 1) / season) (the latest
// row one or more whole seasons before the target that the context holds, so L >= h + 1) and r a
// training-span residual values[t + L] - values[t], t in [0, test_start - L), all D series of one t
// together, drawn uniformly and independently per (window, sample, step). With season = 1, L = h + 1
// and the base is values[o - 1]: persistence.
torch::Tensor SeasonalNaiveForecast(const SeriesData& data, const std::vector<int64_t>& origins, int64_t samples,
                                    int64_t season, torch::Generator& gen) {
  TORCH_CHECK(season >= 1, "SeasonalNaiveForecast: season must be >= 1, got ", season);
  CheckOrigins(data, origins, samples, season);
  const torch::Tensor values = F64(data.values);
  const int64_t w = static_cast<int64_t>(origins.size()), hz = data.horizon, d = values.size(1);
  const int64_t ts = data.test_start;
  torch::Tensor out = torch::empty({w, samples, hz, d}, kF64);
  if (w == 0) return out;
  for (int64_t h = 0; h < hz; ++h) {
    const int64_t lag = season * ((h + 1 + season - 1) / season);
    TORCH_CHECK(ts - lag >= 1, "SeasonalNaiveForecast: the training span (test_start = ", ts,
                ") holds no residual of lag ", lag, " (step ", h, ")");
    std::vector<int64_t> base_rows;
    for (int64_t o : origins) {
      TORCH_CHECK(o + h - lag >= 0 && o + h - lag < values.size(0), "SeasonalNaiveForecast: origin ", o,
                  " has no row ", o + h - lag);
      base_rows.push_back(o + h - lag);
    }
    const torch::Tensor base = values.index_select(0, torch::tensor(base_rows, torch::kInt64));  // [W, D]
    const torch::Tensor t = torch::randint(0, ts - lag, {w * samples}, gen, torch::TensorOptions().dtype(torch::kInt64));
    const torch::Tensor resid = values.index_select(0, t + lag) - values.index_select(0, t);  // [W*S, D]
    out.select(2, h).copy_(base.unsqueeze(1) + resid.view({w, samples, d}));
  }
  return out;
}

torch::Tensor PersistenceForecast(const SeriesData& data, const std::vector<int64_t>& origins, int64_t samples,
                                  torch::Generator& gen) {
  return SeasonalNaiveForecast(data, origins, samples, /*season=*/1, gen);
}

// Steps N(0, diag(s^2)) with s the per-series std (unbiased) of the training span's first differences.
torch::Tensor RandomWalkForecast(const SeriesData& data, const std::vector<int64_t>& origins, int64_t samples,
                                 torch::Generator& gen) {
  CheckOrigins(data, origins, samples, 1);
  const torch::Tensor values = F64(data.values);
  const torch::Tensor train = values.slice(0, 0, data.test_start);
  const torch::Tensor step_std = (train.slice(0, 1) - train.slice(0, 0, -1)).std(0);  // [D]
  const int64_t w = static_cast<int64_t>(origins.size()), d = values.size(1);
  const torch::Tensor last = LastValues(values, origins);  // [W, D]
  const torch::Tensor steps = torch::randn({w, samples, data.horizon, d}, gen, kF64) * step_std;
  return last.view({w, 1, 1, d}) + steps.cumsum(2);
}

// Least squares on the training span's pairs (x_t, x_{t+1}), t + 1 < test_start, with an intercept;
// sigma = the residuals' covariance (divided by n - D - 1, or n when that is not positive).
torch::Tensor Var1Forecast(const SeriesData& data, const std::vector<int64_t>& origins, int64_t samples,
                           torch::Generator& gen) {
  CheckOrigins(data, origins, samples, 1);
  const torch::Tensor values = F64(data.values);
  const torch::Tensor train = values.slice(0, 0, data.test_start);
  const int64_t n = train.size(0) - 1, d = values.size(1);
  const torch::Tensor x = train.slice(0, 0, n), y = train.slice(0, 1);
  const torch::Tensor z = torch::cat({torch::ones({n, 1}, kF64), x}, 1);  // [n, D + 1]
  const torch::Tensor b = std::get<0>(torch::linalg_lstsq(z, y));  // [D+1, D]
  const torch::Tensor c = b[0], phi = b.slice(0, 1).t();  // y = c + phi x
  const torch::Tensor resid = y - torch::matmul(z, b);
  const int64_t dof = n - d - 1 > 0 ? n - d - 1 : n;
  const torch::Tensor sigma = torch::matmul(resid.t(), resid) / static_cast<double>(dof);
  if (origins.empty()) return torch::empty({0, samples, data.horizon, d}, kF64);
  return SimulateVar1(LastValues(values, origins), c, phi, SafeCholesky(sigma), samples, data.horizon, gen);
}

// Note [Climatology window]
// Days of year are compared on a 365-day circle: distance min(|a - b|, |365 - |a - b||), so 31 Dec (365,
// or 366 in a leap year) sits next to 1 Jan; around a leap year's end this is off by at most a day.
// A target whose +-10-day window holds no training row (a training span shorter than a year) draws from
// every training row; so does every target when the series has no dates (day_of_year empty).
torch::Tensor ClimatologyForecast(const SeriesData& data, const std::vector<int64_t>& origins, int64_t samples,
                                  torch::Generator& gen) {
  CheckOrigins(data, origins, samples, 0);
  const torch::Tensor values = F64(data.values);
  const int64_t w = static_cast<int64_t>(origins.size()), hz = data.horizon, d = values.size(1);
  const int64_t ts = data.test_start;
  const bool dated = !data.day_of_year.empty();
  if (dated)
    TORCH_CHECK(static_cast<int64_t>(data.day_of_year.size()) == values.size(0), "ClimatologyForecast: day_of_year has ",
                data.day_of_year.size(), " entries, values ", values.size(0), " rows");
  // candidates[doy]: the training rows within +-10 days of day `doy` (1..366).
  std::vector<torch::Tensor> candidates(367);
  const torch::Tensor all_rows = torch::arange(ts, torch::TensorOptions().dtype(torch::kInt64));
  auto rows_for = [&](int doy) -> const torch::Tensor& {
    torch::Tensor& slot = candidates[std::clamp(doy, 0, 366)];
    if (slot.defined()) return slot;
    std::vector<int64_t> rows;
    for (int64_t t = 0; t < ts; ++t) {
      const int diff = std::abs(data.day_of_year[t] - doy);
      if (std::min(diff, std::abs(365 - diff)) <= 10) rows.push_back(t);
    }
    slot = rows.empty() ? all_rows : torch::tensor(rows, torch::kInt64);
    return slot;
  };
  torch::Tensor out = torch::empty({w, samples, hz, d}, kF64);
  for (int64_t i = 0; i < w; ++i) {
    for (int64_t h = 0; h < hz; ++h) {
      const int64_t target = origins[i] + h;
      torch::Tensor pool = all_rows;
      if (dated) {
        TORCH_CHECK(target < values.size(0), "ClimatologyForecast: target row ", target, " is past the series' end (T = ",
                    values.size(0), ")");
        pool = rows_for(data.day_of_year[target]);
      }
      const torch::Tensor pick = torch::randint(0, pool.size(0), {samples}, gen, torch::TensorOptions().dtype(torch::kInt64));
      out[i].select(1, h).copy_(values.index_select(0, pool.index_select(0, pick)));
    }
  }
  return out;
}

// Simulates the true x_{k+1} = phi x_k + e_k, e_k ~ N(0, sigma) from data.raw[o - 1] in raw units (its
// path law is exactly the h-step predictive law, jointly over steps), then standardises with
// (raw - data.mean) / data.std.
torch::Tensor OracleVar1Forecast(const SeriesData& data, const std::vector<int64_t>& origins, int64_t samples,
                                 torch::Generator& gen) {
  CheckOrigins(data, origins, samples, 1);
  TORCH_CHECK(data.truth.phi.defined() && data.truth.sigma.defined(),
              "OracleVar1Forecast: data.truth (phi, sigma) is undefined: not a var1 series");
  TORCH_CHECK(data.raw.defined() && data.raw.sizes() == data.values.sizes(), "OracleVar1Forecast: data.raw must be ",
              Shape(data.values), ", got ", Shape(data.raw));
  const int64_t d = data.values.size(1);
  const torch::Tensor phi = F64(data.truth.phi), sigma = F64(data.truth.sigma);
  TORCH_CHECK(phi.sizes() == torch::IntArrayRef({d, d}) && sigma.sizes() == torch::IntArrayRef({d, d}),
              "OracleVar1Forecast: truth.phi and truth.sigma must be [", d, ", ", d, "], got ", Shape(phi), " and ",
              Shape(sigma));
  if (origins.empty()) return torch::empty({0, samples, data.horizon, d}, kF64);
  const torch::Tensor raw = SimulateVar1(LastValues(F64(data.raw), origins), torch::Tensor(), phi, SafeCholesky(sigma),
                                         samples, data.horizon, gen);
  return (raw - F64(data.mean)) / F64(data.std);
}

}  // namespace vsdm::core
