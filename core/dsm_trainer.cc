#include "core/dsm_trainer.h"

#include <algorithm>

namespace vsdm::core {

DsmPair MakeDsmPair(const torch::Tensor& x0, const torch::Tensor& eps, const torch::Tensor& M, const torch::Tensor& L,
                    const torch::Tensor& chol_inv_t, const torch::Tensor& sqrt_beta, const torch::Tensor& A) {
  DsmPair p;
  p.xt = torch::bmm(M, x0.unsqueeze(2)).squeeze(2) + torch::bmm(L, eps.unsqueeze(2)).squeeze(2);
  p.score = -torch::bmm(chol_inv_t, eps.unsqueeze(2)).squeeze(2);
  p.policy_target = sqrt_beta.unsqueeze(1) * (p.score - torch::matmul(p.xt, A.t()));
  return p;
}

DsmTrainer::DsmTrainer(ScoreNet net, const DsmTrainerOptions& options)
    : options_(options), net_(std::move(net)), ema_(CloneScoreNet(net_)) {
  net_->set_precision(options_.precision);  // the EMA copy (sampling, export) stays float32
  opt_ = std::make_unique<torch::optim::AdamW>(net_->parameters(),
                                               torch::optim::AdamWOptions(options_.lr).weight_decay(0.0));
  for (auto& p : ema_->parameters()) p.set_requires_grad(false);
}

torch::Tensor DsmTrainer::Loss(const torch::Tensor& x0, torch::Generator& gen, const KernelTable& table) {
  const int64_t n = x0.size(0) * options_.times_per_point, d = x0.size(1);
  torch::Tensor idx =
      torch::randint(0, table.size(), {n}, gen, torch::TensorOptions().dtype(torch::kLong).device(gen.device()));
  torch::Tensor eps = torch::randn({n, d}, gen, torch::TensorOptions().dtype(torch::kFloat32).device(gen.device()));
  return Loss(x0, idx, eps, table);
}

torch::Tensor DsmLoss(ScoreNet& net, Parameterization param, int64_t times_per_point, const torch::Tensor& x0_in,
                      const torch::Tensor& idx, const torch::Tensor& eps, const KernelTable& table) {
  torch::Tensor x0 = times_per_point > 1 ? x0_in.repeat_interleave(times_per_point, 0) : x0_in;
  DsmPair pair = MakeDsmPair(x0, eps, table.mean.index_select(0, idx), table.chol.index_select(0, idx),
                             table.chol_inv_t.index_select(0, idx), table.sqrt_beta.index_select(0, idx), table.A);
  ScoreModel model(net, param, table);
  torch::Tensor out = model.OutputAtIndices(pair.xt, idx);
  if (param == Parameterization::kEps) return torch::mse_loss(out, eps);
  return torch::mse_loss(out, pair.policy_target);
}

torch::Tensor DsmTrainer::Loss(const torch::Tensor& x0, const torch::Tensor& idx, const torch::Tensor& eps,
                               const KernelTable& table) {
  return DsmLoss(net_, options_.param, options_.times_per_point, x0, idx, eps, table);
}

torch::Tensor DsmTrainer::ComputeGradients(const torch::Tensor& x0, torch::Generator& gen, const Process& process) {
  opt_->zero_grad();
  torch::Tensor loss = process.Loss(net_, x0, gen);
  loss.backward();
  return loss.detach();
}

torch::Tensor DsmTrainer::ComputeGradients(const torch::Tensor& x0, torch::Generator& gen, const KernelTable& table) {
  opt_->zero_grad();
  torch::Tensor loss = Loss(x0, gen, table);
  loss.backward();
  return loss.detach();
}

torch::Tensor DsmTrainer::ComputeGradients(const torch::Tensor& x0, const torch::Tensor& idx, const torch::Tensor& eps,
                                           const KernelTable& table) {
  opt_->zero_grad();
  torch::Tensor loss = Loss(x0, idx, eps, table);
  loss.backward();
  return loss.detach();
}

namespace {
// clip_grad_norm_ of LibTorch reads the norm on the host (.item()); this keeps it on the device:
// g <- g * min(1, max_norm / (||g|| + 1e-6)), the same factor torch.nn.utils.clip_grad_norm_ uses.
void ClipGradNorm(const std::vector<torch::Tensor>& params, double max_norm) {
  std::vector<torch::Tensor> norms;
  for (const auto& p : params)
    if (p.grad().defined()) norms.push_back(p.grad().norm(2).to(torch::kFloat64));
  if (norms.empty()) return;
  torch::Tensor total = torch::stack(norms).norm(2);
  torch::Tensor coef = (max_norm / (total + 1e-6)).clamp_max(1.0);
  for (const auto& p : params)
    if (p.grad().defined()) p.grad().mul_(coef.to(p.grad().scalar_type()));
}
}  // namespace

void DsmTrainer::ApplyGradients() {
  if (options_.grad_clip > 0) ClipGradNorm(net_->parameters(), options_.grad_clip);
  opt_->step();
  ++steps_;
  torch::NoGradGuard guard;
  const double n = static_cast<double>(steps_);
  const double decay = std::min(options_.ema, (1.0 + n) / (10.0 + n));
  auto src = net_->parameters();
  auto dst = ema_->parameters();
  for (size_t i = 0; i < src.size(); ++i) dst[i].mul_(decay).add_(src[i], 1.0 - decay);
}

}  // namespace vsdm::core
