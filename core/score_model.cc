#include "core/score_model.h"

namespace vsdm::core {

Parameterization ParseParameterization(const std::string& s) {
  return s == "eps" ? Parameterization::kEps : Parameterization::kPolicy;
}

torch::Tensor ScoreModel::OutputAtIndices(const torch::Tensor& x, const torch::Tensor& idx) const {
  torch::Tensor tf = net_->TimeFeatures(table_.t).index_select(0, idx);
  torch::Tensor xin = x * table_.input_scale.index_select(0, idx);
  return net_->ForwardFeatures(xin, tf);
}

torch::Tensor ScoreModel::OutputAt(const torch::Tensor& x, int64_t k) const {
  torch::Tensor tf = net_->TimeFeatures(table_.t.slice(0, k, k + 1));
  return net_->ForwardFeatures(x * table_.input_scale[k], tf);
}

torch::Tensor ScoreModel::ScoreAt(const torch::Tensor& x, int64_t k) const {
  torch::Tensor out = OutputAt(x, k);
  if (param_ == Parameterization::kPolicy) {
    // s = z_b / sqrt(beta) + A x.
    return out / table_.sqrt_beta[k] + torch::matmul(x, table_.A.t());
  }
  // s = -L^{-T} eps_hat (row form: eps_hat @ (L^{-T})^T).
  return -torch::matmul(out, table_.chol_inv_t[k].t());
}

torch::Tensor ScoreModel::PolicyAt(const torch::Tensor& x, int64_t k) const {
  if (param_ == Parameterization::kPolicy) return OutputAt(x, k);
  return table_.sqrt_beta[k] * (ScoreAt(x, k) - torch::matmul(x, table_.A.t()));
}

}  // namespace vsdm::core
