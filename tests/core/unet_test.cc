// UNet: shapes, broadcasting, deterministic init, gradient flow, option checks, and the
// TorchScript source (C++ define, save/load, and Python torch.jit.load) against eval-mode C++.
#include "core/unet.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include <torch/script.h>

#include "absl/strings/str_replace.h"

namespace vsdm::core {
namespace {
namespace fs = std::filesystem;

UNetOptions Tiny(int64_t channels, int64_t size) {
  UNetOptions o;
  o.channels = channels;
  o.height = size;
  o.width = size;
  o.base = 8;
  o.groups = 4;
  o.mult = {1, 2};
  return o;
}

// Makes the zero-initialised output conv non-zero so that gradients reach every layer.
void RandomizeOutput(UNet& net) {
  torch::NoGradGuard g;
  for (auto& p : net->named_parameters())
    if (p.key().rfind("out_conv.", 0) == 0) p.value().normal_(0.0, 0.1);
}

// A module with the net's parameters and buffers as "unet_..." attributes, the source and a
// forward(x, t) wrapper.
torch::jit::Module ScriptModule(const UNet& net) {
  torch::jit::Module m("UNetExport");
  for (const auto& p : net->named_parameters())
    m.register_parameter("unet_" + absl::StrReplaceAll(p.key(), {{".", "_"}}), p.value().detach().clone(), false);
  for (const auto& b : net->named_buffers())
    m.register_buffer("unet_" + absl::StrReplaceAll(b.key(), {{".", "_"}}), b.value().detach().clone());
  m.define(net->TorchScriptSource("unet_") +
           "\ndef forward(self, x: Tensor, t: Tensor) -> Tensor:\n"
           "    return self.unet_forward(x, self.unet_time_embedding(t))\n");
  return m;
}

float MaxAbsDiff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<float>(); }

TEST(UNetTest, OutputHasInputShapeForFashionMnistAndCifarSizes) {
  torch::manual_seed(0);
  UNetOptions o = Tiny(1, 28);
  o.mult = {1, 2, 2};  // 28 -> 14 -> 7
  UNet net(o);
  torch::Tensor x = torch::randn({3, 1, 28, 28});
  EXPECT_EQ(net->forward(x, net->TimeEmbedding(torch::rand({3}))).sizes(), x.sizes());

  UNet rgb(Tiny(3, 32));
  torch::Tensor y = torch::randn({2, 3, 32, 32});
  EXPECT_EQ(rgb->forward(y, rgb->TimeEmbedding(torch::rand({2}))).sizes(), y.sizes());

  UNetOptions two = Tiny(2, 16);
  two.out_channels = 1;
  UNet narrow(two);
  EXPECT_EQ(narrow->forward(torch::randn({2, 2, 16, 16}), narrow->TimeEmbedding(torch::rand({2}))).sizes(),
            (std::vector<int64_t>{2, 1, 16, 16}));
}

TEST(UNetTest, SingleEmbeddingRowBroadcastsOverTheBatch) {
  torch::manual_seed(1);
  UNet net(Tiny(1, 8));
  RandomizeOutput(net);
  net->eval();
  torch::NoGradGuard g;
  torch::Tensor x = torch::randn({4, 1, 8, 8});
  torch::Tensor emb = net->TimeEmbedding(torch::full({1}, 0.3));
  ASSERT_EQ(emb.sizes(), (std::vector<int64_t>{1, net->embed_dim()}));
  torch::Tensor broadcast = net->forward(x, emb);
  torch::Tensor repeated = net->forward(x, emb.expand({4, -1}));
  EXPECT_EQ(broadcast.sizes(), x.sizes());
  EXPECT_LT(MaxAbsDiff(broadcast, repeated), 1e-6);
}

TEST(UNetTest, InitIsDeterministicUnderTheSameSeed) {
  torch::manual_seed(7);
  UNet a(Tiny(1, 8));
  torch::manual_seed(7);
  UNet b(Tiny(1, 8));
  torch::manual_seed(8);
  UNet c(Tiny(1, 8));
  auto pb = b->named_parameters();
  auto pc = c->named_parameters();
  ASSERT_EQ(a->named_parameters().size(), pb.size());
  bool any_differs = false;
  for (const auto& p : a->named_parameters()) {
    EXPECT_TRUE(torch::equal(p.value(), pb[p.key()])) << p.key();
    if (!torch::equal(p.value(), pc[p.key()])) any_differs = true;
  }
  EXPECT_TRUE(any_differs);
  // The output layer starts at zero.
  EXPECT_EQ(a->named_parameters()["out_conv.weight"].abs().max().item<float>(), 0.0f);
}

TEST(UNetTest, GradientsReachEveryParameter) {
  torch::manual_seed(2);
  UNetOptions o = Tiny(1, 8);
  o.res_blocks = 2;
  UNet net(o);
  RandomizeOutput(net);
  torch::Tensor x = torch::randn({2, 1, 8, 8});
  torch::Tensor out = net->forward(x, net->TimeEmbedding(torch::rand({2})));
  (out * torch::randn_like(out)).sum().backward();
  for (const auto& p : net->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_GT(p.value().grad().norm().item<float>(), 0.0f) << p.key();
  }
}

TEST(UNetTest, ZeroOutputLayerGetsGradientAtInit) {
  torch::manual_seed(2);
  UNet net(Tiny(1, 8));
  torch::Tensor out = net->forward(torch::randn({2, 1, 8, 8}), net->TimeEmbedding(torch::rand({2})));
  EXPECT_EQ(out.abs().max().item<float>(), 0.0f);
  (out * torch::randn_like(out)).sum().backward();
  EXPECT_GT(net->named_parameters()["out_conv.weight"].grad().norm().item<float>(), 0.0f);
}

TEST(UNetTest, TimeEmbeddingDiffersBetweenTimes) {
  torch::manual_seed(3);
  UNet net(Tiny(1, 8));
  torch::NoGradGuard g;
  torch::Tensor e = net->TimeEmbedding(torch::tensor({0.1f, 0.5f, 0.5f}));
  ASSERT_EQ(e.sizes(), (std::vector<int64_t>{3, net->embed_dim()}));
  EXPECT_GT(MaxAbsDiff(e[0], e[1]), 1e-3);
  EXPECT_LT(MaxAbsDiff(e[1], e[2]), 1e-7);
}

TEST(UNetTest, CheckOptionsRefusesBadConfigurations) {
  EXPECT_EQ(CheckUNetOptions(Tiny(1, 28)), "");
  UNetOptions o = Tiny(1, 28);
  o.groups = 3;  // base 8
  EXPECT_NE(CheckUNetOptions(o).find("groups (3) must divide base (8)"), std::string::npos) << CheckUNetOptions(o);
  o.groups = 0;
  EXPECT_NE(CheckUNetOptions(o).find("groups must be > 0"), std::string::npos) << CheckUNetOptions(o);

  o = Tiny(1, 28);
  o.mult = {1, 2, 2, 2};  // 28 % 8 != 0
  const std::string size = CheckUNetOptions(o);
  EXPECT_NE(size.find("divisible by 2^(levels-1) = 8"), std::string::npos) << size;
  EXPECT_NE(size.find("28x28"), std::string::npos) << size;

  o = Tiny(1, 28);
  o.mult = {};
  EXPECT_NE(CheckUNetOptions(o).find("mult"), std::string::npos) << CheckUNetOptions(o);
  o = Tiny(1, 28);
  o.base = 0;
  EXPECT_NE(CheckUNetOptions(o).find("base"), std::string::npos) << CheckUNetOptions(o);

  // The constructor refuses through TORCH_CHECK with the same message.
  o = Tiny(1, 28);
  o.mult = {};
  try {
    UNet net(o);
    ADD_FAILURE() << "constructed with empty mult";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("mult"), std::string::npos) << e.what();
  }
}

TEST(UNetTest, ScriptedForwardMatchesEvalModeCpp) {
  for (bool attention : {true, false}) {
    SCOPED_TRACE(attention ? "with attention" : "without attention");
    torch::manual_seed(4);
    UNetOptions o = Tiny(1, 16);
    o.mult = {1, 2, 2};
    o.attention = attention;
    o.res_blocks = 2;
    UNet net(o);
    RandomizeOutput(net);
    net->eval();
    torch::Tensor x = torch::randn({3, 1, 16, 16});
    torch::Tensor t = torch::rand({3});
    torch::Tensor want, want_emb;
    {
      torch::NoGradGuard g;
      want_emb = net->TimeEmbedding(t);
      want = net->forward(x, want_emb);
    }
    ASSERT_GT(want.abs().max().item<float>(), 0.0f);
    torch::jit::Module m = ScriptModule(net);
    EXPECT_LT(MaxAbsDiff(m.forward({x, t}).toTensor().detach(), want), 1e-5);
    EXPECT_LT(MaxAbsDiff(m.run_method("unet_time_embedding", t).toTensor().detach(), want_emb), 1e-5);
    // A single embedding row broadcasts in the script too.
    torch::Tensor one = want_emb.narrow(0, 0, 1);
    torch::Tensor want_one;
    {
      torch::NoGradGuard g;
      want_one = net->forward(x, one);
    }
    EXPECT_LT(MaxAbsDiff(m.run_method("unet_forward", x, one).toTensor().detach(), want_one), 1e-5);

    std::stringstream saved;
    m.save(saved);
    torch::jit::Module loaded = torch::jit::load(saved);
    EXPECT_LT(MaxAbsDiff(loaded.forward({x, t}).toTensor().detach(), want), 1e-5);
  }
}

// Runs `cmd` and returns its stdout, or the empty string when it could not start.
std::string Capture(const std::string& cmd, int* status) {
  std::string out;
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) return out;
  std::array<char, 512> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), f)) > 0) out.append(buf.data(), n);
  *status = pclose(f);
  return out;
}

TEST(UNetTest, ScriptedModuleLoadsInPython) {
  const std::string python = "/usr/bin/python3";
  ASSERT_EQ(::access(python.c_str(), X_OK), 0) << python << " is missing: this test needs Debian's python3 with "
                                               << "python3-torch to load the exported module";
  torch::manual_seed(5);
  UNet net(Tiny(1, 8));
  RandomizeOutput(net);
  net->eval();
  torch::jit::Module m = ScriptModule(net);
  torch::Tensor x = torch::randn({2, 1, 8, 8}), t = torch::rand({2});
  {
    torch::NoGradGuard g;
    m.register_buffer("test_x", x);
    m.register_buffer("test_t", t);
    m.register_buffer("test_want", net->forward(x, net->TimeEmbedding(t)));
  }
  const fs::path path = fs::temp_directory_path() / ("vsdm_unet_" + std::to_string(::getpid()) + ".pt");
  m.save(path.string());
  const std::string cmd = python + " -c 'import torch, sys; m = torch.jit.load(sys.argv[1]); " +
                          "y = m(m.test_x, m.test_t); " +
                          "print(tuple(y.shape), float((y - m.test_want).abs().max()))' " + path.string() + " 2>&1";
  int status = -1;
  const std::string out = Capture(cmd, &status);
  fs::remove(path);
  ASSERT_EQ(status, 0) << cmd << "\n" << out;
  EXPECT_EQ(out.rfind("(2, 1, 8, 8) ", 0), 0u) << out;
  const double err = std::stod(out.substr(out.find(") ") + 2));
  EXPECT_LT(err, 1e-5) << out;
}

}  // namespace
}  // namespace vsdm::core
