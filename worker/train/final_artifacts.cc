#include "worker/train/final_artifacts.h"

#include <zlib.h>

#include <chrono>
#include <filesystem>

#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/train_protocol.h"
#include "core/metrics.h"
#include "core/npy.h"
#include "core/plot.h"
#include "core/sampler.h"
#include "core/torchscript_export.h"
#include "worker/train/forecast_artifacts.h"
#include "worker/train/image_artifacts.h"

namespace vsdm::worker {
namespace fs = std::filesystem;

namespace {
// The sampler step counts of the quality-versus-steps sweep in metrics.json.
constexpr int64_t kSweepSteps[] = {10, 20, 50, 100};
constexpr int64_t kSweepPoints = 4000;

// Quality against the number of sampler steps (Heun ODE, fewer points), with the same net:
// m["steps_sweep"] and its data-vs-data floor.
void StepsSweep(const JobSetup& setup, const core::Process& process, core::ScoreNet& ema_net, nlohmann::json& m) {
  torch::Generator g = MakeGenerator(setup.spec, Stream::kEval, 1);
  const int64_t ns = std::min<int64_t>(setup.spec.sample.n, kSweepPoints);
  torch::Tensor ref = setup.dataset->Sample(ns, g);
  nlohmann::json sweep = nlohmann::json::array();
  for (int64_t steps : kSweepSteps) {
    std::unique_ptr<core::Process> p = process.WithGrid({process.grid().t_min, steps});
    core::SampleResult r = p->Sample(ema_net, p->SamplePrior(ns, true, g), core::Solver::kHeun, g, true);
    sweep.push_back({{"steps", steps},
                     {"energy_distance", core::EnergyDistance(r.x, ref)},
                     {"ode_straightness", core::Straightness(r.trajectory)}});
  }
  m["steps_sweep"] = sweep;
  m["steps_sweep_floor"] = core::EnergyDistance(setup.dataset->Sample(ns, g), ref);
}

// samples.png: data, samples and a few ODE paths, captioned with the headline figures.
absl::Status WritePlot(const JobSpec& spec, const std::string& param_name, const nlohmann::json& m,
                       const torch::Tensor& data, const torch::Tensor& samples, const torch::Tensor& trajectory,
                       const std::string& path) {
  core::ScatterPlot plot;
  plot.title = absl::StrFormat("%s: %s %s, %s", spec.name, spec.problem.dataset, spec.method, spec.sample.solver);
  plot.caption.push_back(
      absl::StrFormat("energy distance %.3f (data vs data %.4f)   PMF-RMSE %.2e (floor %.2e)   SW1 %.3f",
                      m["energy_distance"].get<double>(), m["energy_distance_floor"].get<double>(),
                      m["pmf_rmse"].get<double>(), m["pmf_rmse_floor"].get<double>(), m["sliced_w1"].get<double>()));
  plot.caption.push_back(absl::StrFormat("ODE straightness %.3f (1 = straight)   transport cost %.2f   %s = %s",
                                         m["ode_straightness"].get<double>(), m["ode_transport_cost"].get<double>(),
                                         param_name, m[param_name].dump()));
  plot.data = data;
  plot.samples = samples;
  plot.trajectories = trajectory.slice(1, 0, 48);
  return core::WriteScatterPng(path, plot);
}
}  // namespace

namespace {
absl::StatusOr<nlohmann::json> WriteFinalArtifactsOnHost(const JobSetup& setup, core::ScoreNet& ema_net,
                                                         const core::Process& process, const std::string& out_dir,
                                                         const nlohmann::json& extra);
}  // namespace

absl::StatusOr<nlohmann::json> WriteFinalArtifacts(const JobSetup& setup, core::ScoreNet& ema_net,
                                                   const core::Process& process, const std::string& out_dir,
                                                   const nlohmann::json& extra) {
  if (!setup.device.is_cpu()) {
    // The evaluation (metrics, pictures, the export) runs on the CPU: a copy of the EMA net and of
    // the process there, drawing from the CPU evaluation stream.
    core::ScoreNet host = core::CloneScoreNet(ema_net);
    std::unique_ptr<core::Process> host_process = process.To(torch::kCPU);
    return WriteFinalArtifactsOnHost(setup, host, *host_process, out_dir, extra);
  }
  return WriteFinalArtifactsOnHost(setup, ema_net, process, out_dir, extra);
}

namespace {
absl::StatusOr<nlohmann::json> WriteFinalArtifactsOnHost(const JobSetup& setup, core::ScoreNet& ema_net,
                                                         const core::Process& process, const std::string& out_dir,
                                                         const nlohmann::json& extra) {
  if (setup.images) return WriteImageArtifacts(setup, ema_net, process, out_dir, extra);
  if (setup.series) return WriteForecastArtifacts(setup, ema_net, process, out_dir, extra);
  const JobSpec& spec = setup.spec;
  const auto t_eval = std::chrono::steady_clock::now();
  torch::Generator gen = MakeGenerator(spec, Stream::kEval);
  const int64_t n = spec.sample.n;
  ema_net->eval();

  // Evaluation samples start from the prior N(0, Sigma_T) (spec §4, §5).
  torch::Tensor prior = process.SamplePrior(n, /*adaptive=*/true, gen);
  core::Solver solver = core::ParseSolver(spec.sample.solver);
  core::SampleResult ode = process.Sample(ema_net, prior, core::Solver::kHeun, gen, /*keep_trajectory=*/true);
  torch::Tensor samples = solver == core::Solver::kHeun ? ode.x : process.Sample(ema_net, prior, solver, gen, false).x;

  torch::Tensor data = setup.dataset->Sample(n, gen);
  torch::Tensor data2 = setup.dataset->Sample(n, gen);
  nlohmann::json m;
  m["n"] = n;
  m["solver"] = spec.sample.solver;
  m["energy_distance"] = core::EnergyDistance(samples, data);
  m["energy_distance_floor"] = core::EnergyDistance(data2, data);
  m["pmf_rmse"] = core::PmfRmse(data, samples);
  m["pmf_rmse_floor"] = core::PmfRmse(data, data2);
  m["sliced_w1"] = core::SlicedWasserstein1(samples, data, 256, gen);
  m["sliced_w1_floor"] = core::SlicedWasserstein1(data2, data, 256, gen);
  m["ode_straightness"] = core::Straightness(ode.trajectory);
  m["ode_transport_cost"] = core::TransportCost(ode.trajectory);
  const auto described = process.Describe();  // A, D, prior_cov (VSMD: c, a, ...)
  for (const auto& [name, value] : described) m[name] = TensorToJson(value);
  StepsSweep(setup, process, ema_net, m);
  m["spec"] = JobSpecToJson(spec);
  for (auto it = extra.begin(); it != extra.end(); ++it) m[it.key()] = it.value();

  std::error_code ec;
  fs::create_directories(out_dir, ec);
  VSDM_RETURN_IF_ERROR(core::WriteNpy((fs::path(out_dir) / train_protocol::kSamplesNpyFile).string(), samples));
  VSDM_RETURN_IF_ERROR(process.Export((fs::path(out_dir) / train_protocol::kModelFile).string(), ema_net, spec.method));

  VSDM_RETURN_IF_ERROR(WritePlot(spec, described.front().first, m, data, samples, ode.trajectory,
                                 (fs::path(out_dir) / train_protocol::kSamplesPngFile).string()));
  VSDM_RETURN_IF_ERROR(WriteMetricsFile(m, extra, t_eval, out_dir));
  return m;
}
}  // namespace

nlohmann::json TensorToJson(const torch::Tensor& t) {
  torch::Tensor a = t.to(torch::kFloat64).contiguous();
  if (a.dim() == 0) return a.item<double>();
  nlohmann::json out = nlohmann::json::array();
  for (int64_t i = 0; i < a.size(0); ++i) out.push_back(TensorToJson(a[i]));
  return out;
}

absl::Status WriteMetricsFile(nlohmann::json& m, const nlohmann::json& extra,
                              std::chrono::steady_clock::time_point eval_start, const std::string& out_dir) {
  // Total wall time = the caller's training time (if given) + this evaluation.
  m["eval_seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - eval_start).count();
  m["wall_seconds"] = extra.value("wall_seconds_training", 0.0) + m["eval_seconds"].get<double>();
  // Issue 18: the artifacts carry the job they belong to (job_uid and spec_hash come in `extra`)
  // and the size and CRC-32 of each other artifact, written before metrics.json, which is last:
  // a reader can tell a file of this job's result from a torn or stale one.
  nlohmann::json sums = nlohmann::json::object();
  for (const char* name : train_protocol::kArtifacts) {
    const fs::path path = fs::path(out_dir) / name;
    if (std::string(name) == train_protocol::kMetricsFile || !fs::is_regular_file(path)) continue;
    VSDM_ASSIGN_OR_RETURN(const std::string bytes, ReadFile(path.string()));
    const uLong crc = crc32_z(0, reinterpret_cast<const Bytef*>(bytes.data()), bytes.size());
    sums[name] = {{"bytes", bytes.size()}, {"crc32", absl::StrFormat("%08x", crc)}};
  }
  m["artifact_checksums"] = std::move(sums);
  return AtomicWriteFile((fs::path(out_dir) / train_protocol::kMetricsFile).string(), m.dump(2) + "\n");
}

}  // namespace vsdm::worker
