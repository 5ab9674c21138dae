// VSDM with a diagonal A held as vectors (spec §1-§3, the diagonal form): the kernel, its
// Cholesky factor (a standard deviation per coordinate), the prior, the DSM loss, the samplers
// and the variational statistics are all per coordinate, O(d) memory and time, with no d x d
// matrix anywhere (images: d = C H W = 784 ... 12 288). The dense path with `diagonal` set
// (core/diffusion.h, core/variational.h) computes the same numbers through d x d diagonal
// matrices; tests/core/diagonal_process_test.cc holds the two equal to 1e-10 in float64.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "core/beta_schedule.h"
#include "core/diffusion.h"
#include "core/process.h"
#include "core/sampler.h"
#include "core/score_model.h"
#include "core/score_net.h"
#include "core/variational.h"

namespace vsdm::core {

// Everything the loss and the samplers need at grid times for one diagonal A = diag(a).
// Tensors are `dtype` (float32 for training) unless noted; per-coordinate tables are [N+1, d].
struct DiagonalKernelTable {
  TimeGrid grid;
  std::vector<double> beta_host;  // [N+1] beta(t_k) on the host (no device read per step)
  torch::Tensor t;                // [N+1] grid times
  torch::Tensor beta;             // [N+1]
  torch::Tensor sqrt_beta;        // [N+1]
  torch::Tensor mean;             // [N+1, d] m_k = exp(-d_i B_k / 2)
  torch::Tensor std;              // [N+1, d] sigma_k = sqrt(var_i(B_k)) (the diagonal Cholesky factor)
  torch::Tensor inv_std;          // [N+1, d] 1 / sigma_k (the diagonal L^{-T})
  torch::Tensor input_scale;      // [N+1, d] 1 / sqrt(E x_t^2) per coordinate (EDM c_in); ones if off
  torch::Tensor a;                // [d] the variational score (A = diag(a))
  torch::Tensor dvec;             // [d] D = I - 2A as a vector
  torch::Tensor prior_std;        // [d] sigma_T: prior N(0, diag(sigma_T^2))
  torch::Tensor a64;              // [d] float64 copy of a
  torch::Tensor prior_var64;      // [d] float64 sigma_T^2

  int64_t dim() const { return a.size(0); }
  int64_t size() const { return t.size(0); }
  // Moves every defined tensor to `device`, dtypes kept; beta_host stays on the host.
  void MoveTo(const torch::Device& device);
};

// Builds the table for a ([d], float64). `second_moment` ([d] float64, may be undefined) is the
// data's E[x0^2] per coordinate for the input scale: E x_t^2 = m^2 E x0^2 + sigma^2. (The
// uncentred moment, so a pixel that is always -1 is scaled by about 1/m, not by 1/sigma.)
DiagonalKernelTable BuildDiagonalKernelTable(const BetaSchedule& schedule, const TimeGrid& grid, const torch::Tensor& a,
                                             const torch::Tensor& second_moment,
                                             torch::ScalarType dtype = torch::kFloat32);

// A ScoreNet read through a parameterisation under a diagonal table. Borrows both.
class DiagonalScoreModel {
 public:
  DiagonalScoreModel(ScoreNet& net, Parameterization param, const DiagonalKernelTable& table)
      : net_(net), param_(param), table_(table) {}
  // Raw net output for states x [B, d] at per-row grid indices idx [B].
  torch::Tensor OutputAtIndices(const torch::Tensor& x, const torch::Tensor& idx) const;
  torch::Tensor OutputAt(const torch::Tensor& x, int64_t k) const;
  // s(x, t_k): policy z/sqrt(beta) + a x; eps -eps_hat / sigma_k.
  torch::Tensor ScoreAt(const torch::Tensor& x, int64_t k) const;
  ScoreFn AsScoreFn() const;  // borrows this model

 private:
  ScoreNet& net_;
  Parameterization param_;
  const DiagonalKernelTable& table_;
};

// The DSM loss (spec §2, diagonal: x_t = m x0 + sigma eps, s* = -eps / sigma) of `net` for data
// x0 [B, d] with the draws given: grid indices idx [n] and noise eps [n, d], n = B * tpp.
torch::Tensor DiagonalDsmLoss(ScoreNet& net, Parameterization param, int64_t times_per_point, const torch::Tensor& x0,
                              const torch::Tensor& idx, const torch::Tensor& eps, const DiagonalKernelTable& table);

// n prior draws: N(0, diag(sigma_T^2)) when `adaptive`, else N(0, I). [n, d], the table's dtype.
torch::Tensor DiagonalPrior(const DiagonalKernelTable& table, int64_t n, bool adaptive, torch::Generator& gen);

// The samplers of spec §4 on the table's grid from x_T [n, d] to t_min (as core::Sample, with
// D applied elementwise). The SDE adds no noise on its last step. No autograd.
SampleResult DiagonalSample(const DiagonalKernelTable& table, const ScoreFn& score, const torch::Tensor& x_T,
                            Solver solver, torch::Generator& gen, bool keep_trajectory);

// Backward-SDE trajectories from x_T [K, d] reduced to the diagonal statistics of spec §3:
// sxx [G, d] = sum beta x^2, szx [G, d] = sum sqrt(beta) z_b x, sbeta [G], count [G] (float64).
VariationalStats DiagonalVariationalStats(const DiagonalKernelTable& table, const ScoreFn& score,
                                          const torch::Tensor& x_T, int64_t group_size, torch::Generator& gen);

// The spec §3 loss on the vector a, read from diagonal statistics: gradient (Delta/n)(a sxx + szx
// + zeta sbeta), minimiser -(szx + zeta sbeta)/sxx, projection 1 - 2a >= d_min elementwise.
std::shared_ptr<const VariationalObjective> MakeDiagonalObjective(double zeta, double d_min);

struct DiagonalProcessOptions {
  BetaSchedule schedule;
  Parameterization param = Parameterization::kEps;
  int64_t times_per_point = 1;
  torch::Tensor second_moment;  // [d] float64 for the input scale, or undefined
  ImageShape image;             // set for image data: the export's sample() returns images in [0, 1]
};
// The VSDM (and DSM, a = 0) family with a diagonal A as a vector: InitialParam() is zeros [d].
std::unique_ptr<ProcessFamily> MakeDiagonalVsdmFamily(int64_t dim, const DiagonalProcessOptions& o);

}  // namespace vsdm::core
