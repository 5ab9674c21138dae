#include "core/ou_kernel.h"

namespace vsdm::core {

KernelMoments OuKernelFull(const torch::Tensor& D, const torch::Tensor& B) {
  TORCH_CHECK(D.dim() == 2 && D.size(0) == D.size(1), "D must be square");
  const auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  const int64_t d = D.size(0);
  const int64_t n = B.numel();
  torch::Tensor Dd = D.to(torch::kFloat64);
  torch::Tensor half_b = (0.5 * B.to(torch::kFloat64)).reshape({n, 1, 1});
  torch::Tensor eye = torch::eye(d, opts);

  // Block generator P = [[-D, 2I], [0, D^T]], scaled by B/2 per time.
  torch::Tensor P = torch::zeros({2 * d, 2 * d}, opts);
  P.slice(0, 0, d).slice(1, 0, d).copy_(-Dd);
  P.slice(0, 0, d).slice(1, d, 2 * d).copy_(2.0 * eye);
  P.slice(0, d, 2 * d).slice(1, d, 2 * d).copy_(Dd.t());
  torch::Tensor E = torch::linalg_matrix_exp(half_b * P.unsqueeze(0));
  torch::Tensor C = E.slice(1, 0, d).slice(2, d, 2 * d);
  torch::Tensor H = E.slice(1, d, 2 * d).slice(2, d, 2 * d);
  // Sigma = C H^-1  <=>  H^T Sigma^T = C^T.
  torch::Tensor cov = torch::linalg_solve(H.transpose(1, 2), C.transpose(1, 2)).transpose(1, 2);
  cov = 0.5 * (cov + cov.transpose(1, 2));

  KernelMoments k;
  k.mean = torch::linalg_matrix_exp(-half_b * Dd.unsqueeze(0));
  k.cov = cov;
  k.chol = torch::linalg_cholesky(cov);
  return k;
}

torch::Tensor DiagonalKernelVariance(const torch::Tensor& dvec, const torch::Tensor& B) {
  torch::Tensor dv = dvec.to(torch::kFloat64).reshape({1, -1});
  torch::Tensor b = B.to(torch::kFloat64).reshape({-1, 1});
  torch::Tensor small = dv.abs() < 1e-12;
  torch::Tensor safe_d = torch::where(small, torch::ones_like(dv), dv);
  torch::Tensor var = -torch::expm1(-safe_d * b) / safe_d;
  // d -> 0: var = B (1 - dB/2 + ...); the series keeps full precision at tiny |d|.
  torch::Tensor series = b * (1.0 - 0.5 * dv * b);
  return torch::where(small, series.expand_as(var), var);
}

KernelMoments OuKernelDiagonal(const torch::Tensor& dvec, const torch::Tensor& B) {
  torch::Tensor dv = dvec.to(torch::kFloat64).reshape({1, -1});
  torch::Tensor b = B.to(torch::kFloat64).reshape({-1, 1});
  torch::Tensor m = torch::exp(-0.5 * dv * b);
  torch::Tensor var = DiagonalKernelVariance(dvec, B);
  KernelMoments k;
  k.mean = torch::diag_embed(m);
  k.cov = torch::diag_embed(var);
  k.chol = torch::diag_embed(var.sqrt());
  return k;
}

}  // namespace vsdm::core
