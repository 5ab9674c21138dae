// Score networks for point data: the reference toy network (`toy_resnet`,
// official-code-notes §5.2) and a plain `mlp`. Both split into a time branch and a state
// branch so that the time branch can run once per distinct time (the grid has N+1 of them)
// instead of once per point.
#pragma once

#include <string>

#include <mutex>

#include <torch/torch.h>

#include "core/torch_compat.h"
#include "core/unet.h"

namespace vsdm::core {

// Multiplies t in [0, 1] before the sinusoidal embedding (the reference feeds t_idx = t N
// with N = 100).
inline constexpr double kTimeEmbeddingScale = 100.0;
inline constexpr int64_t kTimeEmbeddingDim = 128;

// The forecasting net (arch `forecast`): rows are packed windows [x_t target H*D | context C*D |
// covariates F] (core/forecast_process.h). A temporal-convolution encoder (three causal-free 1-D
// convolutions over the C context steps, dilations 1, 2, 4, residual, SiLU) is pooled (the last
// step's features, their mean, the last observed values, the covariates) into a condition
// embedding; the score branch is the toy_resnet over the H*D target with the condition
// and the time added at its input, and the time again at its head.
struct ForecastNetOptions {
  int64_t horizon = 0, context = 0, series = 0, covariates = 0;  // H, C, D, F
  int64_t channels = 32;                                          // encoder width
  double dropout = 0.0;                                           // in the score branch's blocks
};

struct ScoreNetOptions {
  std::string arch = "toy_resnet";  // toy_resnet | mlp | unet | forecast
  int64_t dim = 2;                  // input width (the state)
  int64_t hidden = 256;             // toy_resnet / mlp width
  int64_t out_dim = 0;              // output width (0: same as dim)
  UNetOptions unet;                 // unet: image shape and widths; dim must equal C H W
  ForecastNetOptions forecast;      // forecast: dim must equal (H + C) D + F, out_dim H D
};

// Every arch reads and writes flat rows [B, d]; the unet views them as [B, C, H, W] images.
class ScoreNetImpl : public torch::nn::Module {
 public:
  // `arch`: toy_resnet | mlp. `dim`: input width (the state); `hidden`: width; `out_dim`: output
  // width (0: same as `dim`; VSMD reads (x, v) and outputs the velocity noise only).
  ScoreNetImpl(std::string arch, int64_t dim, int64_t hidden, int64_t out_dim = 0);
  explicit ScoreNetImpl(const ScoreNetOptions& options);

  // Time features for times t ([m] in [0, 1]): [m, hidden].
  torch::Tensor TimeFeatures(const torch::Tensor& t);
  // Output for states x ([B, dim], already input-scaled) and time features tf ([B, hidden]
  // or [1, hidden], broadcast): [B, out_dim].
  torch::Tensor ForwardFeatures(const torch::Tensor& x, const torch::Tensor& tf);
  // Convenience: output at times t ([B] or [1]).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t);

  // train.precision: kBf16 runs TimeFeatures and ForwardFeatures under autocast on the input's
  // device (ForwardFeatures' output is float32 either way; TimeFeatures' is bfloat16, as it
  // only feeds ForwardFeatures). Not copied by CloneScoreNet: an EMA copy
  // samples in float32.
  void set_precision(Precision p) { precision_ = p; }
  Precision precision() const { return precision_; }

  const std::string& arch() const { return arch_; }
  int64_t dim() const { return dim_; }
  int64_t out_dim() const { return out_dim_; }
  int64_t hidden() const { return hidden_; }
  const ScoreNetOptions& options() const { return options_; }
  // The image network when arch is unet, else null.
  UNet unet() const { return unet_; }

  // The 64 embedding frequencies f_k = exp(-ln(10000) k / 64).
  static torch::Tensor EmbeddingFrequencies();

 private:
  ScoreNetOptions options_;
  Precision precision_ = Precision::kFp32;
  torch::Tensor TimeFeaturesImpl(const torch::Tensor& t);
  torch::Tensor ForwardFeaturesImpl(const torch::Tensor& x, const torch::Tensor& tf);
  std::string arch_;
  int64_t dim_, hidden_, out_dim_;
  UNet unet_{nullptr};
  torch::Tensor freqs_;  // buffer [64]
  std::vector<torch::nn::Conv1d> enc_;  // forecast: the context encoder
  torch::nn::Linear enc_out_{nullptr};   // forecast: flattened encoder features + covariates -> hidden
  torch::Tensor ForecastForward(const torch::Tensor& x, const torch::Tensor& tf);
  torch::nn::Linear t_in_{nullptr}, t_out_{nullptr}, x_in_{nullptr};
  std::vector<torch::nn::Linear> blocks_;  // toy_resnet: 3 x 3; mlp: 2
  torch::nn::Linear head1_{nullptr}, head2_{nullptr};
};
TORCH_MODULE(ScoreNet);

// A deep copy of `net` (same arch, same parameter values), e.g. for the EMA.
ScoreNet CloneScoreNet(ScoreNet& net);

// Network construction draws its initial weights from torch's global generator. Whoever seeds
// that generator and builds a network (JobSetup::MakeNet) holds this lock, and every ScoreNet
// constructor takes it too, so ranks that are threads of one process cannot shift each
// other's draws. Recursive: the seeding caller holds it while constructing.
std::recursive_mutex& NetInitMutex();

}  // namespace vsdm::core
