// The variational score update of spec §3, split in two halves so they can run on different
// ranks: ComputeVariationalStats simulates backward trajectories and reduces them to
// sufficient statistics (a few numbers per trajectory group); VariationalUpdater turns
// statistics into the next A with the `exact`, `sa` or `adam` rule and the PD projection.
#pragma once

#include <string>

#include <torch/torch.h>

#include "core/sampler.h"
#include "core/score_model.h"

namespace vsdm::core {

// Sufficient statistics over (trajectory, step) pairs, kept per group of trajectories (the
// `adam` rule draws minibatches of groups). All float64.
//   sxx[g] = sum beta x x^T,  szx[g] = sum sqrt(beta) z_b x^T,  sbeta[g] = sum beta,
//   count[g] = number of pairs.
struct VariationalStats {
  torch::Tensor sxx;    // [G, d, d]
  torch::Tensor szx;    // [G, d, d]
  torch::Tensor sbeta;  // [G]
  torch::Tensor count;  // [G]
  double dt = 0.01;     // the simulation step Delta

  int64_t groups() const { return sxx.size(0); }
  // One flat float64 vector (for a broadcast), and back.
  torch::Tensor Flatten() const;
  static VariationalStats Unflatten(const torch::Tensor& flat, int64_t groups, int64_t dim, double dt);
  static int64_t FlatSize(int64_t groups, int64_t dim) { return groups * (2 * dim * dim + 2); }
};

// Simulates trajectories of the backward SDE with `model` (EMA net, current A) from x_T
// ([K, d]) over the table's grid and accumulates the statistics of spec §3 at every state
// before each step. `group_size` trajectories per group (the last group may be smaller).
VariationalStats ComputeVariationalStats(const KernelTable& table, const ScoreFn& score, const torch::Tensor& x_T,
                                         int64_t group_size, torch::Generator& gen);
inline VariationalStats ComputeVariationalStats(const ScoreModel& model, const torch::Tensor& x_T, int64_t group_size,
                                                torch::Generator& gen) {
  return ComputeVariationalStats(model.table(), ScoreFnOf(model), x_T, group_size, gen);
}

struct VariationalOptions {
  bool diagonal = false;         // form: diagonal keeps only the diagonals of S_xx, S_zx
  std::string update = "exact";  // exact | sa | adam
  double interact = 1.0;         // zeta
  double lr = 1.0;               // rho (exact), eta_0 (sa), adam lr
  double decay = 0.6;            // alpha (sa)
  double d_min = 0.05;           // floor of the smallest eigenvalue of sym(D)
  int64_t adam_steps = 100;
  int64_t seed = 0;  // adam's minibatch draws
};

struct UpdateInfo {
  torch::Tensor a_star;        // the exact minimiser of this round's loss (float64)
  double grad_norm = 0.0;      // |grad L| before the update
  bool projected = false;      // the PD floor bound
  double min_eig_sym_d = 0.0;  // smallest eigenvalue of sym(D) (VSMD: min 1 - 2c) after the update
};

// Loss gradient and minimiser of spec §3 for statistics `s` (totals over all groups, or one
// group) at A ([d, d] float64).
torch::Tensor VariationalGradient(const VariationalStats& s, const torch::Tensor& A, double zeta, bool diagonal,
                                  int64_t group = -1);
torch::Tensor VariationalMinimizer(const VariationalStats& s, double zeta, bool diagonal);
// Projects A so that the symmetric part of D = I - 2A has eigenvalues >= d_min. Returns
// whether it changed A.
bool ProjectPositiveDefinite(torch::Tensor& A, double d_min, bool diagonal, double* min_eig_after);

// The round's loss as a function of the variational parameter phi (A for VSDM, c for VSMD),
// read from sufficient statistics. The update rules of VariationalUpdater only need these.
class VariationalObjective {
 public:
  virtual ~VariationalObjective() = default;
  // dL/dphi over all groups (group < 0) or one group.
  virtual torch::Tensor Gradient(const VariationalStats& s, const torch::Tensor& phi, int64_t group) const = 0;
  // The minimiser of this round's loss.
  virtual torch::Tensor Minimizer(const VariationalStats& s) const = 0;
  // Projects phi onto the safe set; returns whether it changed phi. `floor_after`: the
  // smallest damping after (min eigenvalue of sym(D) for VSDM, min(1 - 2c) for VSMD).
  virtual bool Project(torch::Tensor& phi, double* floor_after) const = 0;
};
// The VSDM objective on A (spec §3), with `options`' zeta, form and d_min.
std::shared_ptr<const VariationalObjective> MakeLinearScoreObjective(const VariationalOptions& options);

// Holds the variational parameter and the update rule's state across rounds. Not thread-safe.
class VariationalUpdater {
 public:
  // VSDM: A = 0 ([dim, dim]) with the linear-score objective.
  VariationalUpdater(int64_t dim, const VariationalOptions& options);
  // Any objective, starting from `initial` (float64).
  VariationalUpdater(const torch::Tensor& initial, const VariationalOptions& options,
                     std::shared_ptr<const VariationalObjective> objective);

  // Applies one round's statistics; returns what happened. Advances the round counter.
  UpdateInfo Apply(const VariationalStats& stats);

  // The parameter: A [d, d] float64 (diagonal form: diagonal) for VSDM, c [d] for VSMD.
  const torch::Tensor& A() const { return A_; }
  int64_t round() const { return round_; }
  // State for checkpoints: A, adam moments, [adam step, round], the minibatch RNG state.
  std::vector<torch::Tensor> State() const;
  void LoadState(const std::vector<torch::Tensor>& state);

 private:
  VariationalOptions options_;
  std::shared_ptr<const VariationalObjective> objective_;
  torch::Tensor A_;
  torch::Tensor adam_m_, adam_v_;
  int64_t adam_t_ = 0;
  int64_t round_ = 0;
  torch::Generator gen_;
};

}  // namespace vsdm::core
