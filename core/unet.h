// A UNet score network for images (model.arch: unet), after DDPM/EDM's design at small scale:
// residual blocks (GroupNorm, SiLU, dropout, a per-block projection of the time embedding),
// sinusoidal time embedding with an MLP, strided-conv downsampling / nearest upsampling with
// skip connections, and single-head self-attention at the lowest resolution.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace vsdm::core {

struct UNetOptions {
  int64_t channels = 1;                   // image channels C (input)
  int64_t height = 28;                    // H
  int64_t width = 28;                     // W
  int64_t out_channels = 0;               // 0: same as channels
  int64_t base = 32;                      // channel width of level 0 (model.channels)
  std::vector<int64_t> mult = {1, 2, 2};  // width multiplier per level; each level after the first halves H and W
  int64_t res_blocks = 1;                 // residual blocks per level (down path; up path has res_blocks + 1)
  bool attention = true;                  // self-attention at the lowest resolution
  double dropout = 0.1;
  int64_t groups = 8;          // GroupNorm groups (must divide every width)
  double time_scale = 1000.0;  // t in [0, 1] is multiplied by this before the sinusoidal embedding
};

class UNetImpl : public torch::nn::Module {
 public:
  explicit UNetImpl(const UNetOptions& options);

  // Time embedding for times t ([m], in [0, 1]): [m, embed_dim()].
  torch::Tensor TimeEmbedding(const torch::Tensor& t);
  // x [B, C, H, W], emb [B, E] or [1, E] (broadcast): [B, out_channels, H, W].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& emb);

  const UNetOptions& options() const { return options_; }
  int64_t embed_dim() const { return 4 * options_.base; }

  // TorchScript source (methods of the exporting module) computing exactly TimeEmbedding and
  // forward in eval mode (dropout off), reading this net's parameters and buffers as attributes
  // named `prefix` + name with '.' replaced by '_' (e.g. prefix "unet_" for a UNet registered
  // as submodule "unet" of the exported net). Defines:
  //   def unet_time_embedding(self, t: Tensor) -> Tensor
  //   def unet_forward(self, x: Tensor, emb: Tensor) -> Tensor
  std::string TorchScriptSource(const std::string& prefix) const;

 private:
  class ResBlockImpl;   // defined in unet.cc
  class AttentionImpl;  // defined in unet.cc

  UNetOptions options_;
  // Layers, registered as submodules in this order (module names in quotes; the TorchScript
  // source reads their parameters by these names):
  torch::Tensor freqs_;                                     // buffer "freqs" [base / 2] (at least 1)
  torch::nn::Linear time_in_{nullptr}, time_out_{nullptr};  // "time_in", "time_out"
  torch::nn::Conv2d conv_in_{nullptr};                      // "conv_in"
  // Level i: res_blocks blocks "down<i>_<j>", then (all but the last level) "down<i>_ds".
  std::vector<std::vector<std::shared_ptr<ResBlockImpl>>> down_;
  std::vector<torch::nn::Conv2d> downsample_;  // [levels - 1]
  std::shared_ptr<ResBlockImpl> mid0_, mid1_;  // "mid_res0", "mid_res1"
  std::shared_ptr<AttentionImpl> attn_;        // "mid_attn"; null without options.attention
  // up_[i]: res_blocks + 1 blocks "up<i>_<j>" at level i; upsample_[i] ("up<i>_us", i >= 1)
  // brings level i to level i - 1 (upsample_[0] is empty).
  std::vector<std::vector<std::shared_ptr<ResBlockImpl>>> up_;
  std::vector<torch::nn::Conv2d> upsample_;
  torch::nn::GroupNorm out_norm_{nullptr};  // "out_norm"
  torch::nn::Conv2d out_conv_{nullptr};     // "out_conv", initialised to zero
};
TORCH_MODULE(UNet);

// Validates options (positive sizes, groups dividing every width, H and W divisible by
// 2^(levels-1)); returns an empty string when fine, else a message naming the problem.
std::string CheckUNetOptions(const UNetOptions& options);

}  // namespace vsdm::core
