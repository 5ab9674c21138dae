// Crash-safe checkpoints of a training run: everything one round needs to resume (network,
// EMA, optimiser, A and the update rule's state, round, RNG states), one file per checkpoint
// under a directory, written atomically (temp file, fsync, rename), bound to the job that wrote
// it and checked end to end when read (Note [Checkpoint identity and digest] in checkpoint.cc).
#pragma once

#include <functional>
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

// Whose checkpoint it is: the job's unique id (Job.uid) and the hash of the spec it trains
// (SpecHash). "" = unknown: a writer records it as such, a reader does not check it.
struct CheckpointIdentity {
  std::string job_uid;
  std::string spec_hash;
};

// The checkpoint as bytes (what SaveCheckpoint writes; what a distributed job broadcasts), with
// `id` and a digest of the state in its metadata.
absl::StatusOr<std::string> SerializeCheckpoint(int64_t round, const TrainStateRefs& state,
                                                const CheckpointIdentity& id = {});
// Writes serialized checkpoint bytes as `dir`/ckpt-<round>.pt (atomic), keeping the newest `keep`.
absl::Status WriteCheckpointFile(const std::string& dir, int64_t round, const std::string& bytes, int keep = 2);
// Restores `state` from serialized bytes; returns the round. All or nothing: on any error `state`
// is left as it was (everything is read, checked and staged before the first live object is
// written), so a caller can go on to an older checkpoint. Errors:
//   INVALID_ARGUMENT "corrupt checkpoint: <what>" (naming the zip entry) for bytes that are not
//     an intact archive: truncated, damaged, or failing a CRC-32, refused before LibTorch parses
//     anything (Note [Checkpoint container check] in checkpoint.cc); also for a state that does
//     not match its recorded digest;
//   FAILED_PRECONDITION "checkpoint of another job: ..." when `expect` names a job uid or a spec
//     hash and the checkpoint records another one, or none (written before job identities);
//   DATA_LOSS "checkpoint holds non-finite values: ..." for a NaN or Inf in the network, its EMA,
//     the optimiser state, A and the update rule's state, or an extra tensor;
//   INVALID_ARGUMENT "checkpoint does not match this job: ..." (another model, another dimension).
absl::StatusOr<int64_t> LoadCheckpointBytes(const std::string& bytes, const TrainStateRefs& state,
                                            const CheckpointIdentity& expect = {});

// Writes `dir`/ckpt-<round>.pt atomically (creating `dir`), then removes all but the newest
// `keep` checkpoints. `round` = number of completed rounds.
absl::Status SaveCheckpoint(const std::string& dir, int64_t round, const TrainStateRefs& state, int keep = 2,
                            const CheckpointIdentity& id = {});

// The newest complete checkpoint in `dir` (its round and path), or nullopt if there is none.
std::optional<std::pair<int64_t, std::string>> FindLatestCheckpoint(const std::string& dir);

// Restores `state` from `path`; returns the round it was saved at. The errors of
// LoadCheckpointBytes, their message prefixed with "<path>: ".
absl::StatusOr<int64_t> LoadCheckpoint(const std::string& path, const TrainStateRefs& state,
                                       const CheckpointIdentity& expect = {});

// The checkpoint a resume starts from (PickCheckpoint).
struct CheckpointPick {
  int64_t round = 0;  // 0 with an empty path: none was usable, start from round 0
  std::string path;   // the chosen file ("" for none)
  std::string bytes;  // its contents ("" for none)
  struct Skipped {
    std::string file;    // its name (ckpt-<round>.pt); renamed <file>.bad
    std::string reason;  // why: the load's (or the read's) error message
  };
  std::vector<Skipped> skipped;  // newest first
};

// Note [Resume from the newest good checkpoint]: tries the checkpoints of `dir` newest first,
// calling `load` on each file's bytes until one returns OK (the round it returns is the pick's);
// `load` must leave the live state untouched when it fails (LoadCheckpointBytes does). Every
// file it refuses (unreadable, corrupt, non-finite, another job's) is renamed <name>.bad, so no
// later attempt tries it again and nothing that lists ckpt-<round>.pt names (the agent's upload,
// pruning) sees it. Never fails: with no good checkpoint the job starts from round 0. (Only the
// newest was tried before, and a bad one failed every attempt until max_restarts was spent,
// although the previous checkpoint was intact.)
CheckpointPick PickCheckpoint(const std::string& dir,
                              const std::function<absl::StatusOr<int64_t>(const std::string& bytes)>& load);
// One line per skipped checkpoint, for the log: "skipped checkpoint ckpt-00000040.pt: <reason>;
// resuming from ckpt-00000030.pt" ("...; starting from round 0" when none was good).
std::vector<std::string> DescribeSkips(const CheckpointPick& pick);

}  // namespace vsdm::core
