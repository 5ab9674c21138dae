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
#include "core/process.h"
#include "core/score_net.h"
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
  std::unique_ptr<core::ToyDataset> dataset;
  core::TimeGrid grid;
  core::DsmTrainerOptions trainer_options;
  core::VariationalOptions variational_options;
  bool learn_a = true;  // false for method dsm
  // The forward process (VSDM/DSM or VSMD): the one place the method matters.
  std::shared_ptr<const core::ProcessFamily> family;

  int64_t dim() const { return dataset->dim(); }
  // A fresh network initialised from the spec's seed (identical on every rank and thread).
  core::ScoreNet MakeNet() const;
  // The variational parameter at round 0 (A = 0 [d, d], or c [d] for VSMD; float64).
  torch::Tensor InitialParam() const { return family->InitialParam(); }
  // The forward process under parameter `phi` on the spec's grid.
  std::unique_ptr<core::Process> Process(const torch::Tensor& phi) const { return family->Make(phi, grid); }
  // The variational update rule, starting from InitialParam().
  core::VariationalUpdater MakeUpdater() const;
};

// INVALID_ARGUMENT when the spec names a dataset this build does not know; FAILED_PRECONDITION
// when it asks for resources.device cuda and no CUDA device is visible (vsdm-train: exit 2).
absl::StatusOr<JobSetup> MakeJobSetup(const JobSpec& spec);

}  // namespace vsdm::worker
