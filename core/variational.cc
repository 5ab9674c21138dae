#include "core/variational.h"

#include <cmath>

namespace vsdm::core {
namespace {
const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

// `s` with its tensors on `device` (the same tensors when they are there already).
VariationalStats StatsOn(const VariationalStats& s, const torch::Device& device) {
  VariationalStats out = s;
  for (torch::Tensor* x : {&out.sxx, &out.szx, &out.sbeta, &out.count})
    if (x->defined()) *x = x->to(device);
  return out;
}
}  // namespace

torch::Tensor VariationalStats::Flatten() const {
  const int64_t g = groups();
  return torch::cat({sxx.reshape({g, -1}), szx.reshape({g, -1}), sbeta.reshape({g, 1}), count.reshape({g, 1})}, 1)
      .reshape({-1});
}

VariationalStats VariationalStats::Unflatten(const torch::Tensor& flat, int64_t groups, int64_t dim, double dt) {
  torch::Tensor f = flat.to(torch::kFloat64).reshape({groups, 2 * dim * dim + 2});
  VariationalStats s;
  const int64_t dd = dim * dim;
  s.sxx = f.slice(1, 0, dd).reshape({groups, dim, dim}).clone();
  s.szx = f.slice(1, dd, 2 * dd).reshape({groups, dim, dim}).clone();
  s.sbeta = f.select(1, 2 * dd).clone();
  s.count = f.select(1, 2 * dd + 1).clone();
  s.dt = dt;
  return s;
}

VariationalStats ComputeVariationalStats(const KernelTable& tab, const ScoreFn& score_fn, const torch::Tensor& x_T,
                                         int64_t group_size, torch::Generator& gen) {
  torch::NoGradGuard no_grad;
  const int64_t K = x_T.size(0), d = x_T.size(1);
  const int64_t G = (K + group_size - 1) / group_size;
  const double h = tab.grid.Step();
  const auto f64 = kF64.device(x_T.device());
  // group id of each trajectory, as a one-hot [K, G] (float64) to reduce per group by matmul.
  torch::Tensor gid =
      torch::arange(K, torch::TensorOptions().dtype(torch::kLong).device(x_T.device())).div(group_size, "floor");
  torch::Tensor onehot = torch::nn::functional::one_hot(gid, G).to(torch::kFloat64);  // [K, G]

  VariationalStats s;
  s.sxx = torch::zeros({G, d, d}, f64);
  s.szx = torch::zeros({G, d, d}, f64);
  s.sbeta = torch::zeros({G}, f64);
  s.count = torch::zeros({G}, f64);
  s.dt = h;
  const torch::Tensor Dt = tab.D.t();
  const torch::Tensor At = tab.A.t();
  // beta(t_k) read to the host once per call, not once per step.
  const torch::Tensor beta_host = tab.beta.to(torch::kFloat64).cpu().contiguous();
  const double* beta_k = beta_host.data_ptr<double>();
  const auto noise = torch::TensorOptions().dtype(torch::kFloat32).device(gen.device());
  torch::Tensor x = x_T.clone();
  torch::Tensor counts = onehot.sum(0);  // trajectories per group
  for (int64_t k = tab.grid.steps; k >= 1; --k) {
    const double beta = beta_k[k];
    const double sb = std::sqrt(beta);
    torch::Tensor score = score_fn(x, k);
    torch::Tensor zb = sb * (score - torch::matmul(x, At));  // z_b = sqrt(beta)(s - A x)
    torch::Tensor x64 = x.to(torch::kFloat64), z64 = zb.to(torch::kFloat64);
    // sum_i over trajectories of group g of x_i x_i^T, z_i x_i^T.
    s.sxx += beta * torch::einsum("kg,ki,kj->gij", {onehot, x64, x64});
    s.szx += sb * torch::einsum("kg,ki,kj->gij", {onehot, z64, x64});
    s.sbeta += beta * counts;
    s.count += counts;
    // Euler-Maruyama step of the backward SDE (spec §4).
    torch::Tensor drift = beta * (0.5 * torch::matmul(x, Dt) + score);
    x = x + h * drift + std::sqrt(beta * h) * torch::randn(x.sizes(), gen, noise);
  }
  return s;
}

torch::Tensor VariationalGradient(const VariationalStats& s, const torch::Tensor& A, double zeta, bool diagonal,
                                  int64_t group) {
  torch::Tensor sxx = group < 0 ? s.sxx.sum(0) : s.sxx[group];
  torch::Tensor szx = group < 0 ? s.szx.sum(0) : s.szx[group];
  double sb = (group < 0 ? s.sbeta.sum() : s.sbeta[group]).item<double>();
  double n = (group < 0 ? s.count.sum() : s.count[group]).item<double>();
  const int64_t d = sxx.size(0);
  // grad L = (Delta/n) (A S_xx + S_zx + zeta S_beta I), spec §3.
  torch::Tensor g = diagonal ? torch::diag(torch::diag(A) * torch::diag(sxx) + torch::diag(szx) + zeta * sb)
                             : torch::matmul(A, sxx) + szx + zeta * sb * torch::eye(d, kF64.device(sxx.device()));
  return g * (s.dt / n);
}

torch::Tensor VariationalMinimizer(const VariationalStats& s, double zeta, bool diagonal) {
  torch::Tensor sxx = s.sxx.sum(0), szx = s.szx.sum(0);
  const double sb = s.sbeta.sum().item<double>();
  const int64_t d = sxx.size(0);
  torch::Tensor rhs = -(szx + zeta * sb * torch::eye(d, kF64.device(sxx.device())));
  if (diagonal) return torch::diag(torch::diag(rhs) / torch::diag(sxx));
  // A* = rhs S_xx^{-1}  <=>  S_xx^T A*^T = rhs^T.
  return torch::linalg_solve(sxx.t(), rhs.t()).t();
}

bool ProjectPositiveDefinite(torch::Tensor& A, double d_min, bool diagonal, double* min_eig_after) {
  const int64_t d = A.size(0);
  torch::Tensor eye = torch::eye(d, kF64.device(A.device()));
  torch::Tensor D = eye - 2.0 * A;
  if (diagonal) {
    torch::Tensor dd = torch::diag(D);
    bool bind = (dd < d_min).any().item<bool>();
    torch::Tensor clipped = dd.clamp_min(d_min);
    A = torch::diag(0.5 * (1.0 - clipped));
    if (min_eig_after) *min_eig_after = clipped.min().item<double>();
    return bind;
  }
  torch::Tensor sym = 0.5 * (D + D.t());
  torch::Tensor skew = 0.5 * (D - D.t());
  auto [evals, evecs] = torch::linalg_eigh(sym);
  bool bind = evals.min().item<double>() < d_min;
  if (bind) {
    torch::Tensor ev = evals.clamp_min(d_min);
    torch::Tensor sym2 = torch::matmul(evecs * ev.unsqueeze(0), evecs.t());
    A = 0.5 * (eye - (sym2 + skew));
    evals = ev;
  }
  if (min_eig_after) *min_eig_after = evals.min().item<double>();
  return bind;
}

namespace {
class LinearScoreObjective : public VariationalObjective {
 public:
  explicit LinearScoreObjective(const VariationalOptions& o) : o_(o) {}
  torch::Tensor Gradient(const VariationalStats& s, const torch::Tensor& A, int64_t group) const override {
    return VariationalGradient(s, A, o_.interact, o_.diagonal, group);
  }
  torch::Tensor Minimizer(const VariationalStats& s) const override {
    return VariationalMinimizer(s, o_.interact, o_.diagonal);
  }
  bool Project(torch::Tensor& A, double* floor_after) const override {
    return ProjectPositiveDefinite(A, o_.d_min, o_.diagonal, floor_after);
  }

 private:
  VariationalOptions o_;
};
}  // namespace

std::shared_ptr<const VariationalObjective> MakeLinearScoreObjective(const VariationalOptions& options) {
  return std::make_shared<LinearScoreObjective>(options);
}

VariationalUpdater::VariationalUpdater(int64_t dim, const VariationalOptions& options)
    : VariationalUpdater(torch::zeros({dim, dim}, kF64), options, MakeLinearScoreObjective(options)) {}

VariationalUpdater::VariationalUpdater(const torch::Tensor& initial, const VariationalOptions& options,
                                       std::shared_ptr<const VariationalObjective> objective)
    : options_(options),
      objective_(std::move(objective)),
      gen_(at::make_generator<at::CPUGeneratorImpl>(options.seed)) {
  A_ = initial.to(torch::kFloat64).clone();
  adam_m_ = torch::zeros_like(A_);
  adam_v_ = torch::zeros_like(A_);
}

UpdateInfo VariationalUpdater::Apply(const VariationalStats& stats_in) {
  const VariationalStats stats = StatsOn(stats_in, A_.device());  // statistics from any device
  UpdateInfo info;
  torch::Tensor grad = objective_->Gradient(stats, A_, -1);
  info.grad_norm = grad.norm().item<double>();
  info.a_star = objective_->Minimizer(stats);
  if (options_.update == "exact") {
    // Robbins-Monro average towards the round's minimiser: A <- (1 - rho) A + rho A*.
    const double rho = options_.lr;
    A_ = (1.0 - rho) * A_ + rho * info.a_star;
  } else if (options_.update == "sa") {
    const double eta = options_.lr * std::pow(static_cast<double>(round_ + 1), -options_.decay);
    A_ = A_ - eta * grad;
  } else {
    // AdamW (no weight decay) on minibatches = random trajectory groups.
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    for (int64_t i = 0; i < options_.adam_steps; ++i) {
      int64_t g = torch::randint(0, stats.groups(), {1}, gen_, torch::kLong).item<int64_t>();
      torch::Tensor gr = objective_->Gradient(stats, A_, g);
      ++adam_t_;
      adam_m_ = b1 * adam_m_ + (1 - b1) * gr;
      adam_v_ = b2 * adam_v_ + (1 - b2) * gr * gr;
      torch::Tensor mhat = adam_m_ / (1 - std::pow(b1, adam_t_));
      torch::Tensor vhat = adam_v_ / (1 - std::pow(b2, adam_t_));
      A_ = A_ - options_.lr * mhat / (vhat.sqrt() + eps);
    }
    if (options_.diagonal && A_.dim() == 2) A_ = torch::diag(torch::diag(A_));
  }
  info.projected = objective_->Project(A_, &info.min_eig_sym_d);
  ++round_;
  return info;
}

std::vector<torch::Tensor> VariationalUpdater::State() const {
  return {A_, adam_m_, adam_v_, torch::tensor({adam_t_, round_}, torch::kLong), gen_.get_state()};
}

void VariationalUpdater::LoadState(const std::vector<torch::Tensor>& state) {
  A_ = state.at(0).to(torch::kFloat64).clone();
  adam_m_ = state.at(1).to(torch::kFloat64).clone();
  adam_v_ = state.at(2).to(torch::kFloat64).clone();
  adam_t_ = state.at(3)[0].item<int64_t>();
  round_ = state.at(3)[1].item<int64_t>();
  if (state.size() > 4) gen_.set_state(state[4]);
}

}  // namespace vsdm::core
