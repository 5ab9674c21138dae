// Writes the checkpoint fuzz target's seeds with the project's own writer (SerializeCheckpoint):
//   OUT_DIR/full-round-1.pt  the state the target restores into (fuzz/checkpoint_fuzz_state.h)
//                            after one training step, so every tensor is non-trivial;
//   OUT_DIR/rng-only.pt      a checkpoint of the generator alone (refused: it lacks the net).
// usage: vsdm_fuzz_write_checkpoint_seed OUT_DIR
#include <cstdio>
#include <filesystem>
#include <string>

#include "common/file_util.h"
#include "core/beta_schedule.h"
#include "core/checkpoint.h"
#include "core/diffusion.h"
#include "fuzz/checkpoint_fuzz_state.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  torch::manual_seed(1);
  vsdm::fuzz::CheckpointFuzzState state;
  const vsdm::core::KernelTable table = vsdm::core::BuildKernelTable(
      vsdm::core::BetaSchedule{}, {0.001, 20}, torch::zeros({2, 2}, torch::kFloat64), torch::Tensor());
  state.trainer.ComputeGradients(torch::randn({16, 2}, state.gen), state.gen, table);
  state.trainer.ApplyGradients();
  const std::pair<const char*, vsdm::core::TrainStateRefs> seeds[] = {
      {"full-round-1.pt", state.Refs()}, {"rng-only.pt", {nullptr, nullptr, {&state.gen}, {}}}};
  for (const auto& [name, refs] : seeds) {
    absl::StatusOr<std::string> bytes = vsdm::core::SerializeCheckpoint(1, refs);
    const std::string out = (std::filesystem::path(argv[1]) / name).string();
    const absl::Status written = bytes.ok() ? vsdm::AtomicWriteFile(out, *bytes) : bytes.status();
    if (!written.ok()) {
      std::fprintf(stderr, "%s: %s\n", out.c_str(), std::string(written.message()).c_str());
      return 1;
    }
    std::printf("%s: %zu bytes\n", out.c_str(), bytes->size());
  }
  return 0;
}
