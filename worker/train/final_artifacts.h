// The end of a job: evaluate the EMA model against fresh data and write the artifacts
// (samples.npy, metrics.json, samples.png, model.pt) into the out directory.
#pragma once

#include <chrono>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "worker/train/job_setup.h"

namespace vsdm::worker {

// A tensor as nested JSON arrays (a scalar for a 0-d tensor), float64.
nlohmann::json TensorToJson(const torch::Tensor& t);
// The last step of every job's artifacts: eval_seconds (since `eval_start`), wall_seconds (the
// caller's wall_seconds_training in `extra` + evaluation), then `m` written as metrics.json.
absl::Status WriteMetricsFile(nlohmann::json& m, const nlohmann::json& extra,
                              std::chrono::steady_clock::time_point eval_start, const std::string& out_dir);

// Evaluates `ema_net` under `process` (the final variational parameter) and writes the
// artifacts. `extra` is merged into metrics.json (timings, per-round history). Returns the
// metrics written.
absl::StatusOr<nlohmann::json> WriteFinalArtifacts(const JobSetup& setup, core::ScoreNet& ema_net,
                                                   const core::Process& process, const std::string& out_dir,
                                                   const nlohmann::json& extra);

}  // namespace vsdm::worker
