// Crash-safe checkpoints of a training run: everything one round needs to resume (network,
// EMA, optimiser, A and the update rule's state, round, RNG states), one file per checkpoint
// under a directory, written atomically (temp file, fsync, rename).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "core/dsm_trainer.h"
#include "core/variational.h"

namespace vsdm::core {

// What a checkpoint holds, by reference to the live objects (all must outlive the call).
struct TrainStateRefs {
  DsmTrainer* trainer = nullptr;              // may be null (variational-only state)
  VariationalUpdater* updater = nullptr;      // may be null
  std::vector<torch::Generator*> generators;  // saved and restored in order
  // Further named tensors (saved by value, restored in place by name: the pointee is replaced).
  std::vector<std::pair<std::string, torch::Tensor*>> extras;
};

// The checkpoint as bytes (what SaveCheckpoint writes; what a distributed job broadcasts).
absl::StatusOr<std::string> SerializeCheckpoint(int64_t round, const TrainStateRefs& state);
// Writes serialized checkpoint bytes as `dir`/ckpt-<round>.pt (atomic), keeping the newest `keep`.
absl::Status WriteCheckpointFile(const std::string& dir, int64_t round, const std::string& bytes, int keep = 2);
// Restores `state` from serialized bytes; returns the round. INVALID_ARGUMENT on a mismatch, and
// "corrupt checkpoint: <what>" (naming the zip entry) for bytes that are not an intact archive:
// truncated, damaged, or failing a CRC-32. Those are refused before LibTorch parses anything
// (Note [Checkpoint container check] in checkpoint.cc).
absl::StatusOr<int64_t> LoadCheckpointBytes(const std::string& bytes, const TrainStateRefs& state);

// Writes `dir`/ckpt-<round>.pt atomically (creating `dir`), then removes all but the newest
// `keep` checkpoints. `round` = number of completed rounds.
absl::Status SaveCheckpoint(const std::string& dir, int64_t round, const TrainStateRefs& state, int keep = 2);

// The newest complete checkpoint in `dir` (its round and path), or nullopt if there is none.
std::optional<std::pair<int64_t, std::string>> FindLatestCheckpoint(const std::string& dir);

// Restores `state` from `path`; returns the round it was saved at. INVALID_ARGUMENT "<path>: ..."
// when the file does not match the live objects (another model, another dimension) or is corrupt
// (as LoadCheckpointBytes says).
absl::StatusOr<int64_t> LoadCheckpoint(const std::string& path, const TrainStateRefs& state);

}  // namespace vsdm::core
