// The live training state the checkpoint fuzz target restores into, shared with the program that
// writes its seed (fuzz/write_checkpoint_seed.cc) so the seed matches it exactly: a 2-D "mlp"
// score net of width 8 with its EMA and AdamW state, a VSDM updater, one generator and one extra
// tensor (what a trainer rank holds).
#pragma once

#include <torch/torch.h>

#include "core/checkpoint.h"
#include "core/dsm_trainer.h"
#include "core/score_net.h"
#include "core/variational.h"

namespace vsdm::fuzz {

struct CheckpointFuzzState {
  static core::VariationalOptions UpdaterOptions() {
    core::VariationalOptions o;
    o.update = "sa";
    return o;
  }
  CheckpointFuzzState()
      : trainer(core::ScoreNet("mlp", 2, 8), {}),
        updater(2, UpdaterOptions()),
        gen(at::make_generator<at::CPUGeneratorImpl>(7)),
        a_train(torch::zeros({2, 2}, torch::kFloat64)) {}
  // REQUIRES: *this outlives the refs.
  core::TrainStateRefs Refs() { return {&trainer, &updater, {&gen}, {{"a_train", &a_train}}}; }

  core::DsmTrainer trainer;
  core::VariationalUpdater updater;
  torch::Generator gen;
  torch::Tensor a_train;
};

}  // namespace vsdm::fuzz
