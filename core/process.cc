#include "core/process.h"

#include "core/diagonal_process.h"
#include "core/dsm_trainer.h"
#include "core/torchscript_export.h"

namespace vsdm::core {
namespace {
const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);
const auto kF32 = torch::TensorOptions().dtype(torch::kFloat32);
const auto kLong = torch::TensorOptions().dtype(torch::kLong);

// VSDM (and DSM, whose A stays 0): the multivariate OU process of spec §1 on x.
class VsdmProcess : public Process {
 public:
  VsdmProcess(const VsdmProcessOptions& o, const torch::Tensor& A, const TimeGrid& grid)
      : o_(o),
        A_(A.to(torch::kFloat64).clone()),
        table_(BuildKernelTable(o.schedule, grid, o.diagonal ? torch::diag(A_) : A_, o.data_cov)) {}

  torch::Tensor Loss(ScoreNet& net, const torch::Tensor& x0, torch::Generator& gen) const override {
    const int64_t n = x0.size(0) * o_.times_per_point, d = x0.size(1);
    torch::Tensor idx = torch::randint(0, table_.size(), {n}, gen, kLong.device(gen.device()));
    torch::Tensor eps = torch::randn({n, d}, gen, kF32.device(gen.device()));
    return DsmLoss(net, o_.param, o_.times_per_point, x0, idx, eps, table_);
  }
  torch::Tensor SamplePrior(int64_t n, bool adaptive, torch::Generator& gen) const override {
    return core::SamplePrior(table_, n, adaptive, gen);
  }
  SampleResult Sample(ScoreNet& net, const torch::Tensor& prior, Solver solver, torch::Generator& gen,
                      bool keep_trajectory) const override {
    ScoreModel model(net, o_.param, table_);
    return core::Sample(model, prior, solver, gen, keep_trajectory);
  }
  VariationalStats Stats(ScoreNet& net, const torch::Tensor& prior, int64_t group_size,
                         torch::Generator& gen) const override {
    ScoreModel model(net, o_.param, table_);
    return ComputeVariationalStats(model, prior, group_size, gen);
  }
  absl::Status Export(const std::string& path, ScoreNet& net, const std::string& method) const override {
    return ExportTorchScript(path, net, table_, ExportInfo{o_.schedule, o_.param, method});
  }
  std::vector<std::pair<std::string, torch::Tensor>> Describe() const override {
    return {
        {"A", table_.A64.cpu()}, {"D", table_.D.to(torch::kFloat64).cpu()}, {"prior_cov", table_.prior_cov64.cpu()}};
  }
  // Rebuilt on the CPU in float64 from A_, then moved to this process's device.
  std::unique_ptr<Process> WithGrid(const TimeGrid& grid) const override {
    auto p = std::make_unique<VsdmProcess>(o_, A_, grid);
    p->table_.MoveTo(table_.t.device());
    return p;
  }
  const TimeGrid& grid() const override { return table_.grid; }
  // The table moves; A_ and the options' data_cov stay on the CPU (inputs of a rebuild).
  std::unique_ptr<Process> To(const torch::Device& device) const override {
    auto p = std::make_unique<VsdmProcess>(*this);
    p->table_.MoveTo(device);
    return p;
  }

 private:
  VsdmProcessOptions o_;
  torch::Tensor A_;
  KernelTable table_;
};

class VsdmFamily : public ProcessFamily {
 public:
  VsdmFamily(int64_t dim, const VsdmProcessOptions& o) : dim_(dim), o_(o) {}
  int64_t net_in_dim() const override { return dim_; }
  int64_t net_out_dim() const override { return dim_; }
  torch::Tensor InitialParam() const override { return torch::zeros({dim_, dim_}, kF64); }
  std::unique_ptr<Process> Make(const torch::Tensor& A, const TimeGrid& grid) const override {
    return std::make_unique<VsdmProcess>(o_, A, grid);
  }
  std::shared_ptr<const VariationalObjective> Objective(const VariationalOptions& vo) const override {
    return MakeLinearScoreObjective(vo);
  }

 private:
  int64_t dim_;
  VsdmProcessOptions o_;
};

// VSMD: critically damped momentum diffusion on z = (x, v) (spec §5).
class VsmdProcess : public Process {
 public:
  VsmdProcess(const VsmdProcessOptions& o, const torch::Tensor& c, const TimeGrid& grid)
      : o_(o), c_(c.to(torch::kFloat64).clone()), table_(BuildMomentumTable(o.momentum, grid, c_, o.data_var)) {}

  torch::Tensor Loss(ScoreNet& net, const torch::Tensor& x0, torch::Generator& gen) const override {
    return MomentumLoss(net, table_, x0, o_.times_per_point, gen);
  }
  torch::Tensor SamplePrior(int64_t n, bool adaptive, torch::Generator& gen) const override {
    return MomentumPrior(table_, n, adaptive, gen);
  }
  SampleResult Sample(ScoreNet& net, const torch::Tensor& prior, Solver solver, torch::Generator& gen,
                      bool keep_trajectory) const override {
    return MomentumSample(net, table_, prior, solver, gen, keep_trajectory);
  }
  VariationalStats Stats(ScoreNet& net, const torch::Tensor& prior, int64_t group_size,
                         torch::Generator& gen) const override {
    return MomentumVariationalStats(net, table_, prior, group_size, gen);
  }
  absl::Status Export(const std::string& path, ScoreNet& net, const std::string& method) const override {
    return ExportMomentumTorchScript(path, net, table_, method);
  }
  std::vector<std::pair<std::string, torch::Tensor>> Describe() const override {
    const torch::Tensor c64 = table_.c64.cpu();
    return {{"c", c64},
            {"a", table_.a64.cpu()},
            {"damping_eigenvalue", CriticalEigenvalue(c64, table_.options)},
            {"prior_cov", table_.prior_cov64.cpu()}};
  }
  // Rebuilt on the CPU in float64 from c_, then moved to this process's device.
  std::unique_ptr<Process> WithGrid(const TimeGrid& grid) const override {
    auto p = std::make_unique<VsmdProcess>(o_, c_, grid);
    p->table_.MoveTo(table_.t.device());
    return p;
  }
  const TimeGrid& grid() const override { return table_.grid; }
  // The table moves; c_ and the options' data_var stay on the CPU (inputs of a rebuild).
  std::unique_ptr<Process> To(const torch::Device& device) const override {
    auto p = std::make_unique<VsmdProcess>(*this);
    p->table_.MoveTo(device);
    return p;
  }

 private:
  VsmdProcessOptions o_;
  torch::Tensor c_;
  MomentumTable table_;
};

class VsmdFamily : public ProcessFamily {
 public:
  VsmdFamily(int64_t dim, const VsmdProcessOptions& o) : dim_(dim), o_(o) {}
  int64_t net_in_dim() const override { return 2 * dim_; }
  int64_t net_out_dim() const override { return dim_; }
  torch::Tensor InitialParam() const override { return torch::full({dim_}, o_.c_init, kF64); }
  std::unique_ptr<Process> Make(const torch::Tensor& c, const TimeGrid& grid) const override {
    return std::make_unique<VsmdProcess>(o_, c, grid);
  }
  std::shared_ptr<const VariationalObjective> Objective(const VariationalOptions& vo) const override {
    return MakeMomentumObjective(o_.momentum, vo.interact, vo.d_min);
  }

 private:
  int64_t dim_;
  VsmdProcessOptions o_;
};

}  // namespace

std::unique_ptr<Process> ProcessFamily::Make(const torch::Tensor& phi, const TimeGrid& grid,
                                             const torch::Device& device) const {
  std::unique_ptr<Process> p = Make(phi.cpu(), grid);
  if (device.is_cpu()) return p;
  return p->To(device);
}

std::unique_ptr<ProcessFamily> MakeVsdmFamily(int64_t dim, const VsdmProcessOptions& o) {
  return std::make_unique<VsdmFamily>(dim, o);
}

std::unique_ptr<ProcessFamily> MakeVsmdFamily(int64_t dim, const VsmdProcessOptions& o) {
  return std::make_unique<VsmdFamily>(dim, o);
}

std::unique_ptr<ProcessFamily> MakeProcessFamily(const JobSpec& spec, const DataMoments& data) {
  const int64_t dim = data.dim;
  const torch::Tensor& data_cov = data.cov;
  const BetaSchedule schedule{spec.diffusion.beta_min, spec.diffusion.beta_max, spec.diffusion.beta_r};
  if (spec.method != "vsmd" && spec.variational.form == "diagonal") {
    DiagonalProcessOptions o;
    o.schedule = schedule;
    o.param = ParseParameterization(spec.model.parameterization);
    o.times_per_point = spec.train.times_per_point;
    o.second_moment = data.second_moment;
    o.image = data.image;
    return MakeDiagonalVsdmFamily(dim, o);
  }
  if (spec.method == "vsmd") {
    VsmdProcessOptions o;
    o.momentum = {spec.momentum.beta, spec.momentum.gamma, spec.momentum.damping};
    o.c_init = spec.momentum.c_init;
    o.times_per_point = spec.train.times_per_point;
    if (data_cov.defined()) o.data_var = data_cov.diagonal().clone();
    return MakeVsmdFamily(dim, o);
  }
  VsdmProcessOptions o;
  o.schedule = schedule;
  o.param = ParseParameterization(spec.model.parameterization);
  o.times_per_point = spec.train.times_per_point;
  o.data_cov = data_cov;
  return MakeVsdmFamily(dim, o);
}

bool LearnsVariationalParam(const JobSpec& spec) { return spec.method != "dsm"; }

}  // namespace vsdm::core
