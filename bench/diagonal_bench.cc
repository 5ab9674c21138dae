// The diagonal variational update at image sizes (a benchmark, not a test): for d = 784
// (28x28), 3 072 (32x32x3) and 12 288 (64x64x3), the time to build the per-coordinate kernel
// table for a new A, to simulate K backward trajectories x N steps and reduce them to the
// diagonal statistics (the variational math alone: the score is a fixed elementwise function,
// so the network's cost, which bench/unet_bench.cc measures, is left out), and to apply the
// exact update with its projection; with --dense, the same round through the dense path's
// d x d diagonal matrices at the smallest d, for the ratio.
// usage: vsdm_diagonal_bench [--threads N] [--trajectories K] [--steps N] [--dense]
#include <chrono>
#include <iostream>
#include <thread>

#include <torch/torch.h>

#include "CLI/CLI.hpp"
#include "absl/strings/str_format.h"
#include "core/diagonal_process.h"
#include "core/diffusion.h"
#include "core/threading.h"
#include "core/variational.h"

namespace {
using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
torch::Tensor Score(const torch::Tensor& x, int64_t) { return -x; }

struct Round {
  double table_s = 0, stats_s = 0, update_s = 0;
  int64_t table_bytes = 0;
};

int64_t Bytes(const std::vector<torch::Tensor>& ts) {
  int64_t b = 0;
  for (const auto& t : ts) b += t.numel() * t.element_size();
  return b;
}

Round VectorRound(int64_t d, int64_t K, int64_t steps) {
  using namespace vsdm::core;
  Round r;
  torch::Generator g = at::make_generator<at::CPUGeneratorImpl>(0);
  torch::Tensor a = torch::full({d}, 0.1, torch::kFloat64);
  auto t = Clock::now();
  DiagonalKernelTable tab =
      BuildDiagonalKernelTable(BetaSchedule{}, TimeGrid{0.001, steps}, a, torch::full({d}, 0.5, torch::kFloat64));
  r.table_s = Since(t);
  r.table_bytes = Bytes({tab.mean, tab.std, tab.inv_std, tab.input_scale});
  t = Clock::now();
  VariationalStats s = DiagonalVariationalStats(tab, Score, DiagonalPrior(tab, K, true, g), 16, g);
  r.stats_s = Since(t);
  VariationalOptions o;
  VariationalUpdater up(a, o, MakeDiagonalObjective(o.interact, o.d_min));
  t = Clock::now();
  up.Apply(s);
  r.update_s = Since(t);
  return r;
}

Round DenseRound(int64_t d, int64_t K, int64_t steps) {
  using namespace vsdm::core;
  Round r;
  torch::Generator g = at::make_generator<at::CPUGeneratorImpl>(0);
  torch::Tensor a = torch::full({d}, 0.1, torch::kFloat64);
  auto t = Clock::now();
  KernelTable tab = BuildKernelTable(BetaSchedule{}, TimeGrid{0.001, steps}, a, torch::eye(d, torch::kFloat64) * 0.5);
  r.table_s = Since(t);
  r.table_bytes = Bytes({tab.mean, tab.chol, tab.chol_inv_t, tab.input_scale});
  t = Clock::now();
  VariationalStats s = ComputeVariationalStats(tab, Score, SamplePrior(tab, K, true, g), 16, g);
  r.stats_s = Since(t);
  VariationalOptions o;
  o.diagonal = true;
  VariationalUpdater up(torch::diag(a), o, MakeLinearScoreObjective(o));
  t = Clock::now();
  up.Apply(s);
  r.update_s = Since(t);
  return r;
}

void Print(const char* path, int64_t d, const Round& r) {
  std::cout << absl::StrFormat(
      "%-6s d = %6d: table %8.3f s (%8.1f MB)  trajectories+statistics %7.3f s  update %7.4f s\n", path, d, r.table_s,
      r.table_bytes / 1e6, r.stats_s, r.update_s);
}
}  // namespace

int main(int argc, char** argv) {
  int threads = 0;
  int64_t K = 32, steps = 50;
  bool dense = false;
  CLI::App app{"vsdm_diagonal_bench"};
  app.add_option("--threads", threads, "threads (0 = all cores)");
  app.add_option("--trajectories", K, "backward trajectories per round");
  app.add_option("--steps", steps, "simulation steps");
  app.add_flag("--dense", dense, "also run the dense path at d = 784");
  CLI11_PARSE(app, argc, argv);
  if (threads <= 0) threads = std::max(1u, std::thread::hardware_concurrency());
  std::cout << "threads: " << vsdm::core::ConfigureThreads(threads) << "; " << K << " trajectories x " << steps
            << " steps\n";
  for (int64_t d : {784, 3072, 12288}) Print("vector", d, VectorRound(d, K, steps));
  if (dense) Print("dense", 784, DenseRound(784, K, steps));
  return 0;
}
