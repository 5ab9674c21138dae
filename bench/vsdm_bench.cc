// Throughput figures of core/ on this machine (a benchmark, not a test): DSM steps/s at the
// reference batch (200 points x 200 times, toy_resnet width 256; the median of --steps timed
// steps after 2 warm-up steps), seconds per variational update (3000 trajectories x 100 steps),
// ODE samples/s, and float32 matmul GFLOP/s as the practical ceiling.
// usage: vsdm_bench [--threads N] [--hidden H] [--steps 9] [--precision fp32|bf16] [--device cpu|cuda]
//                   [--step-only] [--thread-mode blas|torch|both]
// bench/step_vs_reference.sh runs the step beside bench/reference_step.py (the reference code's
// eager step) and prints the ratio.
#include <algorithm>
#include <chrono>
#include <iostream>
#include <thread>
#include <vector>

#include <torch/torch.h>

#include "CLI/CLI.hpp"
#include "absl/strings/str_format.h"
#include "core/beta_schedule.h"
#include "core/diffusion.h"
#include "core/dsm_trainer.h"
#include "core/sampler.h"
#include "core/threading.h"
#include "core/torch_compat.h"
#include "core/toy_data.h"
#include "core/variational.h"

namespace {
using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Multiply-adds per (x, t) pair of one forward pass: every weight of the state branch and the
// head (the time branch runs once per grid time, 101 rows, and is left out). x2 for FLOPs, x3
// for forward + backward. toy_resnet 256: 656 384 MACs a pair, 157.5 GFLOP a step of 40 000 pairs.
double StepFlops(vsdm::core::ScoreNet& net, double pairs) {
  double macs = 0;
  for (const auto& p : net->named_parameters()) {
    const std::string& name = p.key();
    if (name.rfind("t_", 0) == 0 || p.value().dim() != 2) continue;
    macs += static_cast<double>(p.value().numel());
  }
  return 3.0 * 2.0 * pairs * macs;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}
}  // namespace

int main(int argc, char** argv) {
  int threads = 0;
  int64_t hidden = 256;
  int timed = 9;
  std::string precision = "fp32", device_name = "cpu", thread_mode = "auto";
  bool step_only = false;
  CLI::App app{"vsdm_bench"};
  app.add_option("--threads", threads, "threads (0 = all cores)");
  app.add_option("--hidden", hidden, "toy_resnet width");
  app.add_option("--steps", timed, "timed DSM steps (the median is reported)")->check(CLI::Range(1, 1000));
  app.add_option("--precision", precision, "train.precision of the step")->check(CLI::IsMember({"fp32", "bf16"}));
  app.add_option("--device", device_name, "cpu | cuda");
  app.add_option("--thread-mode", thread_mode, "auto (the runtime's choice) | blas | torch | both")
      ->check(CLI::IsMember({"auto", "blas", "torch", "both"}));
  app.add_flag("--step-only", step_only, "only the DSM step figure");
  CLI11_PARSE(app, argc, argv);
  using namespace vsdm::core;
  std::cout << "allocator: " << ConfigureAllocator() << "\n";  // as vsdm-train (core/threading.h)
  if (threads <= 0) threads = std::max(1u, std::thread::hardware_concurrency());
  const Precision prec = ParsePrecision(precision).value();
  auto device_or = ParseDevice(device_name);
  if (!device_or.ok()) {
    std::cerr << device_or.status().message() << "\n";
    return 2;
  }
  const torch::Device device = *device_or;
  const ThreadMode mode = thread_mode == "auto" ? DefaultThreadMode(prec) : ParseThreadMode(thread_mode);
  std::cout << "threads: " << ConfigureThreads(threads, mode) << "\n";

  // 1. matmul ceiling.
  if (!step_only) {
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
  torch::Generator g = MakeDeviceGenerator(device, 0);
  torch::Tensor cov = torch::eye(2, torch::kFloat64) * 100.0;
  KernelTable tab = BuildKernelTable(sched, grid, torch::zeros({2, 2}, torch::kFloat64), cov);
  tab.MoveTo(device);
  torch::manual_seed(0);
  DsmTrainerOptions o;
  o.times_per_point = 200;
  o.precision = prec;
  ScoreNet net("toy_resnet", 2, hidden);
  net->to(device);
  DsmTrainer tr(net, o);

  // 2. DSM steps/s at the reference batch (the loss read once at the end, as the runtime does).
  {
    const double flops = StepFlops(tr.net(), 40000.0);
    torch::Tensor sum = torch::zeros({}, torch::TensorOptions().device(device));
    for (int i = 0; i < 2; ++i) {
      sum += tr.ComputeGradients(ds.Sample(200, g).to(device), g, tab);
      tr.ApplyGradients();
    }
    sum.item<double>();  // a device barrier before the clock starts
    std::vector<double> times;
    for (int i = 0; i < timed; ++i) {
      auto t = Clock::now();
      sum += tr.ComputeGradients(ds.Sample(200, g).to(device), g, tab);
      tr.ApplyGradients();
      if (device.is_cuda()) sum.item<double>();  // the step's kernels finished
      times.push_back(Since(t));
    }
    const double med = Median(times);
    std::cout << absl::StrFormat(
        "DSM step %s %s, 200x200 pairs, toy_resnet %d: median %.3f s/step (%.3f steps/s) over %d steps [%.3f .. %.3f], "
        "%.1f GFLOP/step, %.1f GFLOP/s\n",
        PrecisionName(prec), device.str(), hidden, med, 1.0 / med, timed, *std::min_element(times.begin(), times.end()),
        *std::max_element(times.begin(), times.end()), flops / 1e9, flops / med / 1e9);
  }
  if (step_only) return 0;
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
