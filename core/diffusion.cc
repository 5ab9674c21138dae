#include "core/diffusion.h"

#include "core/ou_kernel.h"

namespace vsdm::core {

void KernelTable::MoveTo(const torch::Device& device) {
  for (torch::Tensor* x :
       {&t, &beta, &sqrt_beta, &mean, &chol, &chol_inv_t, &input_scale, &A, &D, &prior_chol, &A64, &prior_cov64})
    if (x->defined()) *x = x->to(device);
}

KernelTable BuildKernelTable(const BetaSchedule& schedule, const TimeGrid& grid, const torch::Tensor& A,
                             const torch::Tensor& data_cov, torch::ScalarType dtype) {
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  const int64_t n = grid.steps + 1;
  std::vector<double> ts(n), betas(n), bints(n);
  for (int64_t k = 0; k < n; ++k) {
    ts[k] = grid.At(k);
    betas[k] = schedule.Beta(ts[k]);
    bints[k] = schedule.Integral(ts[k]);
  }
  torch::Tensor B = torch::tensor(bints, f64);

  const bool diagonal = A.dim() == 1;
  torch::Tensor A64 = diagonal ? torch::diag(A.to(torch::kFloat64)) : A.to(torch::kFloat64);
  const int64_t d = A64.size(0);
  torch::Tensor D64 = torch::eye(d, f64) - 2.0 * A64;
  KernelMoments km = diagonal ? OuKernelDiagonal(1.0 - 2.0 * A.to(torch::kFloat64), B) : OuKernelFull(D64, B);

  torch::Tensor marg_var = km.cov.diagonal(0, 1, 2);  // [n, d]
  if (data_cov.defined()) {
    torch::Tensor mcm = torch::matmul(torch::matmul(km.mean, data_cov.to(torch::kFloat64)), km.mean.transpose(1, 2));
    marg_var = marg_var + mcm.diagonal(0, 1, 2);
  }

  KernelTable tab;
  tab.grid = grid;
  tab.t = torch::tensor(ts, f64).to(dtype);
  tab.beta = torch::tensor(betas, f64).to(dtype);
  tab.sqrt_beta = torch::tensor(betas, f64).sqrt().to(dtype);
  tab.mean = km.mean.to(dtype);
  tab.chol = km.chol.to(dtype);
  torch::Tensor eye = torch::eye(d, f64).expand({n, d, d});
  // L^{-T}: solve L^T X = I.
  tab.chol_inv_t = torch::linalg_solve_triangular(km.chol.transpose(1, 2), eye, /*upper=*/true).to(dtype);
  tab.input_scale =
      data_cov.defined() ? marg_var.rsqrt().to(dtype) : torch::ones({n, d}, torch::TensorOptions().dtype(dtype));
  tab.A = A64.to(dtype);
  tab.D = D64.to(dtype);
  tab.A64 = A64;
  tab.prior_cov64 = km.cov[n - 1];
  tab.prior_chol = km.chol[n - 1].to(dtype);
  return tab;
}

}  // namespace vsdm::core
