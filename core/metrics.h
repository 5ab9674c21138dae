// Sample-quality and transport metrics of spec §6. Inputs are [n, d] float tensors; all
// arithmetic is float64.
#pragma once

#include <torch/torch.h>

namespace vsdm::core {

// Energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'| (Euclidean; U-statistics within each set, i.e.
// the diagonal excluded). Computed in distance blocks of at most kDistanceBlockRows x
// kDistanceBlockCols (128 MiB of float64) whatever n; O(n^2) time.
double EnergyDistance(const torch::Tensor& x, const torch::Tensor& y);

inline constexpr int64_t kDistanceBlockRows = 1024;
inline constexpr int64_t kDistanceBlockCols = 16384;
// The sum of the Euclidean distances between every row of `a` and every row of `b` (float64),
// block by block, no block larger than block_rows x block_cols. Below block_cols rows of `b`
// the sum is the same, bit for bit, as with unbounded columns.
double PairDistanceSum(const torch::Tensor& a, const torch::Tensor& b, int64_t block_rows = kDistanceBlockRows,
                       int64_t block_cols = kDistanceBlockCols);

// Sliced Wasserstein-1 over `projections` random unit directions (uses min(n_x, n_y) points of
// each set).
double SlicedWasserstein1(const torch::Tensor& x, const torch::Tensor& y, int64_t projections, torch::Generator& gen);

// The reference "RMSE of PMFs" (official-code-notes §5.4, spec/vectors/pmf.py): 100 x 100
// histogram on real's range widened by 2.5% (min*1.025, max*1.025), both sets clipped into it,
// normalised, RMSE over bins. 2-D only. Does not modify its inputs.
double PmfRmse(const torch::Tensor& real, const torch::Tensor& pred, int64_t bins = 100);

// E[path length] / E[|x_end - x_start|] over trajectories [steps+1, n, d] (1 = straight).
double Straightness(const torch::Tensor& trajectory);
// E|x_end - x_start|^2 over trajectories [steps+1, n, d].
double TransportCost(const torch::Tensor& trajectory);

}  // namespace vsdm::core
