#include "core/epoch_sampler.h"

#include <algorithm>
#include <vector>

namespace vsdm::core {

EpochSampler::EpochSampler(int64_t items, int64_t world, int64_t rank, uint64_t seed)
    : items_(items), world_(world), rank_(rank), shard_(items / world), seed_(seed) {
  TORCH_CHECK(world >= 1 && rank >= 0 && rank < world && items >= world, "EpochSampler: bad items/world/rank");
}

torch::Tensor EpochSampler::Permutation(int64_t epoch) const {
  // splitmix64 of (seed, epoch): independent permutations for neighbouring epochs.
  uint64_t x = seed_ ^ (0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(epoch + 1));
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  x ^= x >> 31;
  torch::Generator gen = at::make_generator<at::CPUGeneratorImpl>(x);
  return torch::randperm(items_, gen, torch::kLong);
}

torch::Tensor EpochSampler::Shard(int64_t epoch) const {
  return Permutation(epoch).slice(0, rank_ * shard_, (rank_ + 1) * shard_);
}

torch::Tensor EpochSampler::Indices(int64_t position, int64_t count) const {
  std::vector<torch::Tensor> parts;
  while (count > 0) {
    const int64_t epoch = position / shard_, offset = position % shard_;
    const int64_t take = std::min(count, shard_ - offset);
    parts.push_back(Shard(epoch).slice(0, offset, offset + take));
    position += take;
    count -= take;
  }
  return parts.empty() ? torch::empty({0}, torch::kLong) : torch::cat(parts);
}

}  // namespace vsdm::core
