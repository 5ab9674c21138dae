#include "worker/train/data_parallel.h"

namespace vsdm::worker {

int64_t ShardSize(int64_t batch, int64_t trainers, int64_t rank) {
  return batch / trainers + (rank < batch % trainers ? 1 : 0);
}

GradientBuckets::GradientBuckets(std::vector<torch::Tensor> params, int64_t bucket_bytes, int64_t extras)
    : params_(std::move(params)), extras_(extras) {
  const int64_t cap = std::max<int64_t>(1, bucket_bytes / static_cast<int64_t>(sizeof(float)));
  int64_t fill = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    const int64_t n = params_[i].numel();
    if (members_.empty() || (fill > 0 && fill + n > cap)) {
      members_.emplace_back();
      fill = 0;
    }
    members_.back().push_back(i);
    fill += n;
    numel_ += n;
  }
  if (members_.empty()) members_.emplace_back();
  for (size_t b = 0; b < members_.size(); ++b) {
    int64_t n = 0;
    for (size_t i : members_[b]) n += params_[i].numel();
    if (b + 1 == members_.size()) n += extras_;
    buffers_.push_back(
        torch::zeros({n}, torch::TensorOptions()
                              .dtype(torch::kFloat32)
                              .device(params_.empty() ? torch::Device(torch::kCPU) : params_.front().device())));
  }
}

absl::Status GradientBuckets::AllReduce(Comm& comm, double scale, torch::Tensor& extras) {
  torch::NoGradGuard guard;
  for (size_t b = 0; b < members_.size(); ++b) {
    int64_t off = 0;
    for (size_t i : members_[b]) {
      const int64_t n = params_[i].numel();
      torch::Tensor dst = buffers_[b].narrow(0, off, n);
      const torch::Tensor& g = params_[i].grad();
      if (g.defined())
        dst.copy_(g.reshape({-1}));
      else
        dst.zero_();
      off += n;
    }
    if (scale != 1.0) buffers_[b].narrow(0, 0, off).mul_(scale);
  }
  torch::Tensor& last = buffers_.back();
  const int64_t base = last.numel() - extras_;
  TORCH_CHECK(extras.numel() == extras_, "GradientBuckets: ", extras.numel(), " extras, want ", extras_);
  if (extras_ > 0) last.narrow(0, base, extras_).copy_(extras.reshape({-1}));
  if (auto s = comm.AllReduceSum(buffers_); !s.ok()) return s;
  for (size_t b = 0; b < members_.size(); ++b) {
    int64_t off = 0;
    for (size_t i : members_[b]) {
      torch::Tensor& p = params_[i];
      const int64_t n = p.numel();
      torch::Tensor src = buffers_[b].narrow(0, off, n).view(p.sizes());
      if (p.grad().defined())
        p.mutable_grad().copy_(src);
      else
        p.mutable_grad() = src.clone();
      off += n;
    }
  }
  if (extras_ > 0) extras.copy_(last.narrow(0, base, extras_).view(extras.sizes()));
  return absl::OkStatus();
}

}  // namespace vsdm::worker
