#include "core/forecast_process.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/diffusion.h"
#include "core/sampler.h"
#include "core/torchscript_export.h"
#include "core/variational.h"

namespace vsdm::core {
namespace {
const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);
const auto kF32 = torch::TensorOptions().dtype(torch::kFloat32);
const auto kLong = torch::TensorOptions().dtype(torch::kLong);

// The score of the conditional net at grid index k for target rows x [n*H, D] (H rows per window,
// window-major) under condition `cond` [n, C*D + F]: the dense model's s = -L^{-T} eps_hat (eps)
// or z / sqrt(beta) + A x (policy), row by row.
ScoreFn ConditionalScore(ScoreNet& net, Parameterization param, const KernelTable& tab, const torch::Tensor& cond,
                         int64_t horizon) {
  return [&net, param, &tab, cond, horizon](const torch::Tensor& x, int64_t k) {
    const int64_t d = tab.dim(), n = x.size(0) / horizon;
    torch::Tensor tf = net->TimeFeatures(tab.t.slice(0, k, k + 1));
    torch::Tensor xin = (x * tab.input_scale[k]).reshape({n, horizon * d});
    torch::Tensor out = net->ForwardFeatures(torch::cat({xin, cond}, 1), tf).reshape({n * horizon, d});
    if (param == Parameterization::kPolicy) return out / tab.sqrt_beta[k] + torch::matmul(x, tab.A.t());
    return -torch::matmul(out, tab.chol_inv_t[k].t());
  };
}

class ForecastProcess : public Process {
 public:
  ForecastProcess(const ForecastProcessOptions& o, const torch::Tensor& A, const TimeGrid& grid)
      : o_(o), A_(A.to(torch::kFloat64).clone()), table_(BuildKernelTable(o.schedule, grid, A_, o.data_cov)) {
    if (o_.prior_weight.defined()) UseConditionalPrior();
  }

  // Spec §2 on each horizon row: x_t = M x0 + L eps with one time per window (Note: all H rows
  // of a window share t, as the net sees the block at one time).
  torch::Tensor Loss(ScoreNet& net, const torch::Tensor& x0_in, torch::Generator& gen) const override {
    const int64_t H = o_.horizon, D = o_.series, hd = H * D;
    torch::Tensor x0 = o_.times_per_point > 1 ? x0_in.repeat_interleave(o_.times_per_point, 0) : x0_in;
    const int64_t n = x0.size(0);
    torch::Tensor idx = torch::randint(0, table_.size(), {n}, gen, kLong.device(gen.device()));
    torch::Tensor eps = torch::randn({n, H, D}, gen, kF32.device(gen.device()));
    torch::Tensor target = x0.slice(1, 0, hd).reshape({n, H, D});
    torch::Tensor cond = x0.slice(1, hd);
    torch::Tensor xt = torch::bmm(target, table_.mean.index_select(0, idx).transpose(1, 2)) +
                       torch::bmm(eps, table_.chol.index_select(0, idx).transpose(1, 2));
    torch::Tensor xin = xt * table_.input_scale.index_select(0, idx).unsqueeze(1);
    torch::Tensor tf = net->TimeFeatures(table_.t).index_select(0, idx);
    torch::Tensor out = net->ForwardFeatures(torch::cat({xin.reshape({n, hd}), cond}, 1), tf);
    if (o_.param == Parameterization::kEps) return torch::mse_loss(out, eps.reshape({n, hd}));
    torch::Tensor score = -torch::bmm(eps, table_.chol_inv_t.index_select(0, idx).transpose(1, 2));
    torch::Tensor policy =
        table_.sqrt_beta.index_select(0, idx).view({n, 1, 1}) * (score - torch::matmul(xt, table_.A.t()));
    return torch::mse_loss(out, policy.reshape({n, hd}));
  }

  torch::Tensor SamplePrior(int64_t n, bool adaptive, torch::Generator& gen) const override {
    const int64_t hd = o_.horizon * o_.series;
    torch::Tensor x = core::SamplePrior(table_, n * o_.horizon, adaptive, gen).reshape({n, hd});
    torch::Tensor pick = torch::randint(0, o_.train_condition.size(0), {n}, gen, kLong.device(gen.device()));
    return torch::cat({x, o_.train_condition.index_select(0, pick)}, 1);
  }

  SampleResult Sample(ScoreNet& net, const torch::Tensor& prior, Solver solver, torch::Generator& gen,
                      bool keep_trajectory) const override {
    const int64_t n = prior.size(0), hd = o_.horizon * o_.series;
    torch::Tensor cond = prior.slice(1, hd).contiguous();
    SampleResult r = core::Sample(table_, ConditionalScore(net, o_.param, table_, cond, o_.horizon),
                                  Start(prior).reshape({n * o_.horizon, o_.series}), solver, gen, keep_trajectory);
    r.x = r.x.reshape({n, hd});
    if (r.trajectory.defined()) r.trajectory = r.trajectory.reshape({r.trajectory.size(0), n, hd});
    return r;
  }

  // Spec §3 with I_H (x) A_D: every horizon row of every trajectory is one D-vector sample of the
  // statistics, so a group of `group_size` windows is group_size * H rows.
  VariationalStats Stats(ScoreNet& net, const torch::Tensor& prior, int64_t group_size,
                         torch::Generator& gen) const override {
    const int64_t n = prior.size(0), hd = o_.horizon * o_.series;
    torch::Tensor cond = prior.slice(1, hd).contiguous();
    return ComputeVariationalStats(table_, ConditionalScore(net, o_.param, table_, cond, o_.horizon),
                                   Start(prior).reshape({n * o_.horizon, o_.series}), group_size * o_.horizon, gen);
  }

  absl::Status Export(const std::string& path, ScoreNet& net, const std::string& method) const override;

  // With the conditional prior, prior_cov is the sampler's start covariance Sigma_T + M_T Sigma_r M_T^T;
  // terminal_cov (Sigma_T, the forward law at T from 0) and prior_residual_cov (Sigma_r) sit beside it.
  std::vector<std::pair<std::string, torch::Tensor>> Describe() const override {
    std::vector<std::pair<std::string, torch::Tensor>> out = {
        {"A", table_.A64.cpu()}, {"D", table_.D.to(torch::kFloat64).cpu()}, {"prior_cov", table_.prior_cov64.cpu()}};
    if (terminal_cov64_.defined()) {
      out.emplace_back("terminal_cov", terminal_cov64_.cpu());
      out.emplace_back("prior_residual_cov", o_.residual_cov.cpu());
    }
    return out;
  }
  // Rebuilt on the CPU in float64 from A_ (o_ keeps data_cov there), then moved to this process's device.
  std::unique_ptr<Process> WithGrid(const TimeGrid& grid) const override {
    return ForecastProcess(o_, A_, grid).To(table_.t.device());
  }
  const TimeGrid& grid() const override { return table_.grid; }
  // The table, the training conditions and the series' transform move; A_ and data_cov stay on the
  // CPU (inputs of a rebuild).
  std::unique_ptr<Process> To(const torch::Device& device) const override {
    auto p = std::make_unique<ForecastProcess>(*this);
    p->table_.MoveTo(device);
    for (torch::Tensor* x :
         {&p->o_.train_condition, &p->o_.value_mean, &p->o_.value_std, &p->o_.log1p, &p->prior_shift_})
      if (x->defined()) *x = x->to(device);
    return p;
  }
  const KernelTable& table() const { return table_; }
  const ForecastProcessOptions& options() const { return o_; }

 private:
  // The conditional prior: Sigma_T + M_T Sigma_r M_T^T as the table's prior, and the map from the
  // condition's features to the prior mean M_T mu(c) of the H rows, [2D + F + 1, H*D] float32.
  void UseConditionalPrior() {
    const int64_t H = o_.horizon, D = o_.series;
    torch::Tensor m = table_.mean[table_.size() - 1].to(torch::kFloat64);  // M_T [D, D]
    terminal_cov64_ = table_.prior_cov64.clone();
    table_.prior_cov64 = table_.prior_cov64 + torch::matmul(torch::matmul(m, o_.residual_cov), m.t());
    table_.prior_cov64 = 0.5 * (table_.prior_cov64 + table_.prior_cov64.t());
    table_.prior_chol = torch::linalg_cholesky(table_.prior_cov64).to(table_.prior_chol.scalar_type());
    const int64_t k = o_.prior_weight.size(0);
    prior_shift_ = torch::matmul(o_.prior_weight.reshape({k, H, D}), m.t()).reshape({k, H * D}).to(torch::kFloat32);
  }
  // The target part of packed prior rows plus the condition's prior mean (none without the
  // conditional prior): the state at T. [n, H*D].
  torch::Tensor Start(const torch::Tensor& prior) const {
    const int64_t hd = o_.horizon * o_.series;
    torch::Tensor x = prior.slice(1, 0, hd);
    if (!prior_shift_.defined()) return x;
    torch::Tensor f = PriorFeatures(prior.slice(1, hd), o_.context, o_.series);
    return x + torch::matmul(f, prior_shift_.to(f.options()));
  }

  ForecastProcessOptions o_;
  torch::Tensor A_;
  KernelTable table_;
  torch::Tensor prior_shift_;
  torch::Tensor terminal_cov64_;  // Sigma_T, kept for Describe when the conditional prior replaced it
};

class ForecastFamily : public ProcessFamily {
 public:
  explicit ForecastFamily(const ForecastProcessOptions& o) : o_(o) {}
  int64_t net_in_dim() const override { return (o_.horizon + o_.context) * o_.series + o_.covariates; }
  int64_t net_out_dim() const override { return o_.horizon * o_.series; }
  torch::Tensor InitialParam() const override { return torch::zeros({o_.series, o_.series}, kF64); }
  std::unique_ptr<Process> Make(const torch::Tensor& A, const TimeGrid& grid) const override {
    return std::make_unique<ForecastProcess>(o_, A, grid);
  }
  std::shared_ptr<const VariationalObjective> Objective(const VariationalOptions& vo) const override {
    return MakeLinearScoreObjective(vo);
  }

 private:
  ForecastProcessOptions o_;
};

}  // namespace

std::unique_ptr<ProcessFamily> MakeForecastFamily(const ForecastProcessOptions& o) {
  return std::make_unique<ForecastFamily>(o);
}

torch::Tensor PriorFeatures(const torch::Tensor& cond, int64_t context, int64_t series) {
  const int64_t n = cond.size(0), cd = context * series;
  torch::Tensor ctx = cond.slice(1, 0, cd).reshape({n, context, series});
  return torch::cat({ctx.select(1, context - 1), ctx.mean(1), cond.slice(1, cd), torch::ones({n, 1}, cond.options())},
                    1);
}

void FitConditionalPrior(const torch::Tensor& windows, ForecastProcessOptions& o) {
  const int64_t H = o.horizon, D = o.series, hd = H * D;
  torch::Tensor w = windows.to(torch::kCPU, torch::kFloat64);
  const int64_t n = w.size(0);
  torch::Tensor y = w.slice(1, 0, hd);
  torch::Tensor f = PriorFeatures(w.slice(1, hd), o.context, D);
  const int64_t k = f.size(1);
  torch::Tensor penalty = torch::eye(k, kF64) * (1e-3 * static_cast<double>(n));
  penalty[k - 1][k - 1] = 0.0;  // the intercept is not shrunk
  o.prior_weight = torch::linalg_solve(torch::matmul(f.t(), f) + penalty, torch::matmul(f.t(), y));
  torch::Tensor r = (y - torch::matmul(f, o.prior_weight)).reshape({n * H, D});
  o.residual_cov = torch::matmul(r.t(), r) / static_cast<double>(std::max<int64_t>(n * H - 1, 1));
}

torch::Tensor WithCondition(const torch::Tensor& prior, const torch::Tensor& condition) {
  const int64_t target = prior.size(1) - condition.size(1);
  return torch::cat({prior.slice(1, 0, target), condition.to(prior.device(), prior.scalar_type())}, 1);
}

absl::Status ForecastProcess::Export(const std::string& path, ScoreNet& net, const std::string& method) const {
  return ExportForecastTorchScript(
      path, net, table_,
      ForecastExportInfo{o_.schedule, o_.param, method, o_.horizon, o_.context, o_.series, o_.covariates, o_.value_mean,
                         o_.value_std, o_.log1p, prior_shift_.defined() ? prior_shift_.cpu() : prior_shift_});
}

}  // namespace vsdm::core
