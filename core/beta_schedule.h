// The noise schedule of spec §1: beta(t) = beta_min + t^r (beta_max - beta_min), T = 1, and
// its integral B(t). Plain doubles; every caller that needs tensors builds them from these.
#pragma once

namespace vsdm::core {

struct BetaSchedule {
  double beta_min = 0.1;
  double beta_max = 10.0;
  double r = 1.7;

  // beta(t), spec §1.
  double Beta(double t) const;
  // B(t) = int_0^t beta(s) ds = beta_min t + (beta_max - beta_min) t^(r+1)/(r+1), spec §1.
  double Integral(double t) const;
};

}  // namespace vsdm::core
