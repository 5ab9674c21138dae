#include "worker/train/forecast_artifacts.h"

#include <chrono>
#include <filesystem>
#include <functional>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "common/train_protocol.h"
#include "core/forecast_eval.h"
#include "core/forecast_process.h"
#include "core/npy.h"
#include "worker/train/final_artifacts.h"
#include "worker/train/round_timing.h"

namespace vsdm::worker {
namespace fs = std::filesystem;

namespace {

constexpr int64_t kRowsPerCall = 4096;  // sample paths per sampler call
constexpr int64_t kChartWindows = 3;    // windows drawn in forecast.png

// Rows [o + offset, o + offset + len) of `v` ([T, D]) for every origin: [W, len, D].
torch::Tensor Slices(const torch::Tensor& v, const std::vector<int64_t>& origins, int64_t offset, int64_t len) {
  std::vector<torch::Tensor> parts;
  for (int64_t o : origins) parts.push_back(v.slice(0, o + offset, o + offset + len));
  return torch::stack(parts);
}

// S standardised sample paths per origin from the model: [W, S, H, D] float64.
torch::Tensor ModelForecast(const JobSetup& setup, const core::Process& process, core::ScoreNet& net,
                            const std::vector<int64_t>& origins, int64_t S, core::Solver solver,
                            torch::Generator& gen) {
  const core::SeriesData& data = *setup.series;
  const int64_t H = data.horizon, D = data.dim();
  torch::Tensor cond = data.Windows(origins).slice(1, H * D);
  const int64_t per_call = std::max<int64_t>(1, kRowsPerCall / S);
  std::vector<torch::Tensor> parts;
  for (int64_t w0 = 0; w0 < static_cast<int64_t>(origins.size()); w0 += per_call) {
    const int64_t w1 = std::min<int64_t>(w0 + per_call, origins.size());
    torch::Tensor c = cond.slice(0, w0, w1).repeat_interleave(S, 0);
    torch::Tensor prior = core::WithCondition(process.SamplePrior(c.size(0), true, gen), c);
    parts.push_back(process.Sample(net, prior, solver, gen, false).x.reshape({w1 - w0, S, H, D}));
  }
  return torch::cat(parts).to(torch::kFloat64);
}

nlohmann::json ScoresJson(const core::ForecastScores& s, double seconds) {
  return {{"crps", s.crps},   {"crps_sum", s.crps_sum}, {"nd", s.nd},
          {"nrmse", s.nrmse}, {"energy_crps", s.energy_crps}, {"seconds", seconds}};
}

// The training span's correlation of the standardised values: [D, D].
torch::Tensor TrainCorrelation(const core::SeriesData& data) {
  const torch::Tensor cov = data.TrainCovariance();
  const torch::Tensor sd = cov.diagonal().sqrt();
  return cov / torch::outer(sd, sd);
}

struct Scored {
  std::string name;
  core::ForecastScores scores;
};

absl::Status WriteChart(const JobSetup& setup, const nlohmann::json& m, const torch::Tensor& contexts,
                        const torch::Tensor& targets, const torch::Tensor& forecasts, const torch::Tensor& a,
                        const torch::Tensor& corr, const std::vector<Scored>& table, const std::string& path) {
  const core::SeriesData& data = *setup.series;
  const JobSpec& spec = setup.spec;
  core::FanChart chart;
  chart.title = absl::StrFormat("%s: %s, %s, context %d, horizon %d, %d windows x %d paths", spec.name,
                                spec.problem.dataset, spec.method, data.context, data.horizon,
                                static_cast<int>(data.test_origins.size()), static_cast<int>(spec.sample.n));
  std::string line;
  for (const Scored& s : table) line += absl::StrFormat("%s %.4f   ", s.name, s.scores.crps_sum);
  chart.caption.push_back("CRPS-sum (lower is better): " + line);
  chart.caption.push_back(absl::StrFormat("CRPS %.4f   ND %.4f   NRMSE %.4f   energy CRPS (standardised) %.4f",
                                          m["crps"].get<double>(), m["nd"].get<double>(), m["nrmse"].get<double>(),
                                          m["energy_crps"].get<double>()));
  chart.series = data.columns;
  chart.contexts = contexts;
  chart.targets = targets;
  chart.forecasts = forecasts;
  const int64_t W = static_cast<int64_t>(data.test_origins.size());
  for (int64_t i = 0; i < std::min<int64_t>(kChartWindows, W); ++i) {
    const int64_t w = W <= kChartWindows ? i : i * (W - 1) / (kChartWindows - 1);
    chart.windows.push_back(w);
    const int64_t o = data.test_origins[w];
    chart.window_labels.push_back(data.dates.empty() ? absl::StrFormat("origin row %d", o)
                                                     : absl::StrFormat("origin %s", data.dates[o]));
  }
  if (setup.learn_a) chart.a = a;
  chart.corr = corr;
  return core::WriteFanChartPng(path, chart);
}

}  // namespace

absl::StatusOr<nlohmann::json> WriteForecastArtifacts(const JobSetup& setup, core::ScoreNet& ema_net,
                                                      const core::Process& process, const std::string& out_dir,
                                                      const nlohmann::json& extra) {
  const JobSpec& spec = setup.spec;
  const core::SeriesData& data = *setup.series;
  const auto t_eval = SteadyClock::now();
  if (setup.eval_threads > 0) torch::set_num_threads(setup.eval_threads);
  torch::Generator gen = MakeGenerator(spec, Stream::kEval);
  ema_net->eval();
  torch::NoGradGuard no_grad;
  const std::vector<int64_t>& origins = data.test_origins;
  const int64_t S = spec.sample.n, H = data.horizon, C = data.context;

  torch::Tensor targets_std = Slices(data.values, origins, 0, H);
  torch::Tensor targets = Slices(data.raw, origins, 0, H);
  torch::Tensor contexts = Slices(data.raw, origins, -C, C);
  auto t0 = SteadyClock::now();
  torch::Tensor model_std = ModelForecast(setup, process, ema_net, origins, S, core::ParseSolver(spec.sample.solver), gen);
  torch::Tensor forecasts = data.ToOriginal(model_std);
  std::vector<Scored> table = {{spec.method, core::ScoreForecasts(forecasts, targets, model_std, targets_std)}};
  nlohmann::json scores;
  scores[spec.method] = ScoresJson(table[0].scores, SecondsSince(t0));

  using Baseline = std::function<torch::Tensor()>;
  std::vector<std::pair<std::string, Baseline>> baselines = {
      {"persistence", [&] { return core::PersistenceForecast(data, origins, S, gen); }},
      {"random_walk", [&] { return core::RandomWalkForecast(data, origins, S, gen); }},
      {"var1", [&] { return core::Var1Forecast(data, origins, S, gen); }}};
  if (!data.day_of_year.empty())
    baselines.push_back({"climatology", [&] { return core::ClimatologyForecast(data, origins, S, gen); }});
  if (data.truth.phi.defined())
    baselines.push_back({"oracle", [&] { return core::OracleVar1Forecast(data, origins, S, gen); }});
  for (const auto& [name, run] : baselines) {
    t0 = SteadyClock::now();
    torch::Tensor f_std = run();
    table.push_back({name, core::ScoreForecasts(data.ToOriginal(f_std), targets, f_std, targets_std)});
    scores[name] = ScoresJson(table.back().scores, SecondsSince(t0));
  }

  nlohmann::json m;
  const core::ForecastScores& own = table[0].scores;
  m["crps"] = own.crps;
  m["crps_sum"] = own.crps_sum;
  m["nd"] = own.nd;
  m["nrmse"] = own.nrmse;
  m["energy_crps"] = own.energy_crps;
  std::string best;
  double best_sum = 0.0;
  for (size_t i = 1; i < table.size(); ++i) {
    if (table[i].name == "oracle") continue;
    if (best.empty() || table[i].scores.crps_sum < best_sum) best = table[i].name, best_sum = table[i].scores.crps_sum;
  }
  m["best_baseline"] = best;
  m["best_baseline_crps_sum"] = best_sum;
  m["beats_baselines_crps_sum"] = own.crps_sum < best_sum;
  m["forecast"] = scores;
  m["windows"] = static_cast<int64_t>(origins.size());
  m["samples_per_window"] = S;
  m["solver"] = spec.sample.solver;
  m["data"] = {{"source", data.source},
               {"columns", data.columns},
               {"log1p", data.log1p},
               {"rows", data.steps()},
               {"test_start_row", data.test_start},
               {"train_windows", static_cast<int64_t>(data.train_origins.size())},
               {"context", C},
               {"horizon", H}};
  if (!data.dates.empty()) m["data"]["test_start"] = data.dates[data.test_start];
  const auto described = process.Describe();  // A, D, prior_cov
  for (const auto& [name, value] : described) m[name] = TensorToJson(value);
  torch::Tensor corr = TrainCorrelation(data);
  m["train_correlation"] = TensorToJson(corr);
  m["spec"] = JobSpecToJson(spec);
  for (auto it = extra.begin(); it != extra.end(); ++it) m[it.key()] = it.value();

  std::error_code ec;
  fs::create_directories(out_dir, ec);
  auto file = [&](const char* name) { return (fs::path(out_dir) / name).string(); };
  VSDM_RETURN_IF_ERROR(core::WriteNpy(file(train_protocol::kForecastsNpyFile), forecasts.to(torch::kFloat32)));
  VSDM_RETURN_IF_ERROR(core::WriteNpy(file(train_protocol::kTargetsNpyFile), targets.to(torch::kFloat32)));
  VSDM_RETURN_IF_ERROR(core::WriteNpy(file(train_protocol::kContextsNpyFile), contexts.to(torch::kFloat32)));
  VSDM_RETURN_IF_ERROR(process.Export(file(train_protocol::kModelFile), ema_net, spec.method));
  VSDM_RETURN_IF_ERROR(WriteChart(setup, m, contexts, targets, forecasts, described.front().second, corr, table,
                                  file(train_protocol::kForecastPngFile)));
  VSDM_RETURN_IF_ERROR(WriteMetricsFile(m, extra, t_eval, out_dir));
  return m;
}

}  // namespace vsdm::worker
