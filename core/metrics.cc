#include "core/metrics.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace vsdm::core {

double PairDistanceSum(const torch::Tensor& a, const torch::Tensor& b, int64_t block_rows, int64_t block_cols) {
  TORCH_CHECK(block_rows > 0 && block_cols > 0, "PairDistanceSum: blocks must be non-empty");
  double total = 0.0;
  for (int64_t i = 0; i < a.size(0); i += block_rows) {
    torch::Tensor ai = a.slice(0, i, std::min(i + block_rows, a.size(0)));
    // One block per row chunk while b fits (the sum then is exactly the unchunked one); else
    // column chunks, their sums added in order.
    for (int64_t j = 0; j < b.size(0); j += block_cols) {
      torch::Tensor bj = b.slice(0, j, std::min(j + block_cols, b.size(0)));
      total += torch::cdist(ai, bj).sum().item<double>();
    }
  }
  return total;
}

double EnergyDistance(const torch::Tensor& x_in, const torch::Tensor& y_in) {
  torch::Tensor x = x_in.to(torch::kFloat64).contiguous(), y = y_in.to(torch::kFloat64).contiguous();
  const double n = x.size(0), m = y.size(0);
  const double xy = PairDistanceSum(x, y) / (n * m);
  const double xx = PairDistanceSum(x, x) / (n * (n - 1));  // diagonal terms are 0
  const double yy = PairDistanceSum(y, y) / (m * (m - 1));
  return 2.0 * xy - xx - yy;
}

double SlicedWasserstein1(const torch::Tensor& x_in, const torch::Tensor& y_in, int64_t projections,
                          torch::Generator& gen) {
  const int64_t n = std::min(x_in.size(0), y_in.size(0));
  torch::Tensor x = x_in.slice(0, 0, n).to(torch::kFloat64);
  torch::Tensor y = y_in.slice(0, 0, n).to(torch::kFloat64);
  torch::Tensor dirs = torch::randn({x.size(1), projections}, gen, torch::kFloat64);
  dirs = dirs / dirs.norm(2, 0, true);
  torch::Tensor px = std::get<0>(torch::sort(torch::matmul(x, dirs), 0));
  torch::Tensor py = std::get<0>(torch::sort(torch::matmul(y, dirs), 0));
  return (px - py).abs().mean().item<double>();
}

double PmfRmse(const torch::Tensor& real_in, const torch::Tensor& pred_in, int64_t bins) {
  torch::Tensor real = real_in.to(torch::kFloat64).contiguous();
  torch::Tensor pred = pred_in.to(torch::kFloat64).contiguous();
  double lo[2], hi[2];
  std::vector<double> edges[2];
  for (int a = 0; a < 2; ++a) {
    torch::Tensor col = real.select(1, a);
    lo[a] = col.min().item<double>() * 1.025;
    hi[a] = col.max().item<double>() * 1.025;
    // np.linspace(lo, hi, bins + 1)
    edges[a].resize(bins + 1);
    const double step = (hi[a] - lo[a]) / static_cast<double>(bins);
    for (int64_t i = 0; i <= bins; ++i) edges[a][i] = lo[a] + static_cast<double>(i) * step;
    edges[a][bins] = hi[a];
  }
  auto pmf = [&](const torch::Tensor& pts) {
    std::vector<double> H(bins * bins, 0.0);
    auto acc = pts.accessor<double, 2>();
    for (int64_t i = 0; i < pts.size(0); ++i) {
      int64_t idx[2];
      for (int a = 0; a < 2; ++a) {
        const double v = std::clamp(acc[i][a], lo[a], hi[a]);
        // np.digitize(v, edges) - 1 = (number of edges <= v) - 1, then clamped to bins - 1.
        int64_t j = std::upper_bound(edges[a].begin(), edges[a].end(), v) - edges[a].begin() - 1;
        idx[a] = std::clamp<int64_t>(j, 0, bins - 1);
      }
      H[idx[0] * bins + idx[1]] += 1.0;
    }
    double total = static_cast<double>(pts.size(0));
    for (double& h : H) h /= total;
    return H;
  };
  std::vector<double> hr = pmf(real), hp = pmf(pred);
  double se = 0.0;
  for (size_t i = 0; i < hr.size(); ++i) se += (hr[i] - hp[i]) * (hr[i] - hp[i]);
  return std::sqrt(se / static_cast<double>(hr.size()));
}

double Straightness(const torch::Tensor& traj_in) {
  torch::Tensor traj = traj_in.to(torch::kFloat64);
  torch::Tensor seg = (traj.slice(0, 1) - traj.slice(0, 0, -1)).norm(2, 2);  // [steps, n]
  torch::Tensor length = seg.sum(0);
  torch::Tensor chord = (traj[-1] - traj[0]).norm(2, 1);
  return length.mean().item<double>() / chord.mean().item<double>();
}

double TransportCost(const torch::Tensor& traj_in) {
  torch::Tensor traj = traj_in.to(torch::kFloat64);
  return (traj[-1] - traj[0]).pow(2).sum(1).mean().item<double>();
}

}  // namespace vsdm::core
