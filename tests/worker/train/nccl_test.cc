// The NCCL backend on a real GPU (label `gpu`; built only with VSDM_WITH_CUDA against a CUDA
// LibTorch). One rank per visible device, as threads of this process.
#include <gtest/gtest.h>

#include <future>

#include "worker/train/comm.h"

namespace vsdm::worker {
namespace {

TEST(NcclTest, BroadcastAndAllReduceOverEveryVisibleDevice) {
  ASSERT_TRUE(BuiltWithNccl());
  ASSERT_TRUE(torch::cuda::is_available());
  ASSERT_EQ(DefaultBackend(/*want_cuda=*/true), "nccl");
  const int n = static_cast<int>(torch::cuda::device_count());
  StorePtr store = MakeInProcessStore();
  std::vector<std::future<std::pair<double, double>>> fs;
  for (int r = 0; r < n; ++r) {
    fs.push_back(std::async(std::launch::async, [&, r] {
      CommOptions o;
      o.backend = "nccl";
      o.timeout = std::chrono::milliseconds(30000);
      auto comm = Comm::Create(store, "nccl", r, n, o);
      EXPECT_TRUE(comm.ok()) << comm.status();
      torch::Tensor a = torch::full({1000}, r == n - 1 ? 7.0 : 0.0, torch::kFloat64);
      EXPECT_TRUE((*comm)->Broadcast(a, n - 1).ok());
      std::vector<torch::Tensor> b = {torch::full({3}, static_cast<float>(r + 1)), torch::ones({5})};
      EXPECT_TRUE((*comm)->AllReduceSum(b).ok());
      return std::make_pair(a.sum().item<double>(), b[0][0].item<double>());
    }));
  }
  for (auto& f : fs) {
    auto [a, b] = f.get();
    EXPECT_EQ(a, 7000.0);
    EXPECT_EQ(b, n * (n + 1) / 2.0);
  }
}

}  // namespace
}  // namespace vsdm::worker
