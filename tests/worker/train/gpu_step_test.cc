// A trainer's step on the GPU never waits for the device (label `gpu`; built only with
// VSDM_WITH_CUDA against a CUDA LibTorch, and compiled, never run, on CPU builds by
// vsdm_gpu_test_compile_check). Note [No host sync in a step] (core/dsm_trainer.h): with CUDA's
// sync debug mode at "error", any host synchronisation inside the step (an .item(), a blocking
// copy, a nonzero) throws, so five steps of examples/spiral.yaml on cuda that finish prove the
// step queues its work and returns.
#include <gtest/gtest.h>

#include <c10/cuda/CUDAFunctions.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "common/job_spec.h"
#include "core/dsm_trainer.h"
#include "core/torch_compat.h"
#include "worker/train/job_setup.h"

namespace vsdm::worker {
namespace {

// CUDA's sync debug mode at L_ERROR while alive; back to L_DISABLED after, whatever happened.
class SyncDebugErrorScope {
 public:
  SyncDebugErrorScope() { c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_ERROR); }
  ~SyncDebugErrorScope() { c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_DISABLED); }
  SyncDebugErrorScope(const SyncDebugErrorScope&) = delete;
  SyncDebugErrorScope& operator=(const SyncDebugErrorScope&) = delete;
};

class GpuStepTest : public ::testing::TestWithParam<core::Precision> {};

TEST_P(GpuStepTest, FiveTrainingStepsOnCudaNeverSyncWithTheHost) {
  ASSERT_TRUE(torch::cuda::is_available());
  auto spec = LoadJobSpecFile(std::string(VSDM_SOURCE_DIR) + "/examples/spiral.yaml", {"resources.device=cuda"});
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto setup = MakeJobSetup(*spec);
  ASSERT_TRUE(setup.ok()) << setup.status();
  ASSERT_TRUE(setup->device.is_cuda());
  core::DsmTrainerOptions options = setup->trainer_options;
  options.precision = GetParam();
  core::DsmTrainer trainer(setup->MakeNet(), options);
  // Once a round, outside the step (the tables are built on the CPU and copied up, a sync).
  std::unique_ptr<core::Process> process = setup->Process(setup->InitialParam());
  torch::Generator gen_data = MakeRoundGenerator(*spec, Stream::kData, 0, 0);
  torch::Generator gen_train = MakeRoundGenerator(*spec, Stream::kTrain, 0, 0);
  std::vector<torch::Tensor> before;
  for (const auto& p : trainer.net()->parameters()) before.push_back(p.detach().clone());
  torch::cuda::synchronize();  // the copies above are done before the watch starts

  constexpr int kSteps = 5;
  std::vector<torch::Tensor> losses;
  {
    SyncDebugErrorScope no_sync;
    ASSERT_NO_THROW({
      for (int s = 0; s < kSteps; ++s) {
        torch::Tensor x0 = setup->TrainBatch(spec->train.batch_points, 0, 1, s, gen_data);
        losses.push_back(trainer.ComputeGradients(x0, gen_train, *process));
        trainer.ApplyGradients();
      }
    });
  }
  ASSERT_EQ(losses.size(), static_cast<size_t>(kSteps));
  for (const torch::Tensor& loss : losses) {
    EXPECT_TRUE(loss.is_cuda());
    EXPECT_EQ(loss.scalar_type(), torch::kFloat32);  // float32 under bf16 autocast too
    EXPECT_EQ(loss.dim(), 0);
    EXPECT_TRUE(std::isfinite(loss.item<double>()));
  }
  size_t i = 0;
  bool moved = false;
  for (const auto& p : trainer.net()->parameters()) {
    EXPECT_TRUE(p.is_cuda());
    EXPECT_EQ(p.scalar_type(), torch::kFloat32);  // master weights stay float32 under bf16
    moved = moved || !torch::equal(p.detach(), before[i++]);
  }
  EXPECT_TRUE(moved) << "the steps left every parameter unchanged";
  for (const auto& p : trainer.ema_net()->parameters()) EXPECT_TRUE(p.is_cuda());
  EXPECT_EQ(trainer.steps(), kSteps);
}

INSTANTIATE_TEST_SUITE_P(Precisions, GpuStepTest, ::testing::Values(core::Precision::kFp32, core::Precision::kBf16),
                         [](const ::testing::TestParamInfo<core::Precision>& info) {
                           return std::string(core::PrecisionName(info.param));
                         });

}  // namespace
}  // namespace vsdm::worker
