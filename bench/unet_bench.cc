// Training throughput of the image UNet (core/unet.h) on this machine (a benchmark, not a test):
// forward + MSE loss + backward + AdamW step on random [B, C, S, S] data at random times, on the
// CPU or a GPU; prints the parameter count, an analytic GFLOP/step estimate, median ms/step,
// images/s and the achieved TFLOP/s of that estimate (scripts/gpu-check.sh sets it against the
// GPU's peak).
// usage: vsdm_unet_bench [--batch 64] [--base 32] [--mult 1,2,2] [--res-blocks 1] [--no-attention]
//                        [--steps 10] [--threads 2] [--thread-mode blas|torch|both] [--channels-last] [--bf16]
//                        [--device cpu|cuda]
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <string>
#include <vector>

#include <torch/cuda.h>
#include <torch/torch.h>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "core/threading.h"
#include "core/torch_compat.h"
#include "core/unet.h"

namespace {
using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// The level (resolution S / 2^level) at which the layer owning parameter `name` produces its output.
int64_t LevelOf(const std::string& name, int64_t levels) {
  const std::string top = name.substr(0, name.find('.'));
  if (top.rfind("mid_", 0) == 0) return levels - 1;
  int64_t level = 0;
  for (const char* p : {"down", "up"}) {
    const std::string prefix = p;
    if (top.rfind(prefix, 0) != 0) continue;
    const std::string rest = top.substr(prefix.size());
    if (!absl::SimpleAtoi(rest.substr(0, rest.find('_')), &level)) return 0;
    if (rest.find("_ds") != std::string::npos) return level + 1;
    if (rest.find("_us") != std::string::npos) return level - 1;
    return level;
  }
  return 0;  // conv_in, out_*, time_*
}

// Forward multiply-adds x 2 per image: convolutions and linears from their weights, plus the
// two attention matmuls. Training is counted as 3x forward.
double ForwardFlopsPerImage(vsdm::core::UNet& net) {
  const auto& o = net->options();
  const int64_t levels = static_cast<int64_t>(o.mult.size());
  double flops = 0;
  for (const auto& p : net->named_parameters()) {
    const std::string& name = p.key();
    if (name.size() < 7 || name.compare(name.size() - 7, 7, ".weight") != 0) continue;
    const torch::Tensor& w = p.value();
    const int64_t level = LevelOf(name, levels);
    const double pixels = static_cast<double>(o.height >> level) * (o.width >> level);
    if (w.dim() == 4) flops += 2.0 * w.numel() * pixels;
    if (w.dim() == 2 && name.rfind("time_", 0) != 0) flops += 2.0 * w.numel();
  }
  if (o.attention) {
    const double n = static_cast<double>(o.height >> (levels - 1)) * (o.width >> (levels - 1));
    flops += 4.0 * o.base * o.mult.back() * n * n;
  }
  return flops;
}

void SetBlasThreads(int n) {
  using SetThreads = void (*)(int);
  auto set_blas = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (set_blas != nullptr) set_blas(n);
}

// Waits for the work queued on `device` (a no-op on the CPU, whose ops return done), so the clock
// reads what the step took rather than how long it took to queue.
void Barrier(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize();
}
}  // namespace

int main(int argc, char** argv) {
  int64_t batch = 64, size = 28, channels = 1;
  vsdm::core::UNetOptions o;
  std::string mult = "1,2,2", thread_mode = "both", device_name = "cpu";
  int steps = 10, warmup = 2, threads = 2, interop = 0;
  bool channels_last = false, bf16 = false;
  CLI::App app{"vsdm_unet_bench"};
  app.add_option("--batch", batch, "images per step");
  app.add_option("--size", size, "image height = width");
  app.add_option("--channels", channels, "image channels");
  app.add_option("--base", o.base, "level-0 width");
  app.add_option("--mult", mult, "width multipliers per level, comma-separated");
  app.add_option("--res-blocks", o.res_blocks, "residual blocks per level (down path)");
  app.add_flag("--attention,!--no-attention", o.attention, "self-attention at the lowest resolution");
  app.add_option("--groups", o.groups, "GroupNorm groups");
  app.add_option("--dropout", o.dropout, "dropout probability");
  app.add_option("--steps", steps, "timed steps");
  app.add_option("--warmup", warmup, "untimed steps first");
  app.add_option("--threads", threads, "threads");
  app.add_option("--thread-mode", thread_mode,
                 "blas: core::ConfigureThreads (threads to OpenBLAS, 1 torch); torch: threads to torch, 1 to "
                 "OpenBLAS; both: threads to each")
      ->check(CLI::IsMember({"blas", "torch", "both"}));
  app.add_option("--interop", interop, "torch inter-op threads (0: leave default)");
  app.add_flag("--channels-last", channels_last, "channels_last parameters and input");
  app.add_flag("--bf16", bf16, "autocast to bfloat16 for the forward pass (on --device)");
  app.add_option("--device", device_name, "cpu | cuda: where the model, the data and the optimiser state live")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  CLI11_PARSE(app, argc, argv);

  o.mult.clear();
  for (absl::string_view m : absl::StrSplit(mult, ',')) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(m, &v)) {
      std::cerr << "--mult: not an integer list: " << mult << "\n";
      return 2;
    }
    o.mult.push_back(v);
  }
  o.channels = channels;
  o.height = o.width = size;
  if (std::string problem = vsdm::core::CheckUNetOptions(o); !problem.empty()) {
    std::cerr << "options: " << problem << "\n";
    return 2;
  }
  if (device_name == "cuda" && !torch::cuda::is_available()) {
    std::cerr << "--device cuda: no CUDA device is visible (a CPU LibTorch, or no GPU)\n";
    return 2;
  }
  const torch::Device device(device_name);
  const vsdm::core::Precision precision = bf16 ? vsdm::core::Precision::kBf16 : vsdm::core::Precision::kFp32;
  if (interop > 0) at::set_num_interop_threads(interop);
  std::string threading;
  if (thread_mode == "blas") {
    threading = vsdm::core::ConfigureThreads(threads);
  } else {
    SetBlasThreads(thread_mode == "torch" ? 1 : threads);
    torch::set_num_threads(threads);
    threading = absl::StrFormat("%d torch threads, %d OpenBLAS threads", threads, thread_mode == "torch" ? 1 : threads);
  }

  torch::manual_seed(0);
  vsdm::core::UNet net(o);
  {
    // The zero-initialised output layer would make the first steps cheaper than the rest.
    torch::NoGradGuard g;
    for (auto& p : net->named_parameters())
      if (p.key().rfind("out_conv.", 0) == 0) p.value().normal_(0.0, 0.01);
  }
  net->to(device);  // before the optimiser: its state is made on the parameters' device
  const auto memory_format = channels_last ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
  if (channels_last) {
    torch::NoGradGuard g;
    for (auto& p : net->parameters())
      if (p.dim() == 4) p.set_data(p.data().contiguous(memory_format));
  }
  int64_t params = 0;
  for (const auto& p : net->parameters()) params += p.numel();
  const double gflop_step = 3.0 * ForwardFlopsPerImage(net) * batch / 1e9;
  torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(2e-4));
  const auto on_device = torch::TensorOptions().dtype(torch::kFloat32).device(device);

  std::vector<double> times;
  for (int s = 0; s < warmup + steps; ++s) {
    torch::Tensor x = torch::randn({batch, channels, size, size}, on_device).contiguous(memory_format);
    torch::Tensor target = torch::randn({batch, channels, size, size}, on_device);
    torch::Tensor t = torch::rand({batch}, on_device);
    Barrier(device);  // the data is made before the clock starts
    const auto start = Clock::now();
    opt.zero_grad();
    torch::Tensor out;
    {
      // The forward pass under autocast; its cast weights are dropped when the guard ends.
      vsdm::core::AutocastGuard autocast(device, precision);
      out = net->forward(x, net->TimeEmbedding(t));
    }
    torch::Tensor loss = torch::mse_loss(out.to(torch::kFloat32), target);
    loss.backward();
    opt.step();
    Barrier(device);  // the step's kernels have finished
    if (s >= warmup) times.push_back(Since(start));
  }
  std::sort(times.begin(), times.end());
  const double median = times[times.size() / 2];
  std::cout << absl::StrFormat(
      "unet base %d mult %s rb %d attn %d | batch %d %dx%dx%d | %s | %s%s%s | params %d | %.2f GFLOP/step | "
      "%.1f ms/step (min %.1f) | %.1f images/s | %.1f GFLOP/s | %.3f TFLOP/s\n",
      o.base, mult, o.res_blocks, o.attention ? 1 : 0, batch, channels, size, size, device.str(),
      device.is_cuda() ? "torch on the GPU" : threading, channels_last ? " | channels_last" : "",
      bf16 ? " | bf16 autocast" : "", params, gflop_step, 1e3 * median, 1e3 * times.front(), batch / median,
      gflop_step / median, gflop_step / median / 1e3);
  return 0;
}
