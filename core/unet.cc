#include "core/unet.h"

#include <cmath>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "core/score_net.h"

namespace vsdm::core {
namespace {

constexpr double kGroupNormEps = 1e-5;

// A TorchScript float literal that reads back as exactly `v`.
std::string FloatLit(double v) {
  std::string s = absl::StrFormat("%.17g", v);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

// `self.<prefix><path with '.' -> '_'>`: the exported attribute holding a parameter.
std::string Attr(const std::string& prefix, const std::string& path) {
  return absl::StrCat("self.", prefix, absl::StrReplaceAll(path, {{".", "_"}}));
}

// TorchScript of torch.conv2d with the conv's weight and bias at `path`.
std::string ConvSource(const std::string& prefix, const std::string& path, const std::string& in, int64_t stride,
                       int64_t padding) {
  return absl::StrCat("torch.conv2d(", in, ", ", Attr(prefix, path + ".weight"), ", ", Attr(prefix, path + ".bias"),
                      ", [", stride, ", ", stride, "], [", padding, ", ", padding, "])");
}

std::string GroupNormSource(const std::string& prefix, const std::string& path, const std::string& in, int64_t groups) {
  return absl::StrCat("torch.group_norm(", in, ", ", groups, ", ", Attr(prefix, path + ".weight"), ", ",
                      Attr(prefix, path + ".bias"), ", ", FloatLit(kGroupNormEps), ")");
}

std::string LinearSource(const std::string& prefix, const std::string& path, const std::string& in) {
  return absl::StrCat("torch.linear(", in, ", ", Attr(prefix, path + ".weight"), ", ", Attr(prefix, path + ".bias"),
                      ")");
}

torch::nn::Conv2d Conv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2));
}

// GroupNorm in float32 under bf16 autocast: LibTorch 1.13's CPU autocast hands group_norm a
// bfloat16 input with its float32 weights, which it refuses; the next conv casts back.
torch::Tensor Normed(torch::nn::GroupNorm& norm, const torch::Tensor& x) {
  return norm(x.scalar_type() == torch::kBFloat16 ? x.to(torch::kFloat32) : x);
}

torch::nn::GroupNorm Norm(int64_t groups, int64_t channels) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, channels).eps(kGroupNormEps));
}

}  // namespace

// GroupNorm -> SiLU -> conv3x3 -> + Linear(SiLU(emb)) per channel -> GroupNorm -> SiLU -> Dropout
// -> conv3x3, plus the input (through a 1x1 conv when the widths differ), divided by sqrt(2).
class UNetImpl::ResBlockImpl : public torch::nn::Module {
 public:
  ResBlockImpl(int64_t in, int64_t out, int64_t embed, int64_t groups, double dropout)
      : groups_(groups), dropout_(dropout) {
    norm1_ = register_module("norm1", Norm(groups, in));
    conv1_ = register_module("conv1", Conv(in, out, 3));
    temb_ = register_module("temb", torch::nn::Linear(embed, out));
    norm2_ = register_module("norm2", Norm(groups, out));
    conv2_ = register_module("conv2", Conv(out, out, 3));
    if (in != out) skip_ = register_module("skip", Conv(in, out, 1));
  }

  // x [B, in, H, W]; silu_emb = SiLU(emb), [B or 1, E].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& silu_emb) {
    torch::Tensor h = conv1_(torch::silu(Normed(norm1_, x)));
    h = h + temb_(silu_emb).unsqueeze(2).unsqueeze(3);
    h = conv2_(torch::dropout(torch::silu(Normed(norm2_, h)), dropout_, is_training()));
    return (h + (skip_ ? skip_(x) : x)) * M_SQRT1_2;
  }

  // Lines computing `out_var` from `in_var` (and `se`, the SiLU of the embedding), eval mode.
  std::string Source(const std::string& prefix, const std::string& path, const std::string& in_var,
                     const std::string& out_var) const {
    const std::string p = path + ".";
    std::string s;
    absl::StrAppend(&s, "    r = ",
                    ConvSource(prefix, p + "conv1",
                               "torch.silu(" + GroupNormSource(prefix, p + "norm1", in_var, groups_) + ")", 1, 1),
                    "\n");
    absl::StrAppend(&s, "    r = r + ", LinearSource(prefix, p + "temb", "se"), ".unsqueeze(2).unsqueeze(3)\n");
    absl::StrAppend(
        &s, "    r = ",
        ConvSource(prefix, p + "conv2", "torch.silu(" + GroupNormSource(prefix, p + "norm2", "r", groups_) + ")", 1, 1),
        "\n");
    const std::string skip = skip_ ? ConvSource(prefix, p + "skip", in_var, 1, 0) : in_var;
    absl::StrAppend(&s, "    ", out_var, " = (r + ", skip, ") * ", FloatLit(M_SQRT1_2), "\n");
    return s;
  }

 private:
  int64_t groups_;
  double dropout_;
  torch::nn::GroupNorm norm1_{nullptr}, norm2_{nullptr};
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, skip_{nullptr};
  torch::nn::Linear temb_{nullptr};
};

// Single-head self-attention over the H*W positions: GroupNorm, 1x1 conv to q, k, v,
// softmax(q^T k / sqrt(c)), 1x1 output projection; (x + out) / sqrt(2).
class UNetImpl::AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(int64_t channels, int64_t groups) : channels_(channels), groups_(groups) {
    norm_ = register_module("norm", Norm(groups, channels));
    qkv_ = register_module("qkv", Conv(channels, 3 * channels, 1));
    proj_ = register_module("proj", Conv(channels, channels, 1));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    const int64_t b = x.size(0), c = channels_, h = x.size(2), w = x.size(3);
    torch::Tensor qkv = qkv_(Normed(norm_, x));
    torch::Tensor q = qkv.narrow(1, 0, c).reshape({b, c, h * w});
    torch::Tensor k = qkv.narrow(1, c, c).reshape({b, c, h * w});
    torch::Tensor v = qkv.narrow(1, 2 * c, c).reshape({b, c, h * w});
    torch::Tensor a = torch::softmax(torch::bmm(q.transpose(1, 2), k) * Scale(), 2);  // [b, query, key]
    torch::Tensor o = torch::bmm(v, a.transpose(1, 2)).reshape({b, c, h, w});
    return (x + proj_(o)) * M_SQRT1_2;
  }

  std::string Source(const std::string& prefix, const std::string& path, const std::string& var) const {
    const std::string p = path + ".";
    const int64_t c = channels_;
    std::string s;
    absl::StrAppend(&s, "    ab = ", var, ".size(0)\n    ah = ", var, ".size(2)\n    aw = ", var, ".size(3)\n");
    absl::StrAppend(
        &s, "    qkv = ", ConvSource(prefix, p + "qkv", GroupNormSource(prefix, p + "norm", var, groups_), 1, 0), "\n");
    absl::StrAppend(&s, "    q = qkv.narrow(1, 0, ", c, ").reshape([ab, ", c, ", ah * aw])\n");
    absl::StrAppend(&s, "    k = qkv.narrow(1, ", c, ", ", c, ").reshape([ab, ", c, ", ah * aw])\n");
    absl::StrAppend(&s, "    v = qkv.narrow(1, ", 2 * c, ", ", c, ").reshape([ab, ", c, ", ah * aw])\n");
    absl::StrAppend(&s, "    a = torch.softmax(torch.bmm(q.transpose(1, 2), k) * ", FloatLit(Scale()), ", 2)\n");
    absl::StrAppend(&s, "    o = torch.bmm(v, a.transpose(1, 2)).reshape([ab, ", c, ", ah, aw])\n");
    absl::StrAppend(&s, "    ", var, " = (", var, " + ", ConvSource(prefix, p + "proj", "o", 1, 0), ") * ",
                    FloatLit(M_SQRT1_2), "\n");
    return s;
  }

 private:
  double Scale() const { return 1.0 / std::sqrt(static_cast<double>(channels_)); }

  int64_t channels_, groups_;
  torch::nn::GroupNorm norm_{nullptr};
  torch::nn::Conv2d qkv_{nullptr}, proj_{nullptr};
};

std::string CheckUNetOptions(const UNetOptions& o) {
  if (o.channels <= 0) return absl::StrCat("channels must be > 0, got ", o.channels);
  if (o.height <= 0 || o.width <= 0) return absl::StrCat("height and width must be > 0, got ", o.height, "x", o.width);
  if (o.out_channels < 0) return absl::StrCat("out_channels must be >= 0 (0: same as channels), got ", o.out_channels);
  if (o.base <= 0) return absl::StrCat("base (model.channels) must be > 0, got ", o.base);
  if (o.mult.empty()) return "mult must name at least one level, got an empty list";
  if (o.mult.size() > 8) return absl::StrCat("mult must have at most 8 levels, got ", o.mult.size());
  if (o.res_blocks < 1) return absl::StrCat("res_blocks must be >= 1, got ", o.res_blocks);
  if (!(o.dropout >= 0.0 && o.dropout < 1.0)) return absl::StrCat("dropout must be in [0, 1), got ", o.dropout);
  if (!(o.time_scale > 0.0 && std::isfinite(o.time_scale)))
    return absl::StrCat("time_scale must be finite and > 0, got ", o.time_scale);
  if (o.groups <= 0) return absl::StrCat("groups must be > 0, got ", o.groups);
  // Every width (base * mult[i], and the sums of two at the skip concatenations) is a multiple of
  // base, so groups dividing base divides them all.
  if (o.base % o.groups != 0)
    return absl::StrCat("groups (", o.groups, ") must divide base (", o.base, ") and so every width base*mult[i]");
  for (size_t i = 0; i < o.mult.size(); ++i)
    if (o.mult[i] <= 0) return absl::StrCat("mult[", i, "] must be > 0, got ", o.mult[i]);
  const int64_t factor = int64_t{1} << (o.mult.size() - 1);
  if (o.height % factor != 0 || o.width % factor != 0)
    return absl::StrCat("height and width (", o.height, "x", o.width, ") must be divisible by 2^(levels-1) = ", factor,
                        " for ", o.mult.size(), " levels");
  return "";
}

UNetImpl::UNetImpl(const UNetOptions& options) : options_(options) {
  std::lock_guard<std::recursive_mutex> lock(NetInitMutex());
  const std::string problem = CheckUNetOptions(options_);
  TORCH_CHECK(problem.empty(), "UNet options: ", problem);
  if (options_.out_channels == 0) options_.out_channels = options_.channels;
  const UNetOptions& o = options_;
  const int64_t levels = static_cast<int64_t>(o.mult.size()), embed = embed_dim(), groups = o.groups;
  const int64_t half = std::max<int64_t>(1, o.base / 2);
  freqs_ = register_buffer("freqs", torch::exp(-std::log(10000.0) * torch::arange(half, torch::kFloat32) / half));
  time_in_ = register_module("time_in", torch::nn::Linear(2 * half, embed));
  time_out_ = register_module("time_out", torch::nn::Linear(embed, embed));
  conv_in_ = register_module("conv_in", Conv(o.channels, o.base, 3));

  std::vector<int64_t> skip_widths = {o.base};
  int64_t ch = o.base;
  down_.resize(levels);
  for (int64_t i = 0; i < levels; ++i) {
    for (int64_t j = 0; j < o.res_blocks; ++j) {
      down_[i].push_back(
          register_module(absl::StrCat("down", i, "_", j),
                          std::make_shared<ResBlockImpl>(ch, o.base * o.mult[i], embed, groups, o.dropout)));
      ch = o.base * o.mult[i];
      skip_widths.push_back(ch);
    }
    if (i + 1 < levels) {
      downsample_.push_back(register_module(absl::StrCat("down", i, "_ds"), Conv(ch, ch, 3, 2)));
      skip_widths.push_back(ch);
    }
  }
  mid0_ = register_module("mid_res0", std::make_shared<ResBlockImpl>(ch, ch, embed, groups, o.dropout));
  if (o.attention) attn_ = register_module("mid_attn", std::make_shared<AttentionImpl>(ch, groups));
  mid1_ = register_module("mid_res1", std::make_shared<ResBlockImpl>(ch, ch, embed, groups, o.dropout));
  up_.resize(levels);
  upsample_.resize(levels, torch::nn::Conv2d{nullptr});
  for (int64_t i = levels - 1; i >= 0; --i) {
    for (int64_t j = 0; j <= o.res_blocks; ++j) {
      const int64_t skip = skip_widths.back();
      skip_widths.pop_back();
      up_[i].push_back(
          register_module(absl::StrCat("up", i, "_", j),
                          std::make_shared<ResBlockImpl>(ch + skip, o.base * o.mult[i], embed, groups, o.dropout)));
      ch = o.base * o.mult[i];
    }
    if (i > 0) upsample_[i] = register_module(absl::StrCat("up", i, "_us"), Conv(ch, ch, 3));
  }
  out_norm_ = register_module("out_norm", Norm(groups, ch));
  out_conv_ = register_module("out_conv", Conv(ch, o.out_channels, 3));
  torch::NoGradGuard no_grad;
  out_conv_->weight.zero_();
  out_conv_->bias.zero_();
}

torch::Tensor UNetImpl::TimeEmbedding(const torch::Tensor& t) {
  torch::Tensor arg = (t.reshape({-1, 1}) * options_.time_scale) * freqs_;
  torch::Tensor e = torch::cat({torch::sin(arg), torch::cos(arg)}, 1);
  return time_out_(torch::silu(time_in_(e)));
}

torch::Tensor UNetImpl::forward(const torch::Tensor& x, const torch::Tensor& emb) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == options_.channels, "UNet: x must be [B, ", options_.channels,
              ", H, W], got ", x.sizes());
  TORCH_CHECK(emb.dim() == 2 && emb.size(1) == embed_dim() && (emb.size(0) == 1 || emb.size(0) == x.size(0)),
              "UNet: emb must be [B or 1, ", embed_dim(), "], got ", emb.sizes());
  const torch::Tensor se = torch::silu(emb);
  const int64_t levels = static_cast<int64_t>(down_.size());
  torch::Tensor h = conv_in_(x);
  std::vector<torch::Tensor> skips = {h};
  for (int64_t i = 0; i < levels; ++i) {
    for (auto& block : down_[i]) {
      h = block->forward(h, se);
      skips.push_back(h);
    }
    if (i + 1 < levels) {
      h = downsample_[i](h);
      skips.push_back(h);
    }
  }
  h = mid0_->forward(h, se);
  if (attn_) h = attn_->forward(h);
  h = mid1_->forward(h, se);
  for (int64_t i = levels - 1; i >= 0; --i) {
    for (auto& block : up_[i]) {
      h = block->forward(torch::cat({h, skips.back()}, 1), se);
      skips.pop_back();
    }
    if (i > 0) {
      const std::vector<int64_t> size = {skips.back().size(2), skips.back().size(3)};
      h = upsample_[i](torch::upsample_nearest2d(h, size));
    }
  }
  return out_conv_(torch::silu(Normed(out_norm_, h)));
}

std::string UNetImpl::TorchScriptSource(const std::string& prefix) const {
  const int64_t levels = static_cast<int64_t>(down_.size());
  std::string s;
  absl::StrAppend(&s, "def unet_time_embedding(self, t: Tensor) -> Tensor:\n");
  absl::StrAppend(&s, "    arg = (t.reshape(-1, 1) * ", FloatLit(options_.time_scale), ") * ", Attr(prefix, "freqs"),
                  "\n");
  absl::StrAppend(&s, "    e = torch.cat([torch.sin(arg), torch.cos(arg)], 1)\n");
  absl::StrAppend(&s, "    return ",
                  LinearSource(prefix, "time_out", "torch.silu(" + LinearSource(prefix, "time_in", "e") + ")"), "\n\n");

  absl::StrAppend(&s, "def unet_forward(self, x: Tensor, emb: Tensor) -> Tensor:\n");
  absl::StrAppend(&s, "    se = torch.silu(emb)\n");
  absl::StrAppend(&s, "    h = ", ConvSource(prefix, "conv_in", "x", 1, 1), "\n");
  // The skip stack becomes variables s0, s1, ...
  int next_skip = 0;
  std::vector<std::string> skips;
  auto push = [&]() {
    std::string name = absl::StrCat("s", next_skip++);
    absl::StrAppend(&s, "    ", name, " = h\n");
    skips.push_back(name);
  };
  push();
  for (int64_t i = 0; i < levels; ++i) {
    for (size_t j = 0; j < down_[i].size(); ++j) {
      s += down_[i][j]->Source(prefix, absl::StrCat("down", i, "_", j), "h", "h");
      push();
    }
    if (i + 1 < levels) {
      absl::StrAppend(&s, "    h = ", ConvSource(prefix, absl::StrCat("down", i, "_ds"), "h", 2, 1), "\n");
      push();
    }
  }
  s += mid0_->Source(prefix, "mid_res0", "h", "h");
  if (attn_) s += attn_->Source(prefix, "mid_attn", "h");
  s += mid1_->Source(prefix, "mid_res1", "h", "h");
  for (int64_t i = levels - 1; i >= 0; --i) {
    for (size_t j = 0; j < up_[i].size(); ++j) {
      absl::StrAppend(&s, "    h = torch.cat([h, ", skips.back(), "], 1)\n");
      skips.pop_back();
      s += up_[i][j]->Source(prefix, absl::StrCat("up", i, "_", j), "h", "h");
    }
    if (i > 0) {
      const std::string& sk = skips.back();
      absl::StrAppend(&s, "    h = torch.upsample_nearest2d(h, [", sk, ".size(2), ", sk, ".size(3)])\n");
      absl::StrAppend(&s, "    h = ", ConvSource(prefix, absl::StrCat("up", i, "_us"), "h", 1, 1), "\n");
    }
  }
  absl::StrAppend(&s, "    return ",
                  ConvSource(prefix, "out_conv",
                             "torch.silu(" + GroupNormSource(prefix, "out_norm", "h", options_.groups) + ")", 1, 1),
                  "\n");
  return s;
}

}  // namespace vsdm::core
