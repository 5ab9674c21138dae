// The exact Gaussian transition kernel of the linear forward SDE dx = -1/2 beta D x dt +
// sqrt(beta) dW (spec §1): x_t | x_0 ~ N(M x_0, Sigma), computed in float64.
#pragma once

#include <torch/torch.h>

namespace vsdm::core {

// Moments of the kernel at one or many times. All float64.
struct KernelMoments {
  torch::Tensor mean;  // [..., d, d] mean matrix M_t
  torch::Tensor cov;   // [..., d, d] Sigma_t (symmetrised)
  torch::Tensor chol;  // [..., d, d] lower Cholesky factor L_t of Sigma_t
};

// Full D (any real d x d, not necessarily symmetric), at integrated times `B` ([n], float64):
// M = expm(-B/2 D); [C; H] = expm(B/2 [[-D, 2I], [0, D^T]]) [0; I]; Sigma = C H^-1 (spec §1).
// Returns tensors with a leading [n] dimension.
// REQUIRES: D is [d, d] float64; every B > 0.
KernelMoments OuKernelFull(const torch::Tensor& D, const torch::Tensor& B);

// Diagonal D = diag(dvec): m_i = exp(-d_i B/2), var_i = -expm1(-d_i B)/d_i (-> B as d_i -> 0),
// valid for negative d_i too. Returned as dense diagonal matrices [n, d, d] so that callers
// handle both forms alike.
KernelMoments OuKernelDiagonal(const torch::Tensor& dvec, const torch::Tensor& B);

// Per-axis variances var_i(B) of the diagonal kernel ([n, d]); the expm1 form of spec §1.
torch::Tensor DiagonalKernelVariance(const torch::Tensor& dvec, const torch::Tensor& B);

}  // namespace vsdm::core
