// The time grid and the per-grid-time kernel tables that training and sampling share.
// Training draws times from the same grid the samplers step on (spec §2: consistent grid),
// so every quantity is precomputed once per A, in float64, then cast to float32 (spec §1).
#pragma once

#include <torch/torch.h>

#include "core/beta_schedule.h"

namespace vsdm::core {

// Grid t_k = t_min + k (T - t_min)/N, k = 0..N (T = 1). Samplers step from t_N to t_0 with
// the constant step h = (T - t_min)/N, so grid spacing and step size agree (unlike the
// reference code, official-code-notes §9.4).
struct TimeGrid {
  double t_min = 1e-3;
  int64_t steps = 100;  // N

  double T() const { return 1.0; }
  double Step() const { return (T() - t_min) / static_cast<double>(steps); }
  double At(int64_t k) const { return t_min + static_cast<double>(k) * Step(); }
};

// Everything the DSM loss and the samplers need at grid times, for one A. float32 unless noted.
struct KernelTable {
  TimeGrid grid;
  torch::Tensor t;            // [N+1] grid times
  torch::Tensor beta;         // [N+1] beta(t_k)
  torch::Tensor sqrt_beta;    // [N+1]
  torch::Tensor mean;         // [N+1, d, d] M_k
  torch::Tensor chol;         // [N+1, d, d] L_k (lower)
  torch::Tensor chol_inv_t;   // [N+1, d, d] L_k^{-T}
  torch::Tensor input_scale;  // [N+1, d] 1/std of x_t per axis (EDM c_in); ones if disabled
  torch::Tensor A;            // [d, d] the variational score matrix (dense even when diagonal)
  torch::Tensor D;            // [d, d] I - 2A
  torch::Tensor prior_chol;   // [d, d] L_T: prior N(0, Sigma_T)
  torch::Tensor A64;          // [d, d] float64 copy of A
  torch::Tensor prior_cov64;  // [d, d] float64 Sigma_T

  int64_t dim() const { return A.size(0); }
  int64_t size() const { return t.size(0); }
  // Moves every defined tensor to `device`, dtypes kept (a no-op on the device they are on).
  void MoveTo(const torch::Device& device);
};

// Builds the table for `A` (float64; [d, d] full, or [d] for the diagonal form).
// `data_cov` ([d, d] float64, may be undefined) is the data covariance used for the input
// scale: std of x_t per axis = sqrt(diag(M C0 M^T + Sigma)).
// `dtype`: the tables' type (float32 for training; float64 for the tests that compare paths).
KernelTable BuildKernelTable(const BetaSchedule& schedule, const TimeGrid& grid, const torch::Tensor& A,
                             const torch::Tensor& data_cov, torch::ScalarType dtype = torch::kFloat32);

}  // namespace vsdm::core
