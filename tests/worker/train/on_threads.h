// Ranks as threads of one test process: OnThreads(n, fn) runs fn(rank) for rank 0..n-1 at once
// and returns their results in rank order.
#pragma once

#include <future>
#include <vector>

namespace vsdm::worker {

template <typename F>
auto OnThreads(int n, F fn) {
  using R = decltype(fn(0));
  std::vector<std::future<R>> fs;
  for (int r = 0; r < n; ++r) fs.push_back(std::async(std::launch::async, fn, r));
  std::vector<R> out;
  for (auto& f : fs) out.push_back(f.get());
  return out;
}

}  // namespace vsdm::worker
