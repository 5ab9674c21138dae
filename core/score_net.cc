#include "core/score_net.h"

#include <cmath>

namespace vsdm::core {

torch::Tensor ScoreNetImpl::EmbeddingFrequencies() {
  const int64_t half = kTimeEmbeddingDim / 2;
  return torch::exp(-std::log(10000.0) * torch::arange(half, torch::kFloat32) / half);
}

std::recursive_mutex& NetInitMutex() {
  static std::recursive_mutex mu;
  return mu;
}

namespace {
ScoreNetOptions PointOptions(std::string arch, int64_t dim, int64_t hidden, int64_t out_dim) {
  ScoreNetOptions o;
  o.arch = std::move(arch);
  o.dim = dim;
  o.hidden = hidden;
  o.out_dim = out_dim;
  return o;
}
}  // namespace

ScoreNetImpl::ScoreNetImpl(std::string arch, int64_t dim, int64_t hidden, int64_t out_dim)
    : ScoreNetImpl(PointOptions(std::move(arch), dim, hidden, out_dim)) {}

ScoreNetImpl::ScoreNetImpl(const ScoreNetOptions& options)
    : options_(options),
      arch_(options.arch),
      dim_(options.dim),
      hidden_(options.hidden),
      out_dim_(options.out_dim > 0 ? options.out_dim : options.dim) {
  std::lock_guard<std::recursive_mutex> lock(NetInitMutex());
  TORCH_CHECK(arch_ == "toy_resnet" || arch_ == "mlp" || arch_ == "unet" || arch_ == "forecast", "unknown arch ",
              arch_);
  freqs_ = register_buffer("freqs", EmbeddingFrequencies());
  if (arch_ == "unet") {
    const UNetOptions& u = options_.unet;
    TORCH_CHECK(u.channels * u.height * u.width == dim_ && (u.out_channels == 0 || u.out_channels == u.channels) &&
                    out_dim_ == dim_,
                "unet: dim ", dim_, " must equal C H W = ", u.channels * u.height * u.width);
    unet_ = register_module("unet", UNet(u));
    return;
  }
  const int64_t hidden = hidden_;
  int64_t dim = dim_;
  const bool resnet = arch_ == "toy_resnet" || arch_ == "forecast";
  if (arch_ == "forecast") {
    const ForecastNetOptions& f = options_.forecast;
    const int64_t hd = f.horizon * f.series;
    TORCH_CHECK(dim_ == (f.horizon + f.context) * f.series + f.covariates && out_dim_ == hd, "forecast: dim ", dim_,
                " must equal (H + C) D + F and out_dim ", out_dim_, " H D");
    for (int i = 0; i < 3; ++i) {
      const int64_t dil = int64_t{1} << i;
      enc_.push_back(register_module(
          "enc" + std::to_string(i),
          torch::nn::Conv1d(
              torch::nn::Conv1dOptions(i == 0 ? f.series : f.channels, f.channels, 3).dilation(dil).padding(dil))));
    }
    enc_out_ = register_module("enc_out", torch::nn::Linear(2 * f.channels + f.series + f.covariates, hidden));
    dim = hd;  // the score branch reads the target block
  }
  t_in_ = register_module("t_in", torch::nn::Linear(torch::nn::LinearOptions(kTimeEmbeddingDim, hidden).bias(resnet)));
  if (resnet) t_out_ = register_module("t_out", torch::nn::Linear(hidden, hidden));
  x_in_ = register_module("x_in", torch::nn::Linear(dim, hidden));
  const int nblocks = resnet ? 9 : 2;
  for (int i = 0; i < nblocks; ++i)
    blocks_.push_back(register_module("block" + std::to_string(i), torch::nn::Linear(hidden, hidden)));
  if (resnet) head1_ = register_module("head1", torch::nn::Linear(hidden, hidden));
  head2_ = register_module("head2", torch::nn::Linear(hidden, out_dim_));
}

torch::Tensor ScoreNetImpl::TimeFeatures(const torch::Tensor& t) {
  if (precision_ == Precision::kFp32) return TimeFeaturesImpl(t);
  AutocastGuard autocast(t.device(), precision_);
  return TimeFeaturesImpl(t);  // bfloat16: it only feeds ForwardFeatures
}

torch::Tensor ScoreNetImpl::ForwardFeatures(const torch::Tensor& x, const torch::Tensor& tf) {
  if (precision_ == Precision::kFp32) return ForwardFeaturesImpl(x, tf);
  AutocastGuard autocast(x.device(), precision_);
  return ForwardFeaturesImpl(x, tf).to(torch::kFloat32);
}

torch::Tensor ScoreNetImpl::TimeFeaturesImpl(const torch::Tensor& t) {
  if (unet_) return unet_->TimeEmbedding(t.reshape({-1}));
  torch::Tensor arg = (t.reshape({-1, 1}) * kTimeEmbeddingScale) * freqs_;
  torch::Tensor emb = torch::cat({torch::cos(arg), torch::sin(arg)}, 1);
  if (t_out_) return t_out_(torch::silu(t_in_(emb)));
  return t_in_(emb);
}

torch::Tensor ScoreNetImpl::ForwardFeaturesImpl(const torch::Tensor& x, const torch::Tensor& tf) {
  if (unet_) {
    const UNetOptions& u = options_.unet;
    const int64_t b = x.size(0);
    return unet_->forward(x.reshape({b, u.channels, u.height, u.width}), tf).reshape({b, dim_});
  }
  if (arch_ == "forecast") return ForecastForward(x, tf);
  if (arch_ == "toy_resnet") {
    // x-branch: Linear, then 3 residual blocks of [Linear -> SiLU] x 3, h = (h + block(h))/sqrt2.
    torch::Tensor h = x_in_(x);
    for (int b = 0; b < 3; ++b) {
      torch::Tensor r = h;
      for (int j = 0; j < 3; ++j) r = torch::silu(blocks_[3 * b + j](r));
      h = (h + r) * M_SQRT1_2;
    }
    return head2_(torch::silu(head1_(h + tf)));
  }
  torch::Tensor h = torch::silu(x_in_(x) + tf);
  for (auto& l : blocks_) h = torch::silu(l(h));
  return head2_(h);
}

torch::Tensor ScoreNetImpl::ForecastForward(const torch::Tensor& x, const torch::Tensor& tf) {
  const ForecastNetOptions& f = options_.forecast;
  const int64_t b = x.size(0), hd = f.horizon * f.series, cd = f.context * f.series;
  // The context [B, C, D] as channels-first [B, D, C] for the convolutions over time.
  torch::Tensor c = x.slice(1, hd, hd + cd).reshape({b, f.context, f.series}).transpose(1, 2);
  c = torch::silu(enc_[0](c));
  for (size_t i = 1; i < enc_.size(); ++i) c = c + torch::silu(enc_[i](c));
  // Pooled, not flattened: the last step's features, their mean over the window and the last
  // observed values (a few hundred weights instead of C x channels x hidden, which memorise a
  // small training span).
  torch::Tensor feats = torch::cat({c.select(2, f.context - 1), c.mean(2), x.slice(1, hd + cd - f.series, hd + cd)}, 1);
  if (f.covariates > 0) feats = torch::cat({feats, x.slice(1, hd + cd)}, 1);
  torch::Tensor h = x_in_(x.slice(1, 0, hd)) + enc_out_(feats) + tf;
  for (int k = 0; k < 3; ++k) {
    torch::Tensor r = h;
    for (int j = 0; j < 3; ++j) r = torch::silu(blocks_[3 * k + j](r));
    if (f.dropout > 0) r = torch::dropout(r, f.dropout, is_training());
    h = (h + r) * M_SQRT1_2;
  }
  return head2_(torch::silu(head1_(h + tf)));
}

torch::Tensor ScoreNetImpl::forward(const torch::Tensor& x, const torch::Tensor& t) {
  return ForwardFeatures(x, TimeFeatures(t));
}

ScoreNet CloneScoreNet(ScoreNet& net) {
  ScoreNet copy(net->options());
  torch::NoGradGuard guard;
  auto src = net->named_parameters();
  for (auto& p : copy->named_parameters()) p.value().copy_(src[p.key()]);
  auto bufs = net->named_buffers();
  for (auto& b : copy->named_buffers()) b.value().copy_(bufs[b.key()]);
  return copy;
}

}  // namespace vsdm::core
