// The score model: a ScoreNet read through a parameterisation (spec §2) and the kernel table
// of the current A. Turns raw network outputs into the implied score s(x, t) and the backward
// policy z_b = sqrt(beta) (s - A x) at grid times.
#pragma once

#include <string>

#include <torch/torch.h>

#include "core/diffusion.h"
#include "core/score_net.h"

namespace vsdm::core {

enum class Parameterization { kPolicy, kEps };
Parameterization ParseParameterization(const std::string& s);  // "policy" | "eps"

// Borrows `net` and `table`; both must outlive the model. Not thread-safe.
class ScoreModel {
 public:
  ScoreModel(ScoreNet& net, Parameterization param, const KernelTable& table)
      : net_(net), param_(param), table_(table) {}

  // Raw net output for states x [B, d] at per-row grid indices idx [B] (long).
  torch::Tensor OutputAtIndices(const torch::Tensor& x, const torch::Tensor& idx) const;
  // Raw net output for all rows at one grid index k.
  torch::Tensor OutputAt(const torch::Tensor& x, int64_t k) const;
  // Implied score s(x, t_k) ([B, d]).
  torch::Tensor ScoreAt(const torch::Tensor& x, int64_t k) const;
  // Backward policy z_b = sqrt(beta_k) (s - A x) ([B, d]); equals the raw output for `policy`.
  torch::Tensor PolicyAt(const torch::Tensor& x, int64_t k) const;

  const KernelTable& table() const { return table_; }

 private:
  ScoreNet& net_;
  Parameterization param_;
  const KernelTable& table_;
};

}  // namespace vsdm::core
