#include "core/feature_net.h"

#include <cmath>
#include <iostream>
#include <mutex>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/stopwatch.h"
#include "core/score_net.h"

namespace vsdm::core {
namespace {

constexpr int64_t kFeatureDim = 128;
constexpr int64_t kPooledSide = 7;
constexpr int64_t kMinSide = 8;
constexpr int64_t kEvalBatch = 1000;
constexpr char kMagic[] = "vsdm-feature-net-v1";

std::string ShapeString(int64_t c, int64_t h, int64_t w, int64_t k) {
  return absl::StrFormat("(channels %d, height %d, width %d, classes %d)", c, h, w, k);
}

// Each image shifted by its own random (dy, dx) in [-s, s]^2, the border replicated.
torch::Tensor RandomShift(const torch::Tensor& x, int64_t s, torch::Generator& gen) {
  namespace F = torch::nn::functional;
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  torch::Tensor padded = F::pad(x, F::PadFuncOptions({s, s, s, s}).mode(torch::kReplicate));
  torch::Tensor off = torch::randint(0, 2 * s + 1, {n, 2}, gen, torch::kLong);
  auto acc = off.accessor<int64_t, 2>();
  std::vector<torch::Tensor> rows;
  rows.reserve(n);
  for (int64_t i = 0; i < n; ++i) rows.push_back(padded[i].narrow(1, acc[i][0], h).narrow(2, acc[i][1], w));
  return torch::stack(rows);
}

// Share of data.test classified correctly (eval mode, no grad, batched).
double TestAccuracy(FeatureNet& net, const ImageSet& test) {
  torch::NoGradGuard no_grad;
  const bool was_training = net->is_training();
  net->eval();
  int64_t correct = 0;
  for (int64_t i = 0; i < test.size(); i += kEvalBatch) {
    const int64_t b = std::min(kEvalBatch, test.size() - i);
    torch::Tensor pred = net->forward(test.images.narrow(0, i, b)).argmax(1);
    correct += pred.eq(test.labels.narrow(0, i, b)).sum().item<int64_t>();
  }
  net->train(was_training);
  return static_cast<double>(correct) / static_cast<double>(std::max<int64_t>(1, test.size()));
}

absl::Status CheckLabels(const ImageSet& set, int64_t classes, const std::string& what) {
  if (!set.has_labels()) return absl::InvalidArgumentError(absl::StrCat("feature net: ", what, " has no labels"));
  if (set.size() == 0) return absl::InvalidArgumentError(absl::StrCat("feature net: ", what, " is empty"));
  if (set.labels.size(0) != set.size())
    return absl::InvalidArgumentError(
        absl::StrCat("feature net: ", what, " has ", set.labels.size(0), " labels for ", set.size(), " images"));
  const int64_t lo = set.labels.min().item<int64_t>(), hi = set.labels.max().item<int64_t>();
  if (lo < 0 || hi >= classes)
    return absl::InvalidArgumentError(
        absl::StrCat("feature net: ", what, " labels span [", lo, ", ", hi, "], must lie in [0, ", classes, ")"));
  return absl::OkStatus();
}

absl::Status CheckData(const ImageData& data) {
  if (data.classes < 2)
    return absl::InvalidArgumentError(
        absl::StrCat("feature net: dataset '", data.name, "' has ", data.classes, " classes, needs >= 2 labels"));
  VSDM_RETURN_IF_ERROR(CheckLabels(data.train, data.classes, "the training split"));
  VSDM_RETURN_IF_ERROR(CheckLabels(data.test, data.classes, "the test split"));
  if (data.train.images.dim() != 4 || data.test.images.dim() != 4)
    return absl::InvalidArgumentError("feature net: images must be [N, C, H, W]");
  if (data.train.height() < kMinSide || data.train.width() < kMinSide)
    return absl::InvalidArgumentError(absl::StrCat("feature net: images must be at least ", kMinSide, "x", kMinSide,
                                                   ", got ", data.train.height(), "x", data.train.width()));
  if (data.test.images.sizes().slice(1) != data.train.images.sizes().slice(1))
    return absl::InvalidArgumentError("feature net: test images differ in shape from the training images");
  return absl::OkStatus();
}

void SetLearningRate(torch::optim::AdamW& opt, double lr) {
  for (auto& group : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
}

FeatureNet TrainLoop(const ImageData& data, const FeatureNetOptions& o, FeatureNetReport* report) {
  Stopwatch watch;
  const ImageSet& train = data.train;
  FeatureNet net{nullptr};
  {
    std::lock_guard<std::recursive_mutex> lock(NetInitMutex());
    torch::manual_seed(static_cast<uint64_t>(o.seed));
    net = FeatureNet(train.channels(), train.height(), train.width(), data.classes);
  }
  net->train();
  torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(o.lr).weight_decay(o.weight_decay));
  torch::Generator gen = torch::make_generator<torch::CPUGeneratorImpl>(static_cast<uint64_t>(o.seed));
  const int64_t n = train.size();
  const int64_t steps_per_epoch = (n + o.batch - 1) / o.batch;
  const int64_t total_steps = steps_per_epoch * o.epochs;
  int64_t step = 0;
  double accuracy = 0.0;
  for (int64_t epoch = 0; epoch < o.epochs; ++epoch) {
    torch::Tensor perm = torch::randperm(n, gen, torch::kLong);
    double loss_sum = 0.0;
    for (int64_t i = 0; i < n; i += o.batch, ++step) {
      SetLearningRate(opt, o.lr * 0.5 * (1.0 + std::cos(M_PI * static_cast<double>(step) / total_steps)));
      torch::Tensor idx = perm.narrow(0, i, std::min(o.batch, n - i));
      torch::Tensor x = train.images.index_select(0, idx);
      if (o.max_shift > 0) x = RandomShift(x, o.max_shift, gen);
      torch::Tensor f = net->Features(x);
      if (o.dropout > 0.0) f = f * torch::empty_like(f).bernoulli_(1.0 - o.dropout, gen) / (1.0 - o.dropout);
      torch::Tensor loss = torch::nn::functional::cross_entropy(net->Head(f), train.labels.index_select(0, idx));
      opt.zero_grad();
      loss.backward();
      opt.step();
      loss_sum += loss.item<double>() * static_cast<double>(idx.size(0));
    }
    accuracy = TestAccuracy(net, data.test);
    if (o.progress)
      std::cerr << absl::StrFormat("featnet: epoch %d/%d train loss %.4f test accuracy %.4f (%.0fs)\n", epoch + 1,
                                   o.epochs, loss_sum / static_cast<double>(n), accuracy, watch.Seconds());
  }
  net->eval();
  report->test_accuracy = accuracy;
  report->train_seconds = watch.Seconds();
  report->epochs = o.epochs;
  report->dataset = data.name;
  return net;
}

}  // namespace

FeatureNetImpl::FeatureNetImpl(int64_t channels, int64_t height, int64_t width, int64_t classes)
    : channels_(channels), height_(height), width_(width), classes_(classes) {
  std::lock_guard<std::recursive_mutex> lock(NetInitMutex());
  conv1_ = register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, 32, 3).padding(1)));
  conv2_ = register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(32, 64, 3).padding(1)));
  fc_ = register_module("fc", torch::nn::Linear(64 * kPooledSide * kPooledSide, kFeatureDim));
  head_ = register_module("head", torch::nn::Linear(kFeatureDim, classes));
}

int64_t FeatureNetImpl::feature_dim() const { return kFeatureDim; }

torch::Tensor FeatureNetImpl::Features(const torch::Tensor& x) {
  torch::Tensor h = torch::max_pool2d(torch::relu(conv1_->forward(x)), 2);
  h = torch::max_pool2d(torch::relu(conv2_->forward(h)), 2);
  h = torch::adaptive_avg_pool2d(h, {kPooledSide, kPooledSide}).flatten(1);
  return torch::relu(fc_->forward(h));
}

torch::Tensor FeatureNetImpl::Head(const torch::Tensor& features) { return head_->forward(features); }

torch::Tensor FeatureNetImpl::forward(const torch::Tensor& x) { return Head(Features(x)); }

absl::StatusOr<FeatureNet> TrainFeatureNet(const ImageData& data, const FeatureNetOptions& options,
                                           FeatureNetReport* report) {
  if (options.epochs < 1 || options.batch < 1 || !(options.lr > 0.0) || options.dropout < 0.0 ||
      options.dropout >= 1.0 || options.max_shift < 0 || options.weight_decay < 0.0)
    return absl::InvalidArgumentError(
        "feature net options: need epochs >= 1, batch >= 1, lr > 0, dropout in [0, 1), max_shift >= 0, "
        "weight_decay >= 0");
  VSDM_RETURN_IF_ERROR(CheckData(data));
  FeatureNetReport local;
  try {
    return TrainLoop(data, options, report != nullptr ? report : &local);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("feature net training: ", e.what()));
  }
}

absl::Status SaveFeatureNet(const std::string& path, FeatureNet& net, const FeatureNetReport& report,
                            const std::string& dataset) {
  std::ostringstream bytes;
  try {
    torch::serialize::OutputArchive ar;
    ar.write("featnet.magic", c10::IValue(std::string(kMagic)));
    ar.write("featnet.shape",
             torch::tensor({net->channels(), net->height(), net->width(), net->classes()}, torch::kLong));
    ar.write("featnet.test_accuracy", torch::tensor({report.test_accuracy}, torch::kFloat64));
    ar.write("featnet.train_seconds", torch::tensor({report.train_seconds}, torch::kFloat64));
    ar.write("featnet.epochs", torch::tensor({report.epochs}, torch::kLong));
    ar.write("featnet.dataset", c10::IValue(dataset));
    for (const auto& p : net->named_parameters()) ar.write("net." + p.key(), p.value().detach().cpu());
    ar.save_to(bytes);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(path, ": serialising the feature net: ", e.what()));
  }
  return AtomicWriteFile(path, bytes.str());
}

absl::StatusOr<FeatureNet> LoadFeatureNet(const std::string& path, int64_t channels, int64_t height, int64_t width,
                                          int64_t classes, FeatureNetReport* report) {
  VSDM_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  auto not_ours = [&](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a feature net file (", why, ")"));
  };
  torch::serialize::InputArchive ar;
  c10::IValue magic;
  try {
    ar.load_from(bytes.data(), bytes.size());
    if (!ar.try_read("featnet.magic", magic) || !magic.isString() || magic.toStringRef() != kMagic)
      return not_ours(absl::StrCat("no '", kMagic, "' marker"));
  } catch (const std::exception& e) {
    return not_ours(e.what());
  }
  try {
    torch::Tensor shape, accuracy, seconds, epochs;
    c10::IValue dataset;
    ar.read("featnet.shape", shape);
    const auto s = shape.to(torch::kLong).contiguous();
    if (s.numel() != 4) return not_ours("its shape record does not hold 4 numbers");
    const int64_t* v = s.data_ptr<int64_t>();
    if (v[0] != channels || v[1] != height || v[2] != width || v[3] != classes)
      return absl::InvalidArgumentError(absl::StrCat(path, ": the feature net was trained for ",
                                                     ShapeString(v[0], v[1], v[2], v[3]), ", this data needs ",
                                                     ShapeString(channels, height, width, classes)));
    ar.read("featnet.test_accuracy", accuracy);
    ar.read("featnet.train_seconds", seconds);
    ar.read("featnet.epochs", epochs);
    ar.read("featnet.dataset", dataset);
    FeatureNet net(channels, height, width, classes);
    {
      torch::NoGradGuard no_grad;
      for (auto& p : net->named_parameters()) {
        torch::Tensor t;
        ar.read("net." + p.key(), t);
        if (t.sizes() != p.value().sizes()) return not_ours(absl::StrCat("weight ", p.key(), " has the wrong size"));
        p.value().copy_(t);
      }
    }
    net->eval();
    if (report != nullptr) {
      report->test_accuracy = accuracy.item<double>();
      report->train_seconds = seconds.item<double>();
      report->epochs = epochs.item<int64_t>();
      report->dataset = dataset.isString() ? dataset.toStringRef() : std::string();
    }
    return net;
  } catch (const std::exception& e) {
    return not_ours(e.what());
  }
}

}  // namespace vsdm::core
