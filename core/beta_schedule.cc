#include "core/beta_schedule.h"

#include <cmath>

namespace vsdm::core {

double BetaSchedule::Beta(double t) const { return beta_min + std::pow(t, r) * (beta_max - beta_min); }

double BetaSchedule::Integral(double t) const {
  return beta_min * t + (beta_max - beta_min) * std::pow(t, r + 1.0) / (r + 1.0);
}

}  // namespace vsdm::core
