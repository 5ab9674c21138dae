// The end of a forecasting job (time series): rolling forecasts on the test span, scored with the
// baselines on the same windows, and the artifacts forecasts.npy, targets.npy, contexts.npy,
// forecast.png, model.pt and metrics.json.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "worker/train/job_setup.h"

namespace vsdm::worker {

// REQUIRES: setup.series. Forecasts every test origin with spec.sample.n sample paths of
// `ema_net` under `process` (the final A_D), scores them and the baselines (persistence, Gaussian
// random walk, Gaussian VAR(1), seasonal climatology when the data has dates, the true law for
// var1) with CRPS, CRPS-sum, ND, NRMSE and the energy CRPS, and writes the artifacts into
// `out_dir`. `extra` is merged into metrics.json. Returns the metrics written.
absl::StatusOr<nlohmann::json> WriteForecastArtifacts(const JobSetup& setup, core::ScoreNet& ema_net,
                                                      const core::Process& process, const std::string& out_dir,
                                                      const nlohmann::json& extra);

}  // namespace vsdm::worker
