// Data-parallel pieces of a trainer rank: how the global batch is split into shards, and the
// gradient all-reduce over flat buckets (one collective per bucket, not one per tensor).
#pragma once

#include <vector>

#include <torch/torch.h>

#include "absl/status/status.h"
#include "worker/train/comm.h"

namespace vsdm::worker {

// Data points of trainer `rank` out of a global batch of `batch` over `trainers` ranks (the
// first batch % trainers ranks take one more).
int64_t ShardSize(int64_t batch, int64_t trainers, int64_t rank);

// Flat float32 buckets over the gradients of a fixed parameter list (≈ bucket_bytes each,
// parameters kept whole, in order), on the parameters' device, with room for a few extra
// scalars (the loss) at the end.
class GradientBuckets {
 public:
  GradientBuckets(std::vector<torch::Tensor> params, int64_t bucket_bytes, int64_t extras = 1);

  // grads <- sum over ranks of (scale * grad); extras ([extras] float32 on the parameters'
  // device, scaled by the caller) likewise, in place. A missing gradient counts as zero. Nothing
  // is read on the host (Note [No host sync in a step], core/dsm_trainer.h).
  absl::Status AllReduce(Comm& comm, double scale, torch::Tensor& extras);

  int64_t buckets() const { return static_cast<int64_t>(buffers_.size()); }
  int64_t numel() const { return numel_; }

 private:
  std::vector<torch::Tensor> params_;
  std::vector<std::vector<size_t>> members_;  // parameter indices per bucket
  std::vector<torch::Tensor> buffers_;
  int64_t extras_ = 0, numel_ = 0;
};

// The all-reduced gradient of the mean loss over the global batch equals the sum over ranks of
// (shard / batch) * (gradient of the shard's mean loss): the weight a rank scales by.
inline double ShardWeight(int64_t batch, int64_t trainers, int64_t rank) {
  return static_cast<double>(ShardSize(batch, trainers, rank)) / static_cast<double>(batch);
}

}  // namespace vsdm::worker
