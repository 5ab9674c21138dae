#include "core/sampler.h"

#include <cmath>

namespace vsdm::core {
namespace {
// Noise and prior draws are float32 on the generator's device (CPU draws unchanged).
torch::TensorOptions DrawOptions(const torch::Generator& gen) {
  return torch::TensorOptions().dtype(torch::kFloat32).device(gen.device());
}
}  // namespace

Solver ParseSolver(const std::string& s) {
  if (s == "euler") return Solver::kEuler;
  if (s == "sde") return Solver::kSde;
  return Solver::kHeun;
}

torch::Tensor SamplePrior(const KernelTable& table, int64_t n, bool adaptive, torch::Generator& gen) {
  torch::Tensor z = torch::randn({n, table.dim()}, gen, DrawOptions(gen));
  return adaptive ? torch::matmul(z, table.prior_chol.t()) : z;
}

ScoreFn ScoreFnOf(const ScoreModel& model) {
  return [&model](const torch::Tensor& x, int64_t k) { return model.ScoreAt(x, k); };
}

SampleResult IntegrateReverse(const TimeGrid& grid, const std::vector<double>& beta_k,
                              const std::function<torch::Tensor(const torch::Tensor&)>& apply_d, const ScoreFn& score,
                              const torch::Tensor& x_T, Solver solver, torch::Generator& gen, bool keep_trajectory) {
  torch::NoGradGuard no_grad;
  const int64_t N = grid.steps;
  const double h = grid.Step();
  std::vector<torch::Tensor> traj;
  torch::Tensor x = x_T.clone();
  if (keep_trajectory) traj.push_back(x);
  // Probability-flow drift in reverse time: dx/ds = 1/2 beta (D x + s(x, t)), s = T - t.
  auto ode_drift = [&](const torch::Tensor& y, int64_t k) { return 0.5 * beta_k[k] * (apply_d(y) + score(y, k)); };
  for (int64_t k = N; k >= 1; --k) {
    const double beta = beta_k[k];
    if (solver == Solver::kSde) {
      // x <- x + beta (1/2 D x + s) h + sqrt(beta h) xi.
      x = x + h * (beta * (0.5 * apply_d(x) + score(x, k)));
      if (k > 1) x = x + std::sqrt(beta * h) * torch::randn(x.sizes(), gen, DrawOptions(gen));
    } else if (solver == Solver::kEuler) {
      x = x + h * ode_drift(x, k);
    } else {
      torch::Tensor f0 = ode_drift(x, k);
      torch::Tensor xe = x + h * f0;
      x = x + 0.5 * h * (f0 + ode_drift(xe, k - 1));
    }
    if (keep_trajectory) traj.push_back(x);
  }
  SampleResult r;
  r.x = x;
  if (keep_trajectory) r.trajectory = torch::stack(traj, 0);
  return r;
}

SampleResult Sample(const KernelTable& tab, const ScoreFn& score, const torch::Tensor& x_T, Solver solver,
                    torch::Generator& gen, bool keep_trajectory) {
  torch::Tensor b = tab.beta.to(torch::kFloat64).contiguous().cpu();  // one host read per call
  const std::vector<double> beta(b.data_ptr<double>(), b.data_ptr<double>() + b.numel());
  const torch::Tensor Dt = tab.D.t();
  return IntegrateReverse(
      tab.grid, beta, [&Dt](const torch::Tensor& y) { return torch::matmul(y, Dt); }, score, x_T, solver, gen,
      keep_trajectory);
}

}  // namespace vsdm::core
