// The end of an image job: samples from the EMA model, the image-quality figures of
// core/image_metrics.h (with their floor and baselines) for the main samples and the Heun steps
// sweep, and the artifacts: samples.npy [n, C, H, W] in [0, 1], samples.png (samples beside
// real test images, probability-flow paths, the learned per-pixel D), metrics.json, model.pt.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "core/feature_net.h"
#include "nlohmann/json.hpp"
#include "worker/train/job_setup.h"

namespace vsdm::worker {

// The feature net for the job's data: sample.classifier when set (INVALID_ARGUMENT when it does
// not fit the images), else the cached <cache_dir>/featnet-<dataset>.pt, trained and cached on
// first use (deterministic in the seed; `vsdm-featnet` writes the same file). FAILED_PRECONDITION
// when the data has no labels. `report` receives its test accuracy.
absl::StatusOr<core::FeatureNet> FeatureNetFor(const JobSetup& setup, core::FeatureNetReport* report,
                                               std::string* source);

// The file name under the cache directory for a job's data: "featnet-<dataset tag>.pt", plus the
// split ("-split<seed>-<test fraction>") for sources without an official one, so a cached net has
// never seen the job's test images.
std::string FeatureNetCacheName(const JobSpec& spec, const core::ImageData& data);

// Evaluates `ema_net` under `process` and writes the artifacts into `out_dir`; `extra` is merged
// into metrics.json. REQUIRES: setup.images is set.
absl::StatusOr<nlohmann::json> WriteImageArtifacts(const JobSetup& setup, core::ScoreNet& ema_net,
                                                   const core::Process& process, const std::string& out_dir,
                                                   const nlohmann::json& extra);

}  // namespace vsdm::worker
