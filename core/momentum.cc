#include "core/momentum.h"

#include <cmath>
#include <limits>

namespace vsdm::core {
namespace {
const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);
const auto kF32 = torch::TensorOptions().dtype(torch::kFloat32);
const auto kLong = torch::TensorOptions().dtype(torch::kLong);

// Splits z [B, 2d] into x and v ([B, d] each).
std::pair<torch::Tensor, torch::Tensor> Split(const torch::Tensor& z) {
  const int64_t d = z.size(1) / 2;
  return {z.slice(1, 0, d), z.slice(1, d, 2 * d)};
}

// Per-coordinate pairs [n, d, 2] -> states [n, 2d] (x channels, then v channels).
torch::Tensor PairsToState(const torch::Tensor& pairs) {
  return torch::cat({pairs.select(2, 0), pairs.select(2, 1)}, 1);
}

// sqrt(var) N(0, 1) on the velocity channels of states like z, zero on x (drawn on gen's device).
torch::Tensor VelocityNoise(const torch::Tensor& z, double var, torch::Generator& gen) {
  const int64_t d = z.size(1) / 2;
  torch::Tensor noise = torch::zeros_like(z);
  noise.slice(1, d, 2 * d).copy_(std::sqrt(var) * torch::randn({z.size(0), d}, gen, kF32.device(gen.device())));
  return noise;
}
}  // namespace

void MomentumTable::MoveTo(const torch::Device& device) {
  for (torch::Tensor* x : {&t, &mean, &chol, &input_scale, &a, &c, &a64, &c64, &prior_chol, &prior_cov64})
    if (x->defined()) *x = x->to(device);
}

torch::Tensor CriticalDampingA(const torch::Tensor& c, const MomentumOptions& o) {
  torch::Tensor w = 1.0 - 2.0 * c;
  return (1.0 - o.gamma * o.gamma * w * w / (4.0 * o.damping)) / (2.0 * o.gamma);
}

torch::Tensor CriticalDampingADerivative(const torch::Tensor& c, const MomentumOptions& o) {
  return o.gamma * (1.0 - 2.0 * c) / (2.0 * o.damping);
}

torch::Tensor MomentumDriftMatrix(const torch::Tensor& c, const MomentumOptions& o) {
  torch::Tensor c64 = c.to(torch::kFloat64);
  torch::Tensor a = CriticalDampingA(c64, o);
  const int64_t d = c64.size(0);
  torch::Tensor F = torch::zeros({d, 2, 2}, kF64.device(c64.device()));
  F.select(1, 0).select(1, 1).fill_(0.5 * o.beta);
  F.select(1, 1).select(1, 0).copy_(-0.5 * o.beta * (1.0 - 2.0 * o.gamma * a));
  F.select(1, 1).select(1, 1).copy_(-0.5 * o.beta * o.gamma * (1.0 - 2.0 * c64));
  return F;
}

torch::Tensor CriticalEigenvalue(const torch::Tensor& c, const MomentumOptions& o) {
  return -o.beta * o.gamma * (1.0 - 2.0 * c.to(torch::kFloat64)) / 4.0;
}

MomentumKernel ComputeMomentumKernel(const torch::Tensor& c, const torch::Tensor& t, const MomentumOptions& o) {
  const int64_t n = t.size(0), d = c.size(0);
  torch::Tensor F = MomentumDriftMatrix(c, o);  // [d, 2, 2]
  torch::Tensor tt = t.to(torch::kFloat64).reshape({n, 1, 1, 1});
  torch::Tensor Ft = F.unsqueeze(0) * tt;  // [n, d, 2, 2] = int_0^t F
  // Van Loan: expm([[F t, Q], [0, -(F t)^T]]) = [[e^{Ft}, G], [0, e^{-F^T t}]], Sigma = G e^{F^T t}.
  torch::Tensor P = torch::zeros({n, d, 4, 4}, kF64.device(F.device()));
  P.slice(2, 0, 2).slice(3, 0, 2).copy_(Ft);
  P.slice(2, 2, 4).slice(3, 2, 4).copy_(-Ft.transpose(2, 3));
  P.select(2, 1).select(2, 3).copy_((o.gamma * o.beta) * t.to(torch::kFloat64).reshape({n, 1}).expand({n, d}));
  torch::Tensor E = torch::linalg_matrix_exp(P.reshape({n * d, 4, 4})).reshape({n, d, 4, 4});
  MomentumKernel k;
  k.mean = E.slice(2, 0, 2).slice(3, 0, 2).contiguous();
  torch::Tensor S = torch::matmul(E.slice(2, 0, 2).slice(3, 2, 4), k.mean.transpose(2, 3));
  k.cov = 0.5 * (S + S.transpose(2, 3));
  k.chol = torch::linalg_cholesky(k.cov);
  return k;
}

torch::Tensor CriticalMeanClosedForm(const torch::Tensor& c, const torch::Tensor& t, const MomentumOptions& o) {
  const int64_t n = t.size(0);
  torch::Tensor F = MomentumDriftMatrix(c, o).unsqueeze(0);  // [1, d, 2, 2]
  torch::Tensor mu = CriticalEigenvalue(c, o).reshape({1, -1, 1, 1});
  torch::Tensor tt = t.to(torch::kFloat64).reshape({n, 1, 1, 1});
  torch::Tensor eye = torch::eye(2, kF64.device(F.device())).reshape({1, 1, 2, 2});
  return torch::exp(mu * tt) * (eye + (F - mu * eye) * tt);
}

MomentumTable BuildMomentumTable(const MomentumOptions& o, const TimeGrid& grid, const torch::Tensor& c,
                                 const torch::Tensor& data_var) {
  const int64_t n = grid.steps + 1;
  std::vector<double> ts(n);
  for (int64_t k = 0; k < n; ++k) ts[k] = grid.At(k);
  torch::Tensor t64 = torch::tensor(ts, kF64);
  torch::Tensor c64 = c.to(torch::kFloat64).reshape({-1}).clone();
  const int64_t d = c64.size(0);
  MomentumKernel km = ComputeMomentumKernel(c64, t64, o);

  MomentumTable tab;
  tab.options = o;
  tab.grid = grid;
  tab.t = t64.to(torch::kFloat32);
  tab.mean = km.mean.to(torch::kFloat32);
  tab.chol = km.chol.to(torch::kFloat32);
  if (data_var.defined()) {
    // Var(z_t) = e^{Ft} diag(var x0, 1) e^{Ft}^T + Sigma_t, per coordinate.
    torch::Tensor c0 = torch::zeros({d, 2, 2}, kF64);
    c0.select(1, 0).select(1, 0).copy_(data_var.to(torch::kFloat64).reshape({-1}));
    c0.select(1, 1).select(1, 1).fill_(1.0);
    torch::Tensor var = torch::matmul(torch::matmul(km.mean, c0.unsqueeze(0)), km.mean.transpose(2, 3)) + km.cov;
    torch::Tensor diag = var.diagonal(0, 2, 3);  // [n, d, 2]
    tab.input_scale = torch::cat({diag.select(2, 0), diag.select(2, 1)}, 1).rsqrt().to(torch::kFloat32);
  } else {
    tab.input_scale = torch::ones({n, 2 * d}, torch::kFloat32);
  }
  tab.c64 = c64;
  tab.a64 = CriticalDampingA(c64, o);
  tab.c = c64.to(torch::kFloat32);
  tab.a = tab.a64.to(torch::kFloat32);
  tab.prior_cov64 = km.cov[n - 1].clone();
  tab.prior_chol = km.chol[n - 1].to(torch::kFloat32);
  return tab;
}

torch::Tensor MomentumNetOutput(ScoreNet& net, const MomentumTable& tab, const torch::Tensor& z,
                                const torch::Tensor& idx) {
  torch::Tensor tf = net->TimeFeatures(tab.t).index_select(0, idx);
  return net->ForwardFeatures(z * tab.input_scale.index_select(0, idx), tf);
}

torch::Tensor MomentumVelocityScore(ScoreNet& net, const MomentumTable& tab, const torch::Tensor& z, int64_t k) {
  torch::Tensor tf = net->TimeFeatures(tab.t.slice(0, k, k + 1));
  torch::Tensor eps_hat = net->ForwardFeatures(z * tab.input_scale[k], tf);
  return -eps_hat / tab.chol[k].select(1, 1).select(1, 1);  // L_vv per coordinate
}

torch::Tensor MomentumPerturb(const MomentumTable& tab, const torch::Tensor& x0, const torch::Tensor& v0,
                              const torch::Tensor& eps, const torch::Tensor& idx) {
  torch::Tensor m = tab.mean.index_select(0, idx);  // [n, d, 2, 2]
  torch::Tensor L = tab.chol.index_select(0, idx);
  torch::Tensor z0 = torch::stack({x0, v0}, 2);  // [n, d, 2]
  return PairsToState(torch::matmul(m, z0.unsqueeze(3)).squeeze(3) + torch::matmul(L, eps.unsqueeze(3)).squeeze(3));
}

torch::Tensor MomentumLoss(ScoreNet& net, const MomentumTable& tab, const torch::Tensor& x0_in, int64_t times_per_point,
                           torch::Generator& gen) {
  torch::Tensor x0 = times_per_point > 1 ? x0_in.repeat_interleave(times_per_point, 0) : x0_in;
  const int64_t n = x0.size(0), d = x0.size(1);
  const torch::Device dev = gen.device();
  torch::Tensor idx = torch::randint(0, tab.size(), {n}, gen, kLong.device(dev));
  torch::Tensor v0 = torch::randn({n, d}, gen, kF32.device(dev));  // v_0 ~ N(0, I)
  torch::Tensor eps = torch::randn({n, d, 2}, gen, kF32.device(dev));
  torch::Tensor zt = MomentumPerturb(tab, x0, v0, eps, idx);
  // The kernel's velocity score is -eps_v / L_vv, so eps_hat regresses on eps_v.
  return torch::mse_loss(MomentumNetOutput(net, tab, zt, idx), eps.select(2, 1));
}

torch::Tensor MomentumPrior(const MomentumTable& tab, int64_t n, bool adaptive, torch::Generator& gen) {
  const int64_t d = tab.dim();
  torch::Tensor eps = torch::randn({n, d, 2}, gen, kF32.device(gen.device()));
  if (!adaptive) return PairsToState(eps);
  return PairsToState(torch::matmul(tab.prior_chol.unsqueeze(0), eps.unsqueeze(3)).squeeze(3));  // L eps
}

namespace {
// Forward-time drift of the probability-flow ODE (sde = false) or of the reverse SDE's drift
// term (sde = true: the score enters twice as strongly), for states z at grid index k.
torch::Tensor MomentumDriftGivenScore(const MomentumTable& tab, const torch::Tensor& z, const torch::Tensor& s,
                                      bool sde) {
  auto [x, v] = Split(z);
  const double hb = 0.5 * tab.beta(), gam = tab.options.gamma;
  torch::Tensor fx = hb * v;
  torch::Tensor fv = hb * (-x - gam * v + 2.0 * gam * (tab.a * x + tab.c * v) - (sde ? 2.0 : 1.0) * gam * s);
  return torch::cat({fx, fv}, 1);
}
torch::Tensor MomentumDrift(ScoreNet& net, const MomentumTable& tab, const torch::Tensor& z, int64_t k, bool sde) {
  return MomentumDriftGivenScore(tab, z, MomentumVelocityScore(net, tab, z, k), sde);
}
}  // namespace

MomentumSampleResult MomentumSample(ScoreNet& net, const MomentumTable& tab, const torch::Tensor& z_T, Solver solver,
                                    torch::Generator& gen, bool keep_trajectory) {
  torch::NoGradGuard no_grad;
  const int64_t N = tab.grid.steps, d = tab.dim();
  const double h = tab.grid.Step();
  std::vector<torch::Tensor> traj;
  torch::Tensor z = z_T.clone();
  if (keep_trajectory) traj.push_back(z.slice(1, 0, d));
  for (int64_t k = N; k >= 1; --k) {
    if (solver == Solver::kSde) {
      z = z - h * MomentumDrift(net, tab, z, k, /*sde=*/true);
      if (k > 1) z = z + VelocityNoise(z, tab.g2() * h, gen);
    } else if (solver == Solver::kEuler) {
      z = z - h * MomentumDrift(net, tab, z, k, false);
    } else {
      torch::Tensor f0 = MomentumDrift(net, tab, z, k, false);
      torch::Tensor ze = z - h * f0;
      z = z - 0.5 * h * (f0 + MomentumDrift(net, tab, ze, k - 1, false));
    }
    if (keep_trajectory) traj.push_back(z.slice(1, 0, d));
  }
  MomentumSampleResult r;
  r.x = z.slice(1, 0, d).contiguous();
  r.v = z.slice(1, d, 2 * d).contiguous();
  if (keep_trajectory) r.trajectory = torch::stack(traj, 0);
  return r;
}

VariationalStats MomentumVariationalStats(ScoreNet& net, const MomentumTable& tab, const torch::Tensor& z_T,
                                          int64_t group_size, torch::Generator& gen) {
  torch::NoGradGuard no_grad;
  const int64_t K = z_T.size(0), d = tab.dim();
  const int64_t G = (K + group_size - 1) / group_size;
  const double h = tab.grid.Step();
  const double g2 = tab.g2(), g = std::sqrt(g2);
  const auto f64 = kF64.device(z_T.device());
  torch::Tensor gid = torch::arange(K, kLong.device(z_T.device())).div(group_size, "floor");
  torch::Tensor onehot = torch::nn::functional::one_hot(gid, G).to(torch::kFloat64);  // [K, G]
  torch::Tensor counts = onehot.sum(0);

  VariationalStats s;
  s.sxx = torch::zeros({G, d, 2, 2}, f64);
  s.szx = torch::zeros({G, d, 2}, f64);
  s.sbeta = torch::zeros({G}, f64);
  s.count = torch::zeros({G}, f64);
  s.dt = h;
  torch::Tensor z = z_T.clone();
  for (int64_t k = tab.grid.steps; k >= 1; --k) {
    auto [x, v] = Split(z);
    torch::Tensor sv = MomentumVelocityScore(net, tab, z, k);
    torch::Tensor zb = g * (sv - (tab.a * x + tab.c * v));          // backward policy
    torch::Tensor w = torch::stack({x, v}, 2).to(torch::kFloat64);  // [K, d, 2]
    s.sxx += g2 * torch::einsum("kg,kia,kib->giab", {onehot, w, w});
    s.szx += g * torch::einsum("kg,ki,kia->gia", {onehot, zb.to(torch::kFloat64), w});
    s.sbeta += g2 * counts;
    s.count += counts;
    // Stochastic Heun step of the reverse SDE (noise on v only; additive, so the predictor and
    // corrector share one increment). Euler-Maruyama's O(h) bias at N = 100 is larger than the
    // signal here: with the exact score at c = 0 it moves the round's minimiser by ~+0.04 (it
    // drifts c to the floor), Heun by ~0.002 (Note in momentum.h).
    torch::Tensor noise = VelocityNoise(z, g2 * h, gen);
    torch::Tensor f0 = MomentumDriftGivenScore(tab, z, sv, /*sde=*/true);
    torch::Tensor zp = z - h * f0 + noise;
    z = z - 0.5 * h * (f0 + MomentumDrift(net, tab, zp, k - 1, /*sde=*/true)) + noise;
  }
  return s;
}

namespace {

// Per-coordinate pieces of the loss over all groups (group < 0) or one group, scaled by Delta/n:
// S [d, 2, 2], R [d, 2], sb (scalar).
struct Moments {
  torch::Tensor S, R;
  double sb;
};
Moments Reduce(const VariationalStats& s, int64_t group) {
  torch::Tensor S = group < 0 ? s.sxx.sum(0) : s.sxx[group];
  torch::Tensor R = group < 0 ? s.szx.sum(0) : s.szx[group];
  const double sb = (group < 0 ? s.sbeta.sum() : s.sbeta[group]).item<double>();
  const double n = (group < 0 ? s.count.sum() : s.count[group]).item<double>();
  const double w = s.dt / n;
  return {S * w, R * w, sb * w};
}

// The entries of moments m (S [..., 2, 2], R [..., 2]).
struct Entries {
  torch::Tensor Sxx, Sxv, Svv, Rx, Rv;
  explicit Entries(const Moments& m)
      : Sxx(m.S.select(-2, 0).select(-1, 0)),
        Sxv(m.S.select(-2, 0).select(-1, 1)),
        Svv(m.S.select(-2, 1).select(-1, 1)),
        Rx(m.R.select(-1, 0)),
        Rv(m.R.select(-1, 1)) {}
};

// L_i(a, c) per coordinate for moments m (already scaled).
torch::Tensor LossPerCoordinate(const Moments& m, const torch::Tensor& a, const torch::Tensor& c, double zeta) {
  const auto [Sxx, Sxv, Svv, Rx, Rv] = Entries(m);
  return 0.5 * (a * a * Sxx + 2.0 * a * c * Sxv + c * c * Svv) + a * Rx + c * Rv + zeta * m.sb * c;
}

// dL_i/dc through a(c).
torch::Tensor LossDerivative(const Moments& m, const torch::Tensor& c, double zeta, const MomentumOptions& o) {
  torch::Tensor a = CriticalDampingA(c, o);
  const auto [Sxx, Sxv, Svv, Rx, Rv] = Entries(m);
  torch::Tensor dLda = a * Sxx + c * Sxv + Rx;
  torch::Tensor dLdc = a * Sxv + c * Svv + Rv + zeta * m.sb;
  return dLdc + CriticalDampingADerivative(c, o) * dLda;
}

class MomentumObjective : public VariationalObjective {
 public:
  MomentumObjective(const MomentumOptions& o, double zeta, double d_min) : o_(o), zeta_(zeta), d_min_(d_min) {}

  double c_max() const { return 0.5 * (1.0 - d_min_); }

  torch::Tensor Gradient(const VariationalStats& s, const torch::Tensor& c, int64_t group) const override {
    return LossDerivative(Reduce(s, group), c.to(torch::kFloat64), zeta_, o_);
  }

  // L_i(c) is a quartic with a positive leading term (a(c) is quadratic): scan [c_lo, c_max] on
  // a grid, then golden-section search in the best cell. Exact to ~1e-13 in c.
  torch::Tensor Minimizer(const VariationalStats& s) const override {
    const Moments m = Reduce(s, -1);
    const int64_t d = m.S.size(0);
    const double lo = kCLow, hi = c_max();
    const int64_t cells = 4000;
    const auto f64 = kF64.device(m.S.device());
    torch::Tensor grid = torch::linspace(lo, hi, cells + 1, f64);  // [C]
    torch::Tensor cg = grid.unsqueeze(1).expand({cells + 1, d});   // [C, d]
    Moments mb{m.S.unsqueeze(0), m.R.unsqueeze(0), m.sb};
    torch::Tensor L = LossPerCoordinate(mb, CriticalDampingA(cg, o_), cg, zeta_);  // [C, d]
    torch::Tensor best = L.argmin(0);
    torch::Tensor out = torch::empty({d}, f64);
    const double cell = (hi - lo) / static_cast<double>(cells);
    for (int64_t i = 0; i < d; ++i) {
      const Moments mi{m.S.slice(0, i, i + 1), m.R.slice(0, i, i + 1), m.sb};
      auto f = [&](double c) {
        torch::Tensor ct = torch::full({1}, c, f64);
        return LossPerCoordinate(mi, CriticalDampingA(ct, o_), ct, zeta_).item<double>();
      };
      const double centre = grid[best[i].item<int64_t>()].item<double>();
      double a = std::max(lo, centre - cell), b = std::min(hi, centre + cell);
      const double r = 0.5 * (std::sqrt(5.0) - 1.0);
      double x1 = b - r * (b - a), x2 = a + r * (b - a), f1 = f(x1), f2 = f(x2);
      for (int it = 0; it < 80 && b - a > 1e-15; ++it) {
        if (f1 < f2) {
          b = x2;
          x2 = x1;
          f2 = f1;
          x1 = b - r * (b - a);
          f1 = f(x1);
        } else {
          a = x1;
          x1 = x2;
          f1 = f2;
          x2 = a + r * (b - a);
          f2 = f(x2);
        }
      }
      double c = 0.5 * (a + b);
      // Golden section finds c to ~sqrt(eps) (the loss is flat there); Newton on dL/dc polishes.
      auto dl = [&](double x) { return LossDerivative(mi, torch::full({1}, x, f64), zeta_, o_).item<double>(); };
      for (int it = 0; it < 4; ++it) {
        const double h = 1e-6 * std::max(1.0, std::abs(c));
        const double curv = (dl(c + h) - dl(c - h)) / (2 * h);
        if (!(curv > 0)) break;
        const double next = c - dl(c) / curv;
        if (!(next >= lo && next <= hi) || std::abs(next - c) > cell) break;
        c = next;
      }
      // The ends of the interval are candidates too (the minimiser may sit on the floor).
      for (double e : {lo, hi})
        if (f(e) < f(c)) c = e;
      out[i] = c;
    }
    return out;
  }

  bool Project(torch::Tensor& c, double* floor_after) const override {
    const bool bind = (c > c_max()).any().item<bool>() || (c < kCLow).any().item<bool>();
    c = c.clamp(kCLow, c_max());
    if (floor_after) *floor_after = (1.0 - 2.0 * c).min().item<double>();
    return bind;
  }

 private:
  // A lower bound on c, far past any useful damping (mu = -beta gamma (1 - 2c)/4 = -25 at
  // beta 10, gamma 2): keeps the reverse-time integrators stable at 10-100 steps.
  static constexpr double kCLow = -2.0;
  MomentumOptions o_;
  double zeta_, d_min_;
};

}  // namespace

double MomentumVariationalLoss(const VariationalStats& s, const torch::Tensor& c, double zeta,
                               const MomentumOptions& o) {
  torch::Tensor c64 = c.to(torch::kFloat64);
  return LossPerCoordinate(Reduce(s, -1), CriticalDampingA(c64, o), c64, zeta).sum().item<double>();
}

std::shared_ptr<const VariationalObjective> MakeMomentumObjective(const MomentumOptions& o, double zeta, double d_min) {
  return std::make_shared<MomentumObjective>(o, zeta, d_min);
}

}  // namespace vsdm::core
