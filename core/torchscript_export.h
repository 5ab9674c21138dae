// Exports a trained score model as a self-contained TorchScript module that Python loads with
// torch.jit.load: forward(x, t) returns the score s(x, t); sample(n, steps) runs the Heun
// probability-flow ODE from the prior N(0, Sigma_T); A, D and the schedule are attributes.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "core/diffusion.h"
#include "core/momentum.h"
#include "core/score_model.h"
#include "core/score_net.h"

namespace vsdm::core {

struct ExportInfo {
  BetaSchedule schedule;
  Parameterization param = Parameterization::kPolicy;
  std::string method = "vsdm";
};

// Builds the module from `net` (usually the EMA net) and `table` (the final A) and saves it to
// `path` atomically. INTERNAL if TorchScript compilation or the write fails.
absl::Status ExportTorchScript(const std::string& path, ScoreNet& net, const KernelTable& table,
                               const ExportInfo& info);

// The VSMD export: forward(z, t) returns the velocity score s_v(z, t) for z = (x, v) [B, 2d];
// sample(n, steps) runs the Heun probability-flow ODE from N(0, Sigma_T) (with its x-v
// correlation) and returns the x part; a, c, beta, gamma are attributes.
absl::Status ExportMomentumTorchScript(const std::string& path, ScoreNet& net, const MomentumTable& table,
                                       const std::string& method);

}  // namespace vsdm::core
