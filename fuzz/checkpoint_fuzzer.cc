// libFuzzer target: the checkpoint reader of core/checkpoint.h. The input is written as
// <scratch>/ckpt-00000001.pt and restored with LoadCheckpoint into a live state
// (fuzz/checkpoint_fuzz_state.h). The reader must return a Status for any bytes: never throw,
// abort or touch bad memory.
#include <cstddef>
#include <cstdint>

#include "core/checkpoint.h"
#include "fuzz/checkpoint_fuzz_state.h"
#include "fuzz/fuzz_util.h"
#include "fuzz/image_contract.h"

namespace {
vsdm::fuzz::CheckpointFuzzState& State() {
  static vsdm::fuzz::CheckpointFuzzState* state = new vsdm::fuzz::CheckpointFuzzState();  // never destroyed
  return *state;
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  vsdm::fuzz::InitTorchForFuzzing();
  State();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = vsdm::fuzz::Scratch().Write("ckpt-00000001.pt", data, size);
  absl::StatusOr<int64_t> round = vsdm::core::LoadCheckpoint(path, State().Refs());
  if (!round.ok()) vsdm::fuzz::Require(!round.status().message().empty(), "a refusal without a message");
  vsdm::fuzz::Scratch().Remove("ckpt-00000001.pt");
  return 0;
}
