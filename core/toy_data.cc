#include "core/toy_data.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace vsdm::core {
namespace {
constexpr double kPi = M_PI;
const auto kF32 = torch::TensorOptions().dtype(torch::kFloat32);
}  // namespace

absl::StatusOr<ToyDataset> ToyDataset::Create(const std::string& name, std::vector<double> scale) {
  static const char* kNames[] = {"spiral", "checkerboard", "gaussian", "moons", "eight_gaussians"};
  bool ok = false;
  for (const char* n : kNames) ok |= (name == n);
  if (!ok) return absl::InvalidArgumentError(absl::StrCat("problem.dataset: unknown toy set \"", name, "\""));
  if (scale.size() == 1) scale.push_back(scale[0]);
  if (scale.size() != 2) return absl::InvalidArgumentError("problem.scale: toy sets take 1 or 2 values");
  return ToyDataset(name, std::move(scale));
}

// Draws are made on gen's device (CPU draws unchanged); constants follow them.
torch::Tensor ToyDataset::SampleUnscaled(int64_t n, torch::Generator& gen) const {
  const auto f32 = kF32.device(gen.device());
  if (name_ == "spiral") {
    // theta = sqrt(U) 3pi - pi/2, r = theta + pi, p = 0.4 ((r cos, r sin) + 0.25 N(0, I)).
    torch::Tensor theta = torch::sqrt(torch::rand({n}, gen, f32)) * (3 * kPi) - 0.5 * kPi;
    torch::Tensor r = theta + kPi;
    torch::Tensor p = torch::stack({r * torch::cos(theta), r * torch::sin(theta)}, 1);
    return 0.4 * (p + 0.25 * torch::randn({n, 2}, gen, f32));
  }
  if (name_ == "checkerboard") {
    // Uniform on [-2pi, 2pi]^2, keep points where sin x0 and sin x1 have OPPOSITE signs (the
    // reference code's kept set, official-code-notes §5.3). Rejection until n points.
    std::vector<torch::Tensor> kept;
    int64_t have = 0;
    while (have < n) {
      torch::Tensor x = (torch::rand({2 * (n - have) + 16, 2}, gen, f32) * 2.0 - 1.0) * (2 * kPi);
      torch::Tensor s = torch::sin(x);
      torch::Tensor keep = (s.select(1, 0) * s.select(1, 1)) < 0;
      torch::Tensor k = x.index({keep});
      kept.push_back(k);
      have += k.size(0);
    }
    return torch::cat(kept, 0).slice(0, 0, n);
  }
  if (name_ == "gaussian") {
    // N([-8, 2], [[1, 1], [1, 5]]); Cholesky of the covariance is [[1, 0], [1, 2]].
    torch::Tensor z = torch::randn({n, 2}, gen, f32);
    torch::Tensor L = torch::tensor({1.0f, 0.0f, 1.0f, 2.0f}, f32).reshape({2, 2});
    return torch::matmul(z, L.t()) + torch::tensor({-8.0f, 2.0f}, f32);
  }
  if (name_ == "moons") {
    // Two interleaved half circles (as sklearn's make_moons), noise 0.05, centred.
    int64_t n1 = n / 2, n2 = n - n1;
    torch::Tensor a = torch::rand({n1}, gen, f32) * kPi;
    torch::Tensor b = torch::rand({n2}, gen, f32) * kPi;
    torch::Tensor outer = torch::stack({torch::cos(a), torch::sin(a)}, 1);
    torch::Tensor inner = torch::stack({1.0 - torch::cos(b), 0.5 - torch::sin(b)}, 1);
    torch::Tensor x = torch::cat({outer, inner}, 0) + 0.05 * torch::randn({n, 2}, gen, f32);
    return (x - torch::tensor({0.5f, 0.25f}, f32)) * 2.0;
  }
  // eight_gaussians: centres on a circle of radius 4, std 0.5.
  torch::Tensor idx = torch::randint(0, 8, {n}, gen, torch::TensorOptions().dtype(torch::kLong).device(gen.device()));
  torch::Tensor ang = idx.to(torch::kFloat32) * (kPi / 4.0);
  torch::Tensor c = torch::stack({torch::cos(ang), torch::sin(ang)}, 1) * 4.0;
  return c + 0.5 * torch::randn({n, 2}, gen, f32);
}

torch::Tensor ToyDataset::Sample(int64_t n, torch::Generator& gen) const {
  torch::Tensor s =
      torch::tensor({static_cast<float>(scale_[0]), static_cast<float>(scale_[1])}, kF32.device(gen.device()));
  return SampleUnscaled(n, gen) * s;
}

}  // namespace vsdm::core
