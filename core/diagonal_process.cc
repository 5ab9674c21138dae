#include "core/diagonal_process.h"

#include <cmath>

#include "core/ou_kernel.h"
#include "core/torchscript_export.h"

namespace vsdm::core {
namespace {
const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);
const auto kF32 = torch::TensorOptions().dtype(torch::kFloat32);
const auto kLong = torch::TensorOptions().dtype(torch::kLong);

// Standard normal noise shaped like x, drawn and scaled in float32 exactly as the dense path does
// (so a float64 test sees the same numbers), on the generator's device; adding it to x promotes it.
torch::Tensor Noise(const torch::Tensor& x, torch::Generator& gen) {
  return torch::randn(x.sizes(), gen, kF32.device(gen.device()));
}
}  // namespace

void DiagonalKernelTable::MoveTo(const torch::Device& device) {
  for (torch::Tensor* x :
       {&t, &beta, &sqrt_beta, &mean, &std, &inv_std, &input_scale, &a, &dvec, &prior_std, &a64, &prior_var64})
    if (x->defined()) *x = x->to(device);
}

DiagonalKernelTable BuildDiagonalKernelTable(const BetaSchedule& schedule, const TimeGrid& grid, const torch::Tensor& a,
                                             const torch::Tensor& second_moment, torch::ScalarType dtype) {
  TORCH_CHECK(a.dim() == 1, "diagonal kernel table: a must be a vector");
  const int64_t n = grid.steps + 1;
  std::vector<double> ts(n), bints(n);
  DiagonalKernelTable tab;
  tab.grid = grid;
  tab.beta_host.resize(n);
  for (int64_t k = 0; k < n; ++k) {
    ts[k] = grid.At(k);
    tab.beta_host[k] = schedule.Beta(ts[k]);
    bints[k] = schedule.Integral(ts[k]);
  }
  torch::Tensor a64 = a.to(torch::kFloat64).contiguous();
  torch::Tensor dvec = 1.0 - 2.0 * a64;
  torch::Tensor B = torch::tensor(bints, kF64).reshape({n, 1});
  // Spec §1, diagonal: m_i = exp(-d_i B/2), var_i = -expm1(-d_i B)/d_i.
  torch::Tensor mean = torch::exp(-0.5 * dvec.reshape({1, -1}) * B);
  torch::Tensor var = DiagonalKernelVariance(dvec, B.reshape({n}));
  torch::Tensor sd = var.sqrt();
  tab.t = torch::tensor(ts, kF64).to(dtype);
  tab.beta = torch::tensor(tab.beta_host, kF64).to(dtype);
  tab.sqrt_beta = torch::tensor(tab.beta_host, kF64).sqrt().to(dtype);
  tab.mean = mean.to(dtype);
  tab.std = sd.to(dtype);
  tab.inv_std = sd.reciprocal().to(dtype);
  tab.input_scale = second_moment.defined()
                        ? (mean * mean * second_moment.to(torch::kFloat64).reshape({1, -1}) + var).rsqrt().to(dtype)
                        : torch::ones_like(var, torch::TensorOptions().dtype(dtype));
  tab.a = a64.to(dtype);
  tab.dvec = dvec.to(dtype);
  tab.prior_std = sd[n - 1].to(dtype);
  tab.a64 = a64.clone();
  tab.prior_var64 = var[n - 1].clone();
  return tab;
}

torch::Tensor DiagonalScoreModel::OutputAtIndices(const torch::Tensor& x, const torch::Tensor& idx) const {
  torch::Tensor tf = net_->TimeFeatures(table_.t).index_select(0, idx);
  return net_->ForwardFeatures(x * table_.input_scale.index_select(0, idx), tf);
}

torch::Tensor DiagonalScoreModel::OutputAt(const torch::Tensor& x, int64_t k) const {
  torch::Tensor tf = net_->TimeFeatures(table_.t.slice(0, k, k + 1));
  return net_->ForwardFeatures(x * table_.input_scale[k], tf);
}

torch::Tensor DiagonalScoreModel::ScoreAt(const torch::Tensor& x, int64_t k) const {
  torch::Tensor out = OutputAt(x, k);
  if (param_ == Parameterization::kPolicy) return out / std::sqrt(table_.beta_host[k]) + x * table_.a;
  return -out * table_.inv_std[k];
}

ScoreFn DiagonalScoreModel::AsScoreFn() const {
  return [this](const torch::Tensor& x, int64_t k) { return ScoreAt(x, k); };
}

torch::Tensor DiagonalDsmLoss(ScoreNet& net, Parameterization param, int64_t times_per_point,
                              const torch::Tensor& x0_in, const torch::Tensor& idx, const torch::Tensor& eps,
                              const DiagonalKernelTable& table) {
  torch::Tensor x0 = times_per_point > 1 ? x0_in.repeat_interleave(times_per_point, 0) : x0_in;
  torch::Tensor xt = table.mean.index_select(0, idx) * x0 + table.std.index_select(0, idx) * eps;
  torch::Tensor out = DiagonalScoreModel(net, param, table).OutputAtIndices(xt, idx);
  if (param == Parameterization::kEps) return torch::mse_loss(out, eps);
  // Policy target y = sqrt(beta) (s* - a x_t), s* = -eps / sigma.
  torch::Tensor score = -eps * table.inv_std.index_select(0, idx);
  torch::Tensor target = table.sqrt_beta.index_select(0, idx).unsqueeze(1) * (score - xt * table.a);
  return torch::mse_loss(out, target);
}

torch::Tensor DiagonalPrior(const DiagonalKernelTable& table, int64_t n, bool adaptive, torch::Generator& gen) {
  torch::Tensor z = torch::randn({n, table.dim()}, gen, kF32.device(gen.device())).to(table.a.scalar_type());
  return adaptive ? z * table.prior_std : z;
}

SampleResult DiagonalSample(const DiagonalKernelTable& tab, const ScoreFn& score, const torch::Tensor& x_T,
                            Solver solver, torch::Generator& gen, bool keep_trajectory) {
  const torch::Tensor& d = tab.dvec;
  return IntegrateReverse(
      tab.grid, tab.beta_host, [&d](const torch::Tensor& y) { return y * d; }, score, x_T, solver, gen,
      keep_trajectory);
}

VariationalStats DiagonalVariationalStats(const DiagonalKernelTable& tab, const ScoreFn& score_fn,
                                          const torch::Tensor& x_T, int64_t group_size, torch::Generator& gen) {
  torch::NoGradGuard no_grad;
  const int64_t K = x_T.size(0), d = x_T.size(1);
  const int64_t G = (K + group_size - 1) / group_size;
  const double h = tab.grid.Step();
  // Group membership as a [G, K] float64 matrix: per-group sums are one matmul.
  const auto f64 = kF64.device(x_T.device());
  torch::Tensor gid = torch::arange(K, kLong.device(x_T.device())).div(group_size, "floor");
  torch::Tensor member = torch::nn::functional::one_hot(gid, G).to(torch::kFloat64).t().contiguous();
  torch::Tensor counts = member.sum(1);

  VariationalStats s;
  s.sxx = torch::zeros({G, d}, f64);
  s.szx = torch::zeros({G, d}, f64);
  s.sbeta = torch::zeros({G}, f64);
  s.count = torch::zeros({G}, f64);
  s.dt = h;
  torch::Tensor x = x_T.clone();
  for (int64_t k = tab.grid.steps; k >= 1; --k) {
    const double beta = tab.beta_host[k];
    const double sb = std::sqrt(beta);
    torch::Tensor score = score_fn(x, k);
    torch::Tensor zb = sb * (score - x * tab.a);  // z_b = sqrt(beta)(s - A x)
    torch::Tensor x64 = x.to(torch::kFloat64), z64 = zb.to(torch::kFloat64);
    s.sxx += beta * torch::matmul(member, x64 * x64);
    s.szx += sb * torch::matmul(member, z64 * x64);
    s.sbeta += beta * counts;
    s.count += counts;
    // Euler-Maruyama step of the backward SDE (spec §4).
    x = x + h * (beta * (0.5 * (x * tab.dvec) + score)) + std::sqrt(beta * h) * Noise(x, gen);
  }
  return s;
}

namespace {

class DiagonalObjective : public VariationalObjective {
 public:
  DiagonalObjective(double zeta, double d_min) : zeta_(zeta), d_min_(d_min) {}
  torch::Tensor Gradient(const VariationalStats& s, const torch::Tensor& a, int64_t group) const override {
    torch::Tensor sxx = group < 0 ? s.sxx.sum(0) : s.sxx[group];
    torch::Tensor szx = group < 0 ? s.szx.sum(0) : s.szx[group];
    torch::Tensor sb = group < 0 ? s.sbeta.sum() : s.sbeta[group];
    torch::Tensor n = group < 0 ? s.count.sum() : s.count[group];
    // grad L = (Delta/n) (a S_xx + S_zx + zeta S_beta), spec §3 (diagonal).
    return (a.to(torch::kFloat64) * sxx + szx + zeta_ * sb) * (s.dt / n);
  }
  torch::Tensor Minimizer(const VariationalStats& s) const override {
    return -(s.szx.sum(0) + zeta_ * s.sbeta.sum()) / s.sxx.sum(0);
  }
  bool Project(torch::Tensor& a, double* floor_after) const override {
    torch::Tensor dd = 1.0 - 2.0 * a;
    const bool bind = (dd < d_min_).any().item<bool>();
    torch::Tensor clipped = dd.clamp_min(d_min_);
    a = 0.5 * (1.0 - clipped);
    if (floor_after) *floor_after = clipped.min().item<double>();
    return bind;
  }

 private:
  double zeta_, d_min_;
};

// VSDM under a diagonal A = diag(a), all per coordinate.
class DiagonalVsdmProcess : public Process {
 public:
  DiagonalVsdmProcess(const DiagonalProcessOptions& o, const torch::Tensor& a, const TimeGrid& grid)
      : o_(o),
        a_(a.to(torch::kFloat64).clone()),
        table_(BuildDiagonalKernelTable(o.schedule, grid, a_, o.second_moment)) {}

  torch::Tensor Loss(ScoreNet& net, const torch::Tensor& x0, torch::Generator& gen) const override {
    const int64_t n = x0.size(0) * o_.times_per_point, d = x0.size(1);
    torch::Tensor idx = torch::randint(0, table_.size(), {n}, gen, kLong.device(gen.device()));
    torch::Tensor eps = torch::randn({n, d}, gen, kF32.device(gen.device()));
    return DiagonalDsmLoss(net, o_.param, o_.times_per_point, x0, idx, eps, table_);
  }
  torch::Tensor SamplePrior(int64_t n, bool adaptive, torch::Generator& gen) const override {
    return DiagonalPrior(table_, n, adaptive, gen);
  }
  SampleResult Sample(ScoreNet& net, const torch::Tensor& prior, Solver solver, torch::Generator& gen,
                      bool keep_trajectory) const override {
    DiagonalScoreModel model(net, o_.param, table_);
    return DiagonalSample(table_, model.AsScoreFn(), prior, solver, gen, keep_trajectory);
  }
  VariationalStats Stats(ScoreNet& net, const torch::Tensor& prior, int64_t group_size,
                         torch::Generator& gen) const override {
    DiagonalScoreModel model(net, o_.param, table_);
    return DiagonalVariationalStats(table_, model.AsScoreFn(), prior, group_size, gen);
  }
  absl::Status Export(const std::string& path, ScoreNet& net, const std::string& method) const override {
    DiagonalExportInfo info;
    info.schedule = o_.schedule;
    info.param = o_.param;
    info.method = method;
    info.channels = o_.image.channels;
    info.height = o_.image.height;
    info.width = o_.image.width;
    return ExportDiagonalTorchScript(path, net, table_, info);
  }
  std::vector<std::pair<std::string, torch::Tensor>> Describe() const override {
    const torch::Tensor a64 = table_.a64.cpu();
    return {{"a", a64}, {"d", 1.0 - 2.0 * a64}, {"prior_var", table_.prior_var64.cpu()}};
  }
  // Rebuilt on the CPU in float64 from a_, then moved to this process's device.
  std::unique_ptr<Process> WithGrid(const TimeGrid& grid) const override {
    auto p = std::make_unique<DiagonalVsdmProcess>(o_, a_, grid);
    p->table_.MoveTo(table_.t.device());
    return p;
  }
  const TimeGrid& grid() const override { return table_.grid; }
  // The table moves; a_ and the options' second moment stay on the CPU (inputs of a rebuild).
  std::unique_ptr<Process> To(const torch::Device& device) const override {
    auto p = std::make_unique<DiagonalVsdmProcess>(*this);
    p->table_.MoveTo(device);
    return p;
  }

 private:
  DiagonalProcessOptions o_;
  torch::Tensor a_;
  DiagonalKernelTable table_;
};

class DiagonalVsdmFamily : public ProcessFamily {
 public:
  DiagonalVsdmFamily(int64_t dim, const DiagonalProcessOptions& o) : dim_(dim), o_(o) {}
  int64_t net_in_dim() const override { return dim_; }
  int64_t net_out_dim() const override { return dim_; }
  torch::Tensor InitialParam() const override { return torch::zeros({dim_}, kF64); }
  std::unique_ptr<Process> Make(const torch::Tensor& a, const TimeGrid& grid) const override {
    return std::make_unique<DiagonalVsdmProcess>(o_, a, grid);
  }
  std::shared_ptr<const VariationalObjective> Objective(const VariationalOptions& vo) const override {
    return MakeDiagonalObjective(vo.interact, vo.d_min);
  }

 private:
  int64_t dim_;
  DiagonalProcessOptions o_;
};

}  // namespace

std::shared_ptr<const VariationalObjective> MakeDiagonalObjective(double zeta, double d_min) {
  return std::make_shared<DiagonalObjective>(zeta, d_min);
}

std::unique_ptr<ProcessFamily> MakeDiagonalVsdmFamily(int64_t dim, const DiagonalProcessOptions& o) {
  return std::make_unique<DiagonalVsdmFamily>(dim, o);
}

}  // namespace vsdm::core
