#include "core/epoch_sampler.h"

#include <gtest/gtest.h>

#include <set>

namespace vsdm::core {
namespace {

std::set<int64_t> AsSet(const torch::Tensor& t) {
  std::set<int64_t> s;
  for (int64_t i = 0; i < t.numel(); ++i) s.insert(t[i].item<int64_t>());
  return s;
}

TEST(EpochSamplerTest, ShardsOfOneEpochAreDisjointAndCoverAllButTheRemainder) {
  const int64_t n = 100, world = 3;
  for (int64_t epoch : {0, 1, 7}) {
    std::set<int64_t> all;
    for (int64_t r = 0; r < world; ++r) {
      EpochSampler s(n, world, r, 42);
      std::set<int64_t> mine = AsSet(s.Shard(epoch));
      EXPECT_EQ(mine.size(), 33u);
      for (int64_t i : mine) EXPECT_TRUE(all.insert(i).second) << "item " << i << " in two shards";
    }
    EXPECT_EQ(all.size(), 99u);
  }
}

TEST(EpochSamplerTest, EveryEpochIsReshuffledAndTheStreamIsAPureFunctionOfThePosition) {
  EpochSampler s(50, 2, 1, 7), same(50, 2, 1, 7), other_seed(50, 2, 1, 8);
  EXPECT_FALSE(torch::equal(s.Permutation(0), s.Permutation(1)));
  EXPECT_TRUE(torch::equal(s.Permutation(3), same.Permutation(3)));
  EXPECT_FALSE(torch::equal(s.Permutation(3), other_seed.Permutation(3)));
  // Reading 7 at a time from position 0 equals reading any window directly, across epochs (25 per shard).
  std::vector<torch::Tensor> parts;
  for (int64_t p = 0; p < 70; p += 7) parts.push_back(s.Indices(p, 7));
  torch::Tensor stream = torch::cat(parts);
  EXPECT_TRUE(torch::equal(stream.slice(0, 20, 33), same.Indices(20, 13)));  // straddles epochs 0 and 1
  EXPECT_TRUE(torch::equal(stream.slice(0, 25, 50), s.Shard(1)));
  EXPECT_EQ(s.EpochOf(49), 1);
  EXPECT_EQ(s.EpochOf(50), 2);
}

}  // namespace
}  // namespace vsdm::core
