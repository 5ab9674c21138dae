// Sample-quality and transport metrics of spec §6. Inputs are [n, d] float tensors; all
// arithmetic is float64.
#pragma once

#include <torch/torch.h>

namespace vsdm::core {

// Energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'| (Euclidean; U-statistics within each set, i.e.
// the diagonal excluded). Computed in row blocks, O(block * n) memory.
double EnergyDistance(const torch::Tensor& x, const torch::Tensor& y);

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
