// The momentum variant VSMD (spec §5, official-code-notes §7): a critically damped Langevin
// diffusion on z = (x, v), one independent 2x2 system per data coordinate, whose variational
// score a x + c v acts in the velocity drift:
//   dx_i = 1/2 beta v_i dt
//   dv_i = 1/2 beta [-x_i - gamma v_i + 2 gamma (a_i x_i + c_i v_i)] dt + sqrt(gamma beta) dW_i
// with constant beta. Only c is learned; a = a(c) is the critical-damping transform. Kernels
// are exact and computed in float64 (4x4 block exponential per coordinate), then cast.
#pragma once

#include <torch/torch.h>

#include "core/diffusion.h"
#include "core/sampler.h"
#include "core/score_net.h"
#include "core/variational.h"

namespace vsdm::core {

struct MomentumOptions {
  double beta = 10.0;    // constant beta
  double gamma = 2.0;    // friction
  double damping = 1.0;  // u: 1 critically damped, < 1 under-damped
};

// a(c) = [1 - gamma^2 (1 - 2c)^2 / (4u)] / (2 gamma), elementwise (any dtype).
torch::Tensor CriticalDampingA(const torch::Tensor& c, const MomentumOptions& o);
// da/dc = gamma (1 - 2c) / (2u).
torch::Tensor CriticalDampingADerivative(const torch::Tensor& c, const MomentumOptions& o);
// The drift matrices F_i = 1/2 beta [[0, 1], [-(1 - 2 gamma a_i), -gamma (1 - 2 c_i)]] ([d, 2, 2]).
torch::Tensor MomentumDriftMatrix(const torch::Tensor& c, const MomentumOptions& o);
// The double eigenvalue at critical damping, mu_i = -beta gamma (1 - 2 c_i) / 4 ([d]).
torch::Tensor CriticalEigenvalue(const torch::Tensor& c, const MomentumOptions& o);

// Kernel z_t | z_0 ~ N(mean z_0, cov) per coordinate, float64.
struct MomentumKernel {
  torch::Tensor mean;  // [n, d, 2, 2] e^{F t}
  torch::Tensor cov;   // [n, d, 2, 2] Sigma_t (symmetrised)
  torch::Tensor chol;  // [n, d, 2, 2] lower Cholesky factor of Sigma_t
};
// From the 4x4 block exponential E = expm([[F t, Q], [0, -(F t)^T]]), Q = diag(0, gamma beta t):
// mean = E[:2, :2], Sigma = E[:2, 2:] mean^T (Van Loan). c: [d] float64; t: [n] float64, > 0.
MomentumKernel ComputeMomentumKernel(const torch::Tensor& c, const torch::Tensor& t, const MomentumOptions& o);
// The closed form at critical damping (u = 1): e^{F t} = e^{mu t} (I + (F - mu I) t) ([n, d, 2, 2]).
torch::Tensor CriticalMeanClosedForm(const torch::Tensor& c, const torch::Tensor& t, const MomentumOptions& o);

// Everything the VSMD loss and samplers need at grid times, for one c. float32 unless noted.
// States are [B, 2d] with the velocity channels second: z = (x_1..x_d, v_1..v_d).
struct MomentumTable {
  MomentumOptions options;
  TimeGrid grid;
  torch::Tensor t;            // [N+1]
  torch::Tensor mean;         // [N+1, d, 2, 2]
  torch::Tensor chol;         // [N+1, d, 2, 2]
  torch::Tensor input_scale;  // [N+1, 2d] 1/std of (x_t, v_t) per channel; ones if disabled
  torch::Tensor a, c;         // [d]
  torch::Tensor a64, c64;     // [d] float64
  torch::Tensor prior_chol;   // [d, 2, 2] of Sigma_T
  torch::Tensor prior_cov64;  // [d, 2, 2] float64 Sigma_T

  int64_t dim() const { return c.size(0); }
  int64_t size() const { return t.size(0); }
  double beta() const { return options.beta; }
  double g2() const { return options.gamma * options.beta; }  // squared diffusion of v
  // Moves every defined tensor to `device`, dtypes kept (a no-op on the device they are on).
  void MoveTo(const torch::Device& device);
};

// `data_var` ([d] float64, may be undefined) is the per-coordinate data variance used for the
// input scale (v_0 ~ N(0, I) independent of x_0).
MomentumTable BuildMomentumTable(const MomentumOptions& o, const TimeGrid& grid, const torch::Tensor& c,
                                 const torch::Tensor& data_var);

// Raw network output eps_hat ([B, d]) for states z [B, 2d] at per-row grid indices idx [B].
torch::Tensor MomentumNetOutput(ScoreNet& net, const MomentumTable& tab, const torch::Tensor& z,
                                const torch::Tensor& idx);
// The velocity score s_v = -eps_hat / L_vv at grid index k, for states z [B, 2d].
torch::Tensor MomentumVelocityScore(ScoreNet& net, const MomentumTable& tab, const torch::Tensor& z, int64_t k);

// The perturbed state of data x0 [n, d], velocities v0 [n, d] and noise eps [n, d, 2] at grid
// indices idx [n]: z_t = e^{F t} (x0, v0) + L eps per coordinate, as [n, 2d].
torch::Tensor MomentumPerturb(const MomentumTable& tab, const torch::Tensor& x0, const torch::Tensor& v0,
                              const torch::Tensor& eps, const torch::Tensor& idx);
// The velocity-score loss (spec §5): mean (eps_hat - eps_v)^2, `times_per_point` draws per
// data point. Draws idx, v0, eps from `gen`. Differentiable in the net.
torch::Tensor MomentumLoss(ScoreNet& net, const MomentumTable& tab, const torch::Tensor& x0, int64_t times_per_point,
                           torch::Generator& gen);

// n states from the prior at T: N(0, Sigma_T) per coordinate WITH its x-v correlation
// (`adaptive`; the reference code drops it, official-code-notes §9.15a), or N(0, I_2d).
torch::Tensor MomentumPrior(const MomentumTable& tab, int64_t n, bool adaptive, torch::Generator& gen);

// Reverse-time integration from z_T [n, 2d] to t_min on the table's grid: Heun or Euler on the
// probability-flow ODE dx/dt = 1/2 beta v, dv/dt = 1/2 beta [-x - gamma v + gamma (2(a x + c v) - s_v)],
// or Euler-Maruyama on the reverse SDE (noise on v only, none on the last step). The result's x
// and trajectory hold the x channels; `v` the final velocities.
struct MomentumSampleResult : SampleResult {
  torch::Tensor v;
};
MomentumSampleResult MomentumSample(ScoreNet& net, const MomentumTable& tab, const torch::Tensor& z_T, Solver solver,
                                    torch::Generator& gen, bool keep_trajectory);

// Note [Stochastic Heun for the VSMD statistics]
// CLD at beta = 10 already carries data close to its prior, so the variational signal on c is
// small, and Euler-Maruyama's O(h) bias at the default N = 100 (a stiff v-drift near t_min,
// where s_v ~ -v/(gamma beta t), weighted like every other step because g^2 is constant)
// is larger than it. Measured in float64 with the exact score of Gaussian data at c = 0 (the
// round's minimiser c*, which should be ~0): EM N=100 +0.048 (var x0 = 1), +0.034 (5),
// EM N=1600 +0.004; stochastic Heun N=100 -0.002, -0.002. EM drove c to its floor within
// ~12 rounds; Heun (two net evaluations a step, weak order 2 for additive noise) does not.
// Reproduce the figures: python3 bench/vsmd_stats_bias.py.
// VSDM keeps Euler-Maruyama: its weight beta(t) vanishes where the drift is stiff.
//
// Simulates reverse-SDE trajectories from z_T (stochastic Heun) and accumulates, at every state before each step,
// the statistics of the variational loss (spec §3 on (a, c), g^2 = gamma beta):
//   sxx[g, i] = sum g^2 [x_i, v_i]^T [x_i, v_i]   ([G, d, 2, 2])
//   szx[g, i] = sum g z_b,i [x_i, v_i]             ([G, d, 2]),  z_b = g (s_v - (a x + c v))
//   sbeta[g] = sum g^2, count[g] = number of pairs.
VariationalStats MomentumVariationalStats(ScoreNet& net, const MomentumTable& tab, const torch::Tensor& z_T,
                                          int64_t group_size, torch::Generator& gen);

// The loss L(c) = (Delta/n) sum_i [1/2 (a, c) S_i (a, c)^T + (a, c) . R_i + zeta S_beta c_i] with
// a = a(c), per coordinate, and its derivative through the transform.
double MomentumVariationalLoss(const VariationalStats& s, const torch::Tensor& c, double zeta,
                               const MomentumOptions& o);

// The objective of the VSMD update for VariationalUpdater: the parameter is c ([d] float64);
// the floor keeps 1 - 2c >= d_min (a damped, stable process).
std::shared_ptr<const VariationalObjective> MakeMomentumObjective(const MomentumOptions& o, double zeta, double d_min);

}  // namespace vsdm::core
