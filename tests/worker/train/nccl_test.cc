// comm.cc's collectives on a real GPU (label `gpu`; built only with VSDM_WITH_CUDA against a CUDA
// LibTorch): NCCL with one rank per visible device, and Gloo carrying CUDA tensors for ranks that
// share one GPU (what vsdm-train --backend gloo runs on a single-GPU machine). Ranks are threads
// of this process.
#include <gtest/gtest.h>

#include <future>

#include "worker/train/comm.h"
#include "tests/worker/train/on_threads.h"

namespace vsdm::worker {
namespace {

TEST(CommBackendTest, ResolvesEveryChoiceInACudaBuild) {
  ASSERT_TRUE(torch::cuda::is_available());
  EXPECT_EQ(*ResolveBackend("auto", /*want_cuda=*/true), "nccl");
  EXPECT_EQ(*ResolveBackend("auto", /*want_cuda=*/false), "gloo");
  EXPECT_EQ(*ResolveBackend("gloo", /*want_cuda=*/true), "gloo");
  EXPECT_EQ(*ResolveBackend("nccl", /*want_cuda=*/false), "nccl");
  EXPECT_EQ(ResolveBackend("mpi", true).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(NcclTest, BroadcastAndAllReduceOverEveryVisibleDevice) {
  ASSERT_TRUE(BuiltWithNccl());
  ASSERT_TRUE(torch::cuda::is_available());
  ASSERT_EQ(DefaultBackend(/*want_cuda=*/true), "nccl");
  const int n = static_cast<int>(torch::cuda::device_count());
  StorePtr store = MakeInProcessStore();
  struct Result {
    double broadcast_sum, cpu_bucket, device_bucket;
    bool device_bucket_stayed;
  };
  auto results = OnThreads(n, [&](int r) {
    CommOptions o;
    o.backend = "nccl";
    o.timeout = std::chrono::milliseconds(30000);
    auto comm = Comm::Create(store, "nccl", r, n, o);
    EXPECT_TRUE(comm.ok()) << comm.status();
    if (!comm.ok()) return Result{};
    // A CPU tensor (staged to the rank's GPU and back) ...
    torch::Tensor a = torch::full({1000}, r == n - 1 ? 7.0 : 0.0, torch::kFloat64);
    EXPECT_TRUE((*comm)->Broadcast(a, n - 1).ok());
    // ... and buckets on the host and on the rank's own device, in one all-reduce.
    const torch::Device dev(torch::kCUDA, static_cast<c10::DeviceIndex>(r));
    std::vector<torch::Tensor> b = {torch::full({3}, static_cast<float>(r + 1)), torch::ones({5}),
                                    torch::full({4}, static_cast<float>(r + 1), torch::TensorOptions().device(dev))};
    EXPECT_TRUE((*comm)->AllReduceSum(b).ok());
    return Result{a.sum().item<double>(), b[0][0].item<double>(), b[2].sum().item<double>(), b[2].device() == dev};
  });
  for (const Result& res : results) {
    EXPECT_EQ(res.broadcast_sum, 7000.0);
    EXPECT_EQ(res.cpu_bucket, n * (n + 1) / 2.0);
    EXPECT_EQ(res.device_bucket, 4 * n * (n + 1) / 2.0);
    EXPECT_TRUE(res.device_bucket_stayed);
  }
}

// Note [Collective tensors on any device] (comm.h): two Gloo ranks whose tensors are on the same
// GPU, as vsdm-train --backend gloo runs them on a single-GPU machine.
TEST(GlooCudaTest, CarriesCudaTensorsAndWritesResultsIntoTheCallersTensors) {
  ASSERT_TRUE(torch::cuda::is_available());
  const auto cuda = torch::TensorOptions().device(torch::kCUDA);
  StorePtr store = MakeInProcessStore(std::chrono::milliseconds(30000));
  struct Result {
    torch::Tensor contiguous, transposed, bucket0, bucket1, host_bucket;
  };
  auto results = OnThreads(2, [&](int r) {
    CommOptions o;
    o.backend = "gloo";
    o.bind = "127.0.0.1";
    o.timeout = std::chrono::milliseconds(30000);
    auto comm = Comm::Create(store, "gloo-cuda", r, 2, o);
    EXPECT_TRUE(comm.ok()) << comm.status();
    if (!comm.ok()) return Result{};
    Result res;
    res.contiguous = torch::full({1000}, r == 1 ? 3.0 : 0.0, cuda.dtype(torch::kFloat64));
    EXPECT_TRUE((*comm)->Broadcast(res.contiguous, 1).ok());
    // A non-contiguous view is staged as a contiguous copy: the result must land in the view.
    torch::Tensor base = torch::arange(12, cuda.dtype(torch::kFloat32)).reshape({3, 4}) * (r == 0 ? 1 : -1);
    res.transposed = base.t();
    EXPECT_FALSE(res.transposed.is_contiguous());
    EXPECT_TRUE((*comm)->Broadcast(res.transposed, 0).ok());
    // Buckets on the device (and one on the host), all posted before the first wait.
    std::vector<torch::Tensor> b = {torch::full({1 << 20}, static_cast<float>(r + 1), cuda), torch::ones({7}, cuda),
                                    torch::full({3}, 10.0f * (r + 1))};
    EXPECT_TRUE((*comm)->AllReduceSum(b).ok());
    res.bucket0 = b[0];
    res.bucket1 = b[1];
    res.host_bucket = b[2];
    return res;
  });
  const torch::Tensor expected_t = torch::arange(12, torch::kFloat32).reshape({3, 4}).t();
  for (const Result& res : results) {
    ASSERT_TRUE(res.contiguous.defined());
    EXPECT_TRUE(res.contiguous.is_cuda());
    EXPECT_EQ(res.contiguous.sum().item<double>(), 3000.0);
    EXPECT_TRUE(res.transposed.is_cuda());
    EXPECT_TRUE(torch::equal(res.transposed.cpu(), expected_t));
    EXPECT_TRUE(res.bucket0.is_cuda());
    EXPECT_EQ(res.bucket0.min().item<float>(), 3.0f);
    EXPECT_EQ(res.bucket0.max().item<float>(), 3.0f);
    EXPECT_EQ(res.bucket1.sum().item<float>(), 14.0f);
    EXPECT_FALSE(res.host_bucket.is_cuda());
    EXPECT_EQ(res.host_bucket[0].item<float>(), 30.0f);
  }
}

}  // namespace
}  // namespace vsdm::worker
