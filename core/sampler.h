// Reverse-time samplers of spec §4: backward SDE (Euler-Maruyama) and the probability-flow
// ODE (Euler, Heun), stepping on the kernel table's grid from t_N = T to t_0 = t_min.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "core/score_model.h"

namespace vsdm::core {

enum class Solver { kEuler, kHeun, kSde };
Solver ParseSolver(const std::string& s);  // "euler" | "heun" | "sde"

struct SampleResult {
  torch::Tensor x;           // [n, d] the state at t_min
  torch::Tensor trajectory;  // [N+1, n, d] states at t_N, ..., t_0 (only when asked for)
};

// n draws from the prior at T: N(0, Sigma_T) when `adaptive`, else N(0, I).
torch::Tensor SamplePrior(const KernelTable& table, int64_t n, bool adaptive, torch::Generator& gen);

// The score s(x, t_k) at grid index k, for states x [n, d].
using ScoreFn = std::function<torch::Tensor(const torch::Tensor& x, int64_t k)>;
ScoreFn ScoreFnOf(const ScoreModel& model);  // borrows `model`

// The reverse-time loop of spec §4 shared by every linear-drift form: `apply_d(x)` is D x per row
// (x D^T for a dense D, x * d for a diagonal one), `beta` holds beta(t_k) for k = 0..N on `grid`.
// Noise is drawn in float32 and promoted. Runs without autograd.
SampleResult IntegrateReverse(const TimeGrid& grid, const std::vector<double>& beta,
                              const std::function<torch::Tensor(const torch::Tensor&)>& apply_d, const ScoreFn& score,
                              const torch::Tensor& x_T, Solver solver, torch::Generator& gen, bool keep_trajectory);

// Integrates from x_T ([n, d]) to t_min on `table`'s grid. The SDE adds no noise on its last
// step. Runs without autograd.
SampleResult Sample(const KernelTable& table, const ScoreFn& score, const torch::Tensor& x_T, Solver solver,
                    torch::Generator& gen, bool keep_trajectory);
inline SampleResult Sample(const ScoreModel& model, const torch::Tensor& x_T, Solver solver, torch::Generator& gen,
                           bool keep_trajectory) {
  return Sample(model.table(), ScoreFnOf(model), x_T, solver, gen, keep_trajectory);
}

}  // namespace vsdm::core
