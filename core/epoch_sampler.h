// Which items of a finite dataset each data-parallel trainer reads (spec: finite datasets across
// trainers). Every epoch e the items are reshuffled by a permutation seeded by (seed, e) and cut
// into `world` disjoint shards of floor(N / world) items (the few left over sit out that epoch);
// trainer r reads its shard of epoch 0, then of epoch 1, ... as one stream. A batch is a pure
// function of (seed, world, rank, position in the stream), so a job resumed from a checkpoint at
// step k reads exactly what the uninterrupted job would have, mid-epoch included, with no state.
#pragma once

#include <cstdint>

#include <torch/torch.h>

namespace vsdm::core {

class EpochSampler {
 public:
  // REQUIRES: items >= world >= 1, 0 <= rank < world.
  EpochSampler(int64_t items, int64_t world, int64_t rank, uint64_t seed);

  // The `count` item indices ([count] int64) at stream positions [position, position + count).
  torch::Tensor Indices(int64_t position, int64_t count) const;
  // Epoch e's permutation of all items and this rank's shard of it.
  torch::Tensor Permutation(int64_t epoch) const;
  torch::Tensor Shard(int64_t epoch) const;

  int64_t shard_size() const { return shard_; }
  // The epoch that stream position `position` falls in.
  int64_t EpochOf(int64_t position) const { return position / shard_; }

 private:
  int64_t items_, world_, rank_, shard_;
  uint64_t seed_;
};

}  // namespace vsdm::core
