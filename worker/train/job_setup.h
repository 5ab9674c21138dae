// Builds the pieces of one job that every process role shares from a validated JobSpec: the
// dataset, time grid, forward-process family, network, trainer options and variational options. Deterministic in
// the spec's seed, so every rank constructs identical initial state.
#pragma once

#include <memory>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "common/job_spec.h"
#include "core/diffusion.h"
#include "core/dsm_trainer.h"
#include "core/image_data.h"
#include "core/process.h"
#include "core/score_net.h"
#include "core/series_data.h"
#include "core/toy_data.h"
#include "core/variational.h"

namespace vsdm::worker {

// Seeds of the independent random streams of a job (derived from train.seed).
enum class Stream : int64_t { kInit = 0, kData = 1, kTrain = 2, kVariational = 3, kEval = 4, kDataCov = 5 };
torch::Generator MakeGenerator(const JobSpec& spec, Stream s, int64_t rank = 0);
// The stream of one rank in one round: a pure function of (seed, stream, rank, round), so a
// distributed job resumed at round k draws exactly what the uninterrupted job would have.
torch::Generator MakeRoundGenerator(const JobSpec& spec, Stream s, int64_t rank, int64_t round);

struct JobSetup {
  JobSpec spec;
  std::unique_ptr<core::ToyDataset> dataset;      // 2-D toy sets (fresh points per draw), or null
  std::shared_ptr<const core::ImageData> images;  // image sets (finite, with a test split), or null
  core::ImageShape image;                         // the images' shape (zero for points)
  std::shared_ptr<const core::SeriesData> series; // time series (forecasting windows), or null
  torch::Tensor train_on_device;  // image jobs on a GPU: the training images, loaded there once
  int64_t train_items = 0;  // image jobs: the training images used (the first problem.train_limit, or all)
  std::string cache_dir;    // image jobs: where the feature net is cached (set by main; empty: no cache)
  int eval_threads = 0;     // image jobs: torch threads for the final evaluation (set by main; 0: as is)
  core::TimeGrid grid;
  // resources.device: where this rank's training math lives (the net, its optimiser state, the
  // batches, the kernel tables, A and the variational statistics). A rank sees one GPU
  // (CUDA_VISIBLE_DEVICES from its agent slot), so cuda means cuda:0 of the process.
  torch::Device device{torch::kCPU};
  core::DsmTrainerOptions trainer_options;
  core::VariationalOptions variational_options;
  bool learn_a = true;  // false for method dsm
  // The forward process (VSDM/DSM or VSMD): the one place the method matters.
  std::shared_ptr<const core::ProcessFamily> family;

  // The width of one training row: d for points and images, a packed window for series.
  int64_t dim() const {
    return images ? images->train.dim() : series ? series->packed_width() : dataset->dim();
  }
  // The batch of trainer `rank` of `world` at its `step`-th step since the job began: n rows
  // [n, dim] float32. Toy sets draw fresh points from `gen`; image sets read the rank's own
  // shard of a per-epoch shuffle (core/epoch_sampler.h), a pure function of the step, so a
  // resumed job reads what the uninterrupted one would have; series read packed training windows
  // the same way.
  torch::Tensor TrainBatch(int64_t n, int64_t rank, int64_t world, int64_t step, torch::Generator& gen) const;
  // A fresh network initialised from the spec's seed (identical on every rank and thread), on
  // `device` (initialised on the CPU first, so every device starts from the same weights).
  core::ScoreNet MakeNet() const;
  // float32 on `device`.
  torch::TensorOptions FloatOptions() const { return torch::TensorOptions().dtype(torch::kFloat32).device(device); }
  // The variational parameter at round 0 (A = 0 [d, d], or c [d] for VSMD; float64 on `device`).
  torch::Tensor InitialParam() const { return family->InitialParam().to(device); }
  // The forward process under parameter `phi` on the spec's grid, its tables on `device` (built
  // in float64 on the CPU: a few small tensors once a round).
  std::unique_ptr<core::Process> Process(const torch::Tensor& phi) const {
    return family->Make(phi, grid, device);
  }
  // The variational update rule, starting from InitialParam().
  core::VariationalUpdater MakeUpdater() const;
};

// `t` on `device` (as is when it is there): pinned and non-blocking to a GPU.
torch::Tensor ToDevice(const torch::Tensor& t, const torch::Device& device);

// INVALID_ARGUMENT when the spec names a dataset this build does not know or a file that cannot be
// read as one (the message names problem.dataset and the file), or a model that does not fit the
// data; FAILED_PRECONDITION when it asks for resources.device cuda and no CUDA device is visible
// (vsdm-train: exit 2). `paths`: where the built-in image sets live.
absl::StatusOr<JobSetup> MakeJobSetup(const JobSpec& spec, const core::ImageDataPaths& paths);
// The same with DefaultImageDataPaths() (tests, benchmarks).
absl::StatusOr<JobSetup> MakeJobSetup(const JobSpec& spec);
// core::ImageDataPaths' defaults with the source tree's data/ as data_dir.
core::ImageDataPaths DefaultImageDataPaths();

}  // namespace vsdm::worker
