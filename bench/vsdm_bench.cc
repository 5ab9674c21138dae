// Throughput figures of core/ on this machine (a benchmark, not a test): DSM steps/s at the
// reference batch (200 points x 200 times, toy_resnet width 256), seconds per variational
// update (3000 trajectories x 100 steps), ODE samples/s, and float32 matmul GFLOP/s as the
// practical ceiling. usage: vsdm_bench [--threads N] [--hidden H]
#include <chrono>
#include <iostream>
#include <thread>

#include <torch/torch.h>

#include "CLI/CLI.hpp"
#include "absl/strings/str_format.h"
#include "core/beta_schedule.h"
#include "core/diffusion.h"
#include "core/dsm_trainer.h"
#include "core/sampler.h"
#include "core/threading.h"
#include "core/toy_data.h"
#include "core/variational.h"

namespace {
using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
}  // namespace

int main(int argc, char** argv) {
  int threads = 0;
  int64_t hidden = 256;
  CLI::App app{"vsdm_bench"};
  app.add_option("--threads", threads, "threads (0 = all cores)");
  app.add_option("--hidden", hidden, "toy_resnet width");
  CLI11_PARSE(app, argc, argv);
  if (threads <= 0) threads = std::max(1u, std::thread::hardware_concurrency());
  std::cout << "threads: " << vsdm::core::ConfigureThreads(threads) << "\n";
  using namespace vsdm::core;

  // 1. matmul ceiling.
  {
    torch::Tensor a = torch::randn({2048, 2048}), b = torch::randn({2048, 2048});
    torch::mm(a, b);
    auto t = Clock::now();
    const int reps = 5;
    for (int i = 0; i < reps; ++i) torch::mm(a, b);
    double s = Since(t);
    std::cout << absl::StrFormat("matmul 2048^3 float32:      %8.1f GFLOP/s\n",
                                 reps * 2.0 * 2048.0 * 2048 * 2048 / s / 1e9);
  }
  BetaSchedule sched;
  TimeGrid grid{0.001, 100};
  auto ds = ToyDataset::Create("spiral", {1.0, 8.0}).value();
  torch::Generator g = at::make_generator<at::CPUGeneratorImpl>(0);
  torch::Tensor cov = torch::eye(2, torch::kFloat64) * 100.0;
  KernelTable tab = BuildKernelTable(sched, grid, torch::zeros({2, 2}, torch::kFloat64), cov);
  torch::manual_seed(0);
  DsmTrainerOptions o;
  o.times_per_point = 200;
  DsmTrainer tr(ScoreNet("toy_resnet", 2, hidden), o);

  // 2. DSM steps/s at the reference batch.
  {
    tr.ComputeGradients(ds.Sample(200, g), g, tab);
    tr.ApplyGradients();
    auto t = Clock::now();
    const int steps = 4;
    for (int i = 0; i < steps; ++i) {
      tr.ComputeGradients(ds.Sample(200, g), g, tab);
      tr.ApplyGradients();
    }
    double s = Since(t);
    // forward flops ~ 2 * pairs * (12 H^2 + 128 H), backward ~ 2x forward
    double flops = 3.0 * 2.0 * 40000.0 * (12.0 * hidden * hidden + 130.0 * hidden) * steps;
    std::cout << absl::StrFormat("DSM step, 200x200 pairs, toy_resnet %d: %6.3f steps/s (%.2f s/step, ~%.1f GFLOP/s)\n",
                                 hidden, steps / s, s / steps, flops / s / 1e9);
  }
  // 3. Variational update: 3000 trajectories x 100 steps (simulation + exact update).
  {
    ScoreModel model(tr.ema_net(), Parameterization::kPolicy, tab);
    VariationalUpdater up(2, VariationalOptions{});
    auto t = Clock::now();
    torch::Tensor xT = SamplePrior(tab, 3000, true, g);
    VariationalStats st = ComputeVariationalStats(model, xT, 1000, g);
    up.Apply(st);
    std::cout << absl::StrFormat("variational update, 3000 traj x 100 steps: %6.2f s\n", Since(t));
  }
  // 4. ODE sampling (Heun, 100 steps = 199 net evaluations).
  {
    ScoreModel model(tr.ema_net(), Parameterization::kPolicy, tab);
    torch::Tensor xT = SamplePrior(tab, 10000, true, g);
    auto t = Clock::now();
    Sample(model, xT, Solver::kHeun, g, false);
    double s = Since(t);
    std::cout << absl::StrFormat("Heun ODE sampling, 100 steps: %8.0f samples/s (10000 in %.2f s)\n", 10000 / s, s);
  }
  return 0;
}
