#include "worker/train/image_artifacts.h"

#include <chrono>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/train_protocol.h"
#include "core/image_metrics.h"
#include "core/image_plot.h"
#include "core/npy.h"
#include "worker/train/final_artifacts.h"
#include "worker/train/round_timing.h"

namespace vsdm::worker {
namespace fs = std::filesystem;

namespace {

constexpr int64_t kSweepSteps[] = {10, 20, 50, 100};
constexpr int64_t kSweepSamples = 200;
constexpr int64_t kChunk = 250;  // samples per sampler call (cache-friendly batches)
constexpr int64_t kPaths = 8;    // probability-flow paths in the picture

torch::Tensor AsImages(const JobSetup& setup, const torch::Tensor& flat) {
  return flat.reshape({flat.size(0), setup.image.channels, setup.image.height, setup.image.width});
}

// n samples in [-1, 1] as images [n, C, H, W], drawn in chunks from the prior N(0, Sigma_T).
torch::Tensor DrawSamples(const JobSetup& setup, const core::Process& process, core::ScoreNet& net, int64_t n,
                          core::Solver solver, torch::Generator& gen) {
  std::vector<torch::Tensor> parts;
  for (int64_t done = 0; done < n; done += kChunk) {
    const int64_t m = std::min(kChunk, n - done);
    parts.push_back(process.Sample(net, process.SamplePrior(m, true, gen), solver, gen, false).x);
  }
  return AsImages(setup, torch::cat(parts).clamp(-1.0, 1.0));
}

nlohmann::json ClassifierJson(const core::ClassifierFigures& f) {
  return {{"confident_fraction", f.confident_fraction},
          {"class_histogram", f.histogram},
          {"tv_from_uniform", f.tv_from_uniform}};
}

nlohmann::json QualityJson(const core::ImageQuality& q) {
  return {{"fd", q.fd},
          {"fd_floor", q.fd_floor},
          {"fd_gaussian", q.fd_gaussian},
          {"fd_blur", q.fd_blur},
          {"samples", ClassifierJson(q.samples)},
          {"test", ClassifierJson(q.test)},
          {"nn_median_samples", q.nn_median_samples},
          {"nn_median_test", q.nn_median_test},
          {"memorisation_ratio", q.memorisation_ratio}};
}

// FD (against the whole test split) and confident fraction versus Heun steps.
void StepsSweep(const JobSetup& setup, const core::Process& process, core::ScoreNet& ema_net, core::FeatureNet& fnet,
                nlohmann::json& m) {
  torch::NoGradGuard no_grad;
  torch::Generator g = MakeGenerator(setup.spec, Stream::kEval, 1);
  const core::ImageSet& test = setup.images->test;
  torch::Tensor ref = fnet->Features(test.images);
  const int64_t ns = std::min<int64_t>(setup.spec.sample.n, kSweepSamples);
  nlohmann::json sweep = nlohmann::json::array();
  for (int64_t steps : kSweepSteps) {
    std::unique_ptr<core::Process> p = process.WithGrid({process.grid().t_min, steps});
    torch::Tensor x = DrawSamples(setup, *p, ema_net, ns, core::Solver::kHeun, g);
    sweep.push_back({{"steps", steps},
                     {"fd", core::FrechetDistance(fnet->Features(x), ref)},
                     {"confident_fraction", core::ClassifyFigures(fnet, x).confident_fraction}});
  }
  m["steps_sweep"] = sweep;
  torch::Tensor idx = torch::randperm(setup.images->train.size(), g, torch::kLong).slice(0, 0, ns);
  m["steps_sweep_fd_floor"] =
      core::FrechetDistance(fnet->Features(setup.images->train.images.index_select(0, idx)), ref);
}

// A few probability-flow paths at a handful of times, for the picture: [P, k, C, H, W] in [0, 1].
torch::Tensor PathStrip(const JobSetup& setup, const core::Process& process, core::ScoreNet& net,
                        std::vector<double>* times) {
  torch::Generator g = MakeGenerator(setup.spec, Stream::kEval, 2);
  core::SampleResult r = process.Sample(net, process.SamplePrior(kPaths, true, g), core::Solver::kHeun, g, true);
  const core::TimeGrid& grid = process.grid();
  std::vector<torch::Tensor> rows;
  for (double t : {1.0, 0.8, 0.6, 0.4, 0.25, 0.1, 0.03, grid.t_min}) {
    const int64_t k = std::clamp<int64_t>(std::llround((t - grid.t_min) / grid.Step()), 0, grid.steps);
    rows.push_back(core::ToUnitRange(AsImages(setup, r.trajectory[grid.steps - k])));
    times->push_back(grid.At(k));
  }
  return torch::stack(rows);
}

absl::Status WritePicture(const JobSetup& setup, const nlohmann::json& m, const torch::Tensor& samples01,
                          const torch::Tensor& paths, const std::vector<double>& times, const torch::Tensor& d_image,
                          const std::string& path) {
  const JobSpec& spec = setup.spec;
  core::ImageReport rep;
  rep.title = absl::StrFormat("%s: %s %s, %s (%d steps)", spec.name, spec.problem.dataset, spec.method,
                              spec.sample.solver, spec.diffusion.steps);
  if (m.contains("quality")) {
    const auto& q = m["quality"];
    rep.caption.push_back(absl::StrFormat(
        "FD %.2f (floor %.2f, Gaussian %.1f, blurred %.2f)   confident %.2f (real %.2f)   class TV %.3f",
        q["fd"].get<double>(), q["fd_floor"].get<double>(), q["fd_gaussian"].get<double>(), q["fd_blur"].get<double>(),
        q["samples"]["confident_fraction"].get<double>(), q["test"]["confident_fraction"].get<double>(),
        q["samples"]["tv_from_uniform"].get<double>()));
    rep.caption.push_back(absl::StrFormat("nearest training image: samples %.2f, test images %.2f (ratio %.2f)",
                                          q["nn_median_samples"].get<double>(), q["nn_median_test"].get<double>(),
                                          q["memorisation_ratio"].get<double>()));
  }
  rep.caption.push_back(
      "left: samples   right: real test images   below: probability-flow paths; D = I - 2A per pixel");
  const int64_t shown = std::min<int64_t>(100, samples01.size(0));
  rep.samples = samples01.slice(0, 0, shown);
  rep.real =
      core::ToUnitRange(setup.images->test.images.slice(0, 0, std::min<int64_t>(100, setup.images->test.size())));
  rep.paths = paths;
  rep.path_times = times;
  rep.d_image = d_image;
  return core::WriteImageReportPng(path, rep);
}

}  // namespace

std::string FeatureNetCacheName(const JobSpec& spec, const core::ImageData& data) {
  std::string tag = spec.problem.dataset;
  if (tag.rfind("images:", 0) == 0) {
    uint64_t h = 1469598103934665603ULL;  // FNV-1a of the path
    for (unsigned char c : tag.substr(7)) h = (h ^ c) * 1099511628211ULL;
    tag = absl::StrFormat("images-%016x", h);
  }
  if (data.split != "official")
    absl::StrAppend(&tag, absl::StrFormat("-split%d-%g", spec.train.seed, spec.problem.test_fraction));
  return absl::StrCat("featnet-", absl::StrReplaceAll(tag, {{"/", "_"}}), ".pt");
}

absl::StatusOr<core::FeatureNet> FeatureNetFor(const JobSetup& setup, core::FeatureNetReport* report,
                                               std::string* source) {
  const core::ImageData& data = *setup.images;
  if (data.classes <= 0)
    return absl::FailedPreconditionError("the images have no labels: no classifier for the quality figures");
  const core::ImageSet& tr = data.train;
  const std::string& given = setup.spec.sample.classifier;
  std::string path = given;
  if (path.empty() && !setup.cache_dir.empty())
    path = (fs::path(setup.cache_dir) / FeatureNetCacheName(setup.spec, data)).string();
  if (!path.empty() && (!given.empty() || fs::exists(path))) {
    auto net = core::LoadFeatureNet(path, tr.channels(), tr.height(), tr.width(), data.classes, report);
    if (!given.empty() && !net.ok())
      return absl::InvalidArgumentError(absl::StrCat("sample.classifier: ", net.status().message()));
    if (net.ok()) {
      *source = path;
      return net;
    }
  }
  // Not cached yet (or unreadable): train it the way vsdm-featnet does, then cache it (with
  // autograd on, whatever the caller's mode).
  torch::AutoGradMode grad_on(true);
  VSDM_ASSIGN_OR_RETURN(core::FeatureNet net, core::TrainFeatureNet(data, core::FeatureNetOptions{}, report));
  *source = "trained in this job";
  if (!path.empty()) {
    std::error_code ec;
    fs::create_directories(fs::path(path).parent_path(), ec);
    if (core::SaveFeatureNet(path, net, *report, setup.spec.problem.dataset).ok()) *source += ", cached at " + path;
  }
  return net;
}

absl::StatusOr<nlohmann::json> WriteImageArtifacts(const JobSetup& setup, core::ScoreNet& ema_net,
                                                   const core::Process& process, const std::string& out_dir,
                                                   const nlohmann::json& extra) {
  const JobSpec& spec = setup.spec;
  const auto t_eval = std::chrono::steady_clock::now();
  // The evaluation runs on trainer 0 alone (the other ranks have finished): all its cores.
  if (setup.eval_threads > 0) torch::set_num_threads(setup.eval_threads);
  torch::Generator gen = MakeGenerator(spec, Stream::kEval);
  ema_net->eval();
  torch::NoGradGuard no_grad;
  torch::Tensor samples =
      DrawSamples(setup, process, ema_net, spec.sample.n, core::ParseSolver(spec.sample.solver), gen);
  nlohmann::json m;
  m["n"] = spec.sample.n;
  m["solver"] = spec.sample.solver;
  m["image_shape"] = {setup.image.channels, setup.image.height, setup.image.width};
  m["data"] = {{"train", setup.train_items},
               {"test", setup.images->test.size()},
               {"split", setup.images->split},
               {"source", setup.images->train.source}};
  core::FeatureNetReport report;
  std::string source;
  auto fnet = FeatureNetFor(setup, &report, &source);
  if (fnet.ok()) {
    m["classifier"] = {{"source", source}, {"test_accuracy", report.test_accuracy}};
    // The memorisation check and the floor look at the images the model trained on.
    core::ImageData seen = *setup.images;
    seen.train = seen.train.Select(torch::arange(setup.train_items, torch::kLong));
    const core::ImageQuality q = core::EvaluateImageQuality(*fnet, samples, seen, gen);
    m["quality"] = QualityJson(q);
    // Flat copies of the headline figures: the scalars the agent forwards to the coordinator.
    m["fd"] = q.fd;
    m["fd_floor"] = q.fd_floor;
    m["fd_gaussian"] = q.fd_gaussian;
    m["fd_blur"] = q.fd_blur;
    m["confident_fraction"] = q.samples.confident_fraction;
    m["confident_fraction_test"] = q.test.confident_fraction;
    m["class_tv_from_uniform"] = q.samples.tv_from_uniform;
    m["memorisation_ratio"] = q.memorisation_ratio;
    StepsSweep(setup, process, ema_net, *fnet, m);
  } else if (fnet.status().code() == absl::StatusCode::kFailedPrecondition) {
    m["classifier"] = {{"source", std::string(fnet.status().message())}};
    torch::Tensor flat = samples.reshape({samples.size(0), -1});
    torch::Tensor train = setup.images->train.images.slice(0, 0, setup.train_items);
    m["quality"] = {{"nn_median_samples", core::MedianNearestDistance(flat, train.reshape({setup.train_items, -1}))}};
  } else {
    return fnet.status();
  }
  const auto described = process.Describe();  // a, d, prior_var
  for (const auto& [name, value] : described) m[name] = TensorToJson(value);
  torch::Tensor d_image = described.size() > 1
                              ? described[1]
                                    .second.to(torch::kFloat32)
                                    .reshape({setup.image.channels, setup.image.height, setup.image.width})
                              : torch::Tensor();
  m["spec"] = JobSpecToJson(spec);
  for (auto it = extra.begin(); it != extra.end(); ++it) m[it.key()] = it.value();

  std::error_code ec;
  fs::create_directories(out_dir, ec);
  torch::Tensor samples01 = core::ToUnitRange(samples).to(torch::kFloat32).contiguous();
  VSDM_RETURN_IF_ERROR(core::WriteNpy((fs::path(out_dir) / train_protocol::kSamplesNpyFile).string(), samples01));
  VSDM_RETURN_IF_ERROR(process.Export((fs::path(out_dir) / train_protocol::kModelFile).string(), ema_net, spec.method));
  std::vector<double> times;
  torch::Tensor paths = PathStrip(setup, process, ema_net, &times);
  VSDM_RETURN_IF_ERROR(WritePicture(setup, m, samples01, paths, times, d_image,
                                    (fs::path(out_dir) / train_protocol::kSamplesPngFile).string()));
  VSDM_RETURN_IF_ERROR(WriteMetricsFile(m, extra, t_eval, out_dir));
  return m;
}

}  // namespace vsdm::worker
