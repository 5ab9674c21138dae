// Backward-score training (spec §2): the DSM loss in the `policy` or `eps` parameterisation,
// AdamW, and an EMA of the weights. The step is split in two (gradients, then the optimiser
// step) so that a distributed trainer can average gradients in between.
#pragma once

#include <torch/torch.h>

#include "core/diffusion.h"
#include "core/process.h"
#include "core/score_model.h"
#include "core/score_net.h"
#include "core/torch_compat.h"

namespace vsdm::core {

struct DsmTrainerOptions {
  Parameterization param = Parameterization::kPolicy;
  double lr = 1e-3;   // AdamW learning rate
  double ema = 0.99;  // EMA decay (with warm-up min(ema, (1+n)/(10+n)))
  int64_t times_per_point = 1;
  double grad_clip = 0.0;                  // clip the global gradient norm before each step (0: off)
  Precision precision = Precision::kFp32;  // the net's forward/backward under autocast (train.precision)
};

// The DSM pair of spec §2 for data x0 [n, d] and noise eps [n, d] with per-row kernel
// matrices M, L, L^{-T} [n, d, d], sqrt(beta) [n] and A [d, d] (any float dtype):
// x_t = M x0 + L eps; score = -L^{-T} eps; policy target y = sqrt(beta) (score - A x_t).
struct DsmPair {
  torch::Tensor xt, score, policy_target;
};
DsmPair MakeDsmPair(const torch::Tensor& x0, const torch::Tensor& eps, const torch::Tensor& M, const torch::Tensor& L,
                    const torch::Tensor& chol_inv_t, const torch::Tensor& sqrt_beta, const torch::Tensor& A);

// The DSM loss of `net` under `table` for data x0 [B, d] with the draws given: grid indices idx
// [n] and noise eps [n, d], n = B * times_per_point.
torch::Tensor DsmLoss(ScoreNet& net, Parameterization param, int64_t times_per_point, const torch::Tensor& x0,
                      const torch::Tensor& idx, const torch::Tensor& eps, const KernelTable& table);

// Owns the network, its EMA copy and the optimiser. Not thread-safe.
class DsmTrainer {
 public:
  DsmTrainer(ScoreNet net, const DsmTrainerOptions& options);

  // The DSM loss on data points x0 [B, d] under `table` (B * times_per_point pairs), drawing
  // times and noise from `gen`. Differentiable.
  torch::Tensor Loss(const torch::Tensor& x0, torch::Generator& gen, const KernelTable& table);
  // The same loss with the draws given: time indices idx [n] into `table` and noise eps [n, d]
  // (n = B * times_per_point). A data-parallel test feeds shards of one batch's draws here.
  torch::Tensor Loss(const torch::Tensor& x0, const torch::Tensor& idx, const torch::Tensor& eps,
                     const KernelTable& table);
  // Zeroes gradients, computes the loss and its gradients; returns the loss, detached, as a
  // 0-dim float32 tensor on the net's device. Note [No host sync in a step]: nothing here (nor in
  // ApplyGradients) reads a device value on the host; the caller reads losses once per round.
  torch::Tensor ComputeGradients(const torch::Tensor& x0, torch::Generator& gen, const KernelTable& table);
  torch::Tensor ComputeGradients(const torch::Tensor& x0, const torch::Tensor& idx, const torch::Tensor& eps,
                                 const KernelTable& table);
  // The same under any forward process (its own loss and draws).
  torch::Tensor ComputeGradients(const torch::Tensor& x0, torch::Generator& gen, const Process& process);
  // One AdamW step with the current gradients (norm-clipped to grad_clip when set, with the
  // clip factor computed on the device), then the EMA update.
  void ApplyGradients();

  ScoreNet& net() { return net_; }
  ScoreNet& ema_net() { return ema_; }
  torch::optim::AdamW& optimizer() { return *opt_; }
  int64_t steps() const { return steps_; }
  void set_steps(int64_t s) { steps_ = s; }

 private:
  DsmTrainerOptions options_;
  ScoreNet net_;
  ScoreNet ema_;
  std::unique_ptr<torch::optim::AdamW> opt_;
  int64_t steps_ = 0;
};

}  // namespace vsdm::core
