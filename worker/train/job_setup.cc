#include "worker/train/job_setup.h"

#include "common/status_macros.h"

namespace vsdm::worker {

torch::Generator MakeGenerator(const JobSpec& spec, Stream s, int64_t rank) {
  const uint64_t seed = static_cast<uint64_t>(spec.train.seed) * 1000003ULL + static_cast<uint64_t>(s) * 7919ULL +
                        static_cast<uint64_t>(rank) * 104729ULL;
  return at::make_generator<at::CPUGeneratorImpl>(seed);
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
  return at::make_generator<at::CPUGeneratorImpl>(h);
}

core::ScoreNet JobSetup::MakeNet() const {
  // Initialisation draws from the global generator: see core::NetInitMutex.
  std::lock_guard<std::recursive_mutex> lock(core::NetInitMutex());
  torch::manual_seed(static_cast<uint64_t>(spec.train.seed));
  return core::ScoreNet(spec.model.arch, family->net_in_dim(), spec.model.hidden, family->net_out_dim());
}

core::VariationalUpdater JobSetup::MakeUpdater() const {
  return core::VariationalUpdater(InitialParam(), variational_options, family->Objective(variational_options));
}

absl::StatusOr<JobSetup> MakeJobSetup(const JobSpec& spec) {
  if (spec.resources.device == "cuda" && !torch::cuda::is_available())
    return absl::FailedPreconditionError("resources.device: cuda requested but no CUDA device");
  JobSetup s;
  s.spec = spec;
  VSDM_ASSIGN_OR_RETURN(core::ToyDataset ds, core::ToyDataset::Create(spec.problem.dataset, spec.problem.scale));
  s.dataset = std::make_unique<core::ToyDataset>(std::move(ds));
  s.grid = {spec.diffusion.t_min, spec.diffusion.steps};
  torch::Tensor data_cov;  // [d, d] float64 for the input scale, undefined when it is off
  if (spec.model.input_scaling) {
    torch::Generator g = MakeGenerator(spec, Stream::kDataCov);
    torch::Tensor x = s.dataset->Sample(20000, g).to(torch::kFloat64);
    torch::Tensor xc = x - x.mean(0, true);
    data_cov = torch::matmul(xc.t(), xc) / static_cast<double>(x.size(0) - 1);
  }
  s.trainer_options.param = core::ParseParameterization(spec.model.parameterization);
  s.trainer_options.lr = spec.train.lr;
  s.trainer_options.ema = spec.train.ema;
  s.trainer_options.times_per_point = spec.train.times_per_point;
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
  s.family = core::MakeProcessFamily(spec, s.dim(), data_cov);
  return s;
}

}  // namespace vsdm::worker
