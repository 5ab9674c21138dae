#include "worker/train/job_setup.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "core/epoch_sampler.h"
#include "core/forecast_process.h"
#include "core/unet.h"

namespace vsdm::worker {

namespace {
// The generator's device: the rank's GPU for a cuda job's streams, so draws are made where the
// tensors live; but the data moments and the whole-job evaluation (MakeGenerator's kEval: the final
// artifacts, computed on the CPU, final_artifacts.h) draw on the CPU. CPU jobs: the CPU throughout.
torch::Device StreamDevice(const JobSpec& spec, Stream s, bool per_round) {
  if (spec.resources.device != "cuda" || s == Stream::kDataCov || (s == Stream::kEval && !per_round))
    return torch::kCPU;
  return torch::Device(torch::kCUDA, 0);
}
}  // namespace

torch::Generator MakeGenerator(const JobSpec& spec, Stream s, int64_t rank) {
  const uint64_t seed = static_cast<uint64_t>(spec.train.seed) * 1000003ULL + static_cast<uint64_t>(s) * 7919ULL +
                        static_cast<uint64_t>(rank) * 104729ULL;
  return core::MakeDeviceGenerator(StreamDevice(spec, s, /*per_round=*/false), seed);
}

torch::Generator MakeRoundGenerator(const JobSpec& spec, Stream s, int64_t rank, int64_t round) {
  // splitmix64 over the tuple: well-mixed seeds for neighbouring (rank, round) pairs.
  auto mix = [](uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
  };
  uint64_t h = mix(static_cast<uint64_t>(spec.train.seed));
  for (uint64_t v : {static_cast<uint64_t>(s), static_cast<uint64_t>(rank), static_cast<uint64_t>(round)})
    h = mix(h ^ v);
  return core::MakeDeviceGenerator(StreamDevice(spec, s, /*per_round=*/true), h);
}

namespace {

core::UNetOptions UNetOptionsOf(const JobSpec& spec, const core::ImageShape& image) {
  core::UNetOptions u;
  u.channels = image.channels;
  u.height = image.height;
  u.width = image.width;
  u.base = spec.model.channels;
  u.mult.assign(spec.model.channel_mult.begin(), spec.model.channel_mult.end());
  u.res_blocks = spec.model.res_blocks;
  u.attention = spec.model.attention;
  u.dropout = spec.model.dropout;
  u.groups = std::min<int64_t>(8, spec.model.channels);
  return u;
}

// Loads the spec's image set and checks that the model fits it.
absl::Status LoadImages(const JobSpec& spec, const core::ImageDataPaths& paths, JobSetup& s) {
  VSDM_ASSIGN_OR_RETURN(core::ImageData data,
                        core::LoadImageData(spec.problem.dataset, paths, spec.problem.test_fraction,
                                            static_cast<uint64_t>(spec.train.seed)));
  // The whole training split stays loaded (the feature net trains on all of it); the job trains
  // on the first train_limit images.
  s.train_items =
      spec.problem.train_limit > 0 ? std::min(spec.problem.train_limit, data.train.size()) : data.train.size();
  if (s.train_items < spec.resources.trainers)
    return absl::InvalidArgumentError(absl::StrCat("problem.dataset: ", data.train.source, ": ", s.train_items,
                                                   " training images, fewer than resources.trainers (",
                                                   spec.resources.trainers, ")"));
  s.image = {data.train.channels(), data.train.height(), data.train.width()};
  s.images = std::make_shared<const core::ImageData>(std::move(data));
  if (spec.model.arch == "unet") {
    const std::string why = core::CheckUNetOptions(UNetOptionsOf(spec, s.image));
    if (!why.empty())
      return absl::InvalidArgumentError(absl::StrCat("model: ", why, " (images are ", s.image.channels, "x",
                                                     s.image.height, "x", s.image.width, ")"));
  }
  return absl::OkStatus();
}

// Loads the spec's time series and builds its forecasting family (core/forecast_process.h).
absl::Status LoadSeries(const JobSpec& spec, const core::ImageDataPaths& paths, JobSetup& s) {
  core::SeriesOptions so;
  so.dataset = spec.problem.dataset;
  so.data_dir = paths.data_dir;
  so.context = spec.problem.context;
  so.horizon = spec.problem.horizon;
  so.columns = spec.problem.columns;
  so.log1p = spec.problem.log1p;
  so.test_start = spec.problem.test_start;
  so.eval_stride = spec.problem.eval_stride;
  so.seed = static_cast<uint64_t>(spec.train.seed);
  VSDM_ASSIGN_OR_RETURN(core::SeriesData data, core::LoadSeriesData(so));
  const int64_t n = static_cast<int64_t>(data.train_origins.size());
  if (n < spec.resources.trainers)
    return absl::InvalidArgumentError(absl::StrCat("problem.dataset: ", data.source, ": ", n,
                                                   " training windows, fewer than resources.trainers (",
                                                   spec.resources.trainers, ")"));
  auto series = std::make_shared<const core::SeriesData>(std::move(data));
  const int64_t H = series->horizon, D = series->dim();
  core::ForecastProcessOptions o;
  o.schedule = {spec.diffusion.beta_min, spec.diffusion.beta_max, spec.diffusion.beta_r};
  o.param = core::ParseParameterization(spec.model.parameterization);
  o.times_per_point = spec.train.times_per_point;
  o.horizon = H;
  o.context = series->context;
  o.series = D;
  o.covariates = series->covariates();
  if (spec.model.input_scaling) o.data_cov = series->TrainCovariance();
  torch::Tensor train_windows = series->Windows(series->train_origins);
  o.train_condition = train_windows.slice(1, H * D).contiguous();
  if (spec.variational.prior == "conditional") core::FitConditionalPrior(train_windows, o);
  o.value_mean = series->mean;
  o.value_std = series->std;
  std::vector<double> mask;
  for (bool b : series->log1p) mask.push_back(b ? 1.0 : 0.0);
  o.log1p = torch::tensor(mask, torch::kFloat64);
  s.series = std::move(series);
  s.train_items = n;
  s.family = core::MakeForecastFamily(o);
  return absl::OkStatus();
}

// The data's moments for the input scale (undefined when model.input_scaling is off).
core::DataMoments MomentsOf(const JobSpec& spec, const JobSetup& s) {
  core::DataMoments m;
  m.dim = s.dim();
  m.image = s.image;
  if (!spec.model.input_scaling) return m;
  if (s.images) {
    torch::Tensor x =
        s.images->train.images.slice(0, 0, s.train_items).reshape({s.train_items, -1}).to(torch::kFloat64);
    m.second_moment = (x * x).mean(0);
    return m;
  }
  torch::Generator g = MakeGenerator(spec, Stream::kDataCov);
  torch::Tensor x = s.dataset->Sample(20000, g).to(torch::kFloat64);
  torch::Tensor xc = x - x.mean(0, true);
  m.cov = torch::matmul(xc.t(), xc) / static_cast<double>(x.size(0) - 1);
  m.second_moment = (x * x).mean(0);
  return m;
}

}  // namespace

torch::Tensor JobSetup::TrainBatch(int64_t n, int64_t rank, int64_t world, int64_t step, torch::Generator& gen) const {
  if (!images && !series) return dataset->Sample(n, gen).to(device);  // drawn on the generator's device
  const uint64_t seed = static_cast<uint64_t>(spec.train.seed) * 1000003ULL + 0x5eedULL;
  core::EpochSampler sampler(train_items, world, rank, seed);
  torch::Tensor idx = sampler.Indices(step * n, n);
  if (series) {
    std::vector<int64_t> origins(n);
    const torch::Tensor picked = idx.to(torch::kInt64).contiguous();
    const int64_t* i = picked.data_ptr<int64_t>();
    for (int64_t k = 0; k < n; ++k) origins[k] = series->train_origins[i[k]];
    return ToDevice(series->Windows(origins), device);
  }
  // Small sets live on the device whole (train_on_device); the indices go up pinned.
  if (train_on_device.defined()) return train_on_device.index_select(0, ToDevice(idx, device)).reshape({n, -1});
  return ToDevice(images->train.images.index_select(0, idx).reshape({n, -1}), device);
}

core::ScoreNet JobSetup::MakeNet() const {
  // Initialisation draws from the global generator: see core::NetInitMutex.
  std::lock_guard<std::recursive_mutex> lock(core::NetInitMutex());
  torch::manual_seed(static_cast<uint64_t>(spec.train.seed));
  core::ScoreNetOptions o;
  o.arch = spec.model.arch;
  o.dim = family->net_in_dim();
  o.hidden = spec.model.hidden;
  o.out_dim = family->net_out_dim();
  if (o.arch == "unet") o.unet = UNetOptionsOf(spec, image);
  if (o.arch == "forecast")
    o.forecast = {series->horizon,      series->context,     series->dim(),
                  series->covariates(), spec.model.channels, spec.model.dropout};
  core::ScoreNet net(o);
  net->to(device);
  return net;
}

torch::Tensor ToDevice(const torch::Tensor& t, const torch::Device& device) {
  if (t.device() == device) return t;
  // A pageable host->device copy waits for the device; a pinned one is queued behind the step.
  if (device.is_cuda()) return t.pin_memory().to(device, /*non_blocking=*/true);
  return t.to(device);
}

core::VariationalUpdater JobSetup::MakeUpdater() const {
  return core::VariationalUpdater(InitialParam(), variational_options, family->Objective(variational_options));
}

// $VSDM_DATA_DIR (an installed or containerised vsdm-train, whose source tree is elsewhere),
// else the data/ of the source tree it was built from.
core::ImageDataPaths DefaultImageDataPaths() {
  core::ImageDataPaths paths;
#ifdef VSDM_DATA_DIR
  paths.data_dir = VSDM_DATA_DIR;
#endif
  if (const char* env = std::getenv("VSDM_DATA_DIR"); env && *env) paths.data_dir = env;
  return paths;
}

absl::StatusOr<JobSetup> MakeJobSetup(const JobSpec& spec) { return MakeJobSetup(spec, DefaultImageDataPaths()); }

absl::StatusOr<JobSetup> MakeJobSetup(const JobSpec& spec, const core::ImageDataPaths& paths) {
  JobSetup s;
  s.spec = spec;
  VSDM_ASSIGN_OR_RETURN(s.device, core::ParseDevice(spec.resources.device));
  VSDM_ASSIGN_OR_RETURN(s.trainer_options.precision, core::ParsePrecision(spec.train.precision));
  if (core::IsImageDataset(spec.problem.dataset)) {
    VSDM_RETURN_IF_ERROR(LoadImages(spec, paths, s));
  } else if (core::IsSeriesDataset(spec.problem.dataset)) {
    VSDM_RETURN_IF_ERROR(LoadSeries(spec, paths, s));
  } else {
    VSDM_ASSIGN_OR_RETURN(core::ToyDataset ds, core::ToyDataset::Create(spec.problem.dataset, spec.problem.scale));
    s.dataset = std::make_unique<core::ToyDataset>(std::move(ds));
  }
  constexpr int64_t kMaxDenseDim = 256;
  if (spec.variational.form == "full" && spec.method != "vsmd" && !s.series && s.dim() > kMaxDenseDim)
    return absl::InvalidArgumentError(absl::StrCat("variational.form: full keeps d x d matrices; d = ", s.dim(),
                                                   " is over ", kMaxDenseDim, ": use diagonal"));
  s.grid = {spec.diffusion.t_min, spec.diffusion.steps};
  s.trainer_options.param = core::ParseParameterization(spec.model.parameterization);
  s.trainer_options.lr = spec.train.lr;
  s.trainer_options.ema = spec.train.ema;
  s.trainer_options.times_per_point = spec.train.times_per_point;
  s.trainer_options.grad_clip = spec.train.grad_clip;
  s.learn_a = core::LearnsVariationalParam(spec);
  auto& v = s.variational_options;
  v.diagonal = spec.variational.form == "diagonal";
  v.update = spec.variational.update;
  v.interact = spec.variational.interact;
  v.lr = spec.variational.lr;
  v.decay = spec.variational.decay;
  v.d_min = spec.variational.d_min;
  v.adam_steps = spec.variational.adam_steps;
  v.seed = static_cast<int64_t>(spec.train.seed) + 17;
  if (!s.series) s.family = core::MakeProcessFamily(spec, MomentsOf(spec, s));
  // Image sets up to 1 GiB go to the device once (Fashion-MNIST's 60 000 images: 188 MB).
  constexpr int64_t kMaxDeviceSetBytes = int64_t{1} << 30;
  if (s.images && s.device.is_cuda() &&
      s.train_items * s.images->train.dim() * static_cast<int64_t>(sizeof(float)) <= kMaxDeviceSetBytes)
    s.train_on_device = s.images->train.images.slice(0, 0, s.train_items).to(s.device);
  return s;
}

}  // namespace vsdm::worker
