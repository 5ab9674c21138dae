// The end of a job: evaluate the EMA model against fresh data and write the artifacts
// (samples.npy, metrics.json, samples.png, model.pt) into the out directory.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "worker/train/job_setup.h"

namespace vsdm::worker {

// Evaluates `ema_net` under `process` (the final variational parameter) and writes the
// artifacts. `extra` is merged into metrics.json (timings, per-round history). Returns the
// metrics written.
absl::StatusOr<nlohmann::json> WriteFinalArtifacts(const JobSetup& setup, core::ScoreNet& ema_net,
                                                   const core::Process& process, const std::string& out_dir,
                                                   const nlohmann::json& extra);

}  // namespace vsdm::worker
