#include "worker/train/comm.h"

#include <torch/version.h>
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef VSDM_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_runtime_api.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace vsdm::worker {

// Note [LibTorch 1.13 vs 2.x]
// 1.13: ProcessGroupGloo/NCCL derive from c10d::ProcessGroup and are used directly.
// 2.x: they derive from c10d::Backend (ProcessGroup became a dispatcher over backends); the
// backend objects keep the same constructors and collective methods. We construct and call the
// backend object in both, so only this alias differs. TCPStore(host, TCPStoreOptions),
// PrefixStore, HashStore and Work::wait are the same in both.
#if TORCH_VERSION_MAJOR >= 2
using GroupBase = c10d::Backend;
#else
using GroupBase = c10d::ProcessGroup;
#endif

struct StoreHandle {
  c10::intrusive_ptr<c10d::Store> store;
};

namespace {

std::string What(const std::exception& e) {
  if (const auto* ce = dynamic_cast<const c10::Error*>(&e)) return ce->what_without_backtrace();
  return e.what();
}

absl::Status FromException(const std::string& where, const std::exception& e) {
  return ClassifyCommError(where, What(e));
}

}  // namespace

absl::Status ClassifyCommError(const std::string& where, std::string msg) {
  // Keep the first line: c10d appends internal frames.
  if (auto nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
  const std::string lower = absl::AsciiStrToLower(msg);
  const std::string text = absl::StrCat(where, ": ", msg);
  if (absl::StrContains(lower, "timed out") || absl::StrContains(lower, "timeout"))
    return absl::DeadlineExceededError(text);
  // What Gloo's TCP pairs and the TCPStore say when the other end is gone or unreachable.
  for (const char* peer_gone : {"connection", "peer", "socket", "broken pipe", "recv", "send", "eof", "network",
                                "unreachable", "refused", "reset by", "failed to connect"}) {
    if (absl::StrContains(lower, peer_gone)) return absl::UnavailableError(text);
  }
  // Anything else is this process's own fault (a bad root, a shape or dtype mismatch): a bug, not a
  // dead peer, so it must not be retried or reported as one.
  return absl::InternalError(text);
}

absl::StatusOr<StorePtr> ConnectTcpStore(const std::string& host, int port, bool is_server, int world_size,
                                         std::chrono::milliseconds timeout) {
  if (port <= 0 || port > 65535) return absl::InvalidArgumentError(absl::StrCat("store port ", port, " out of range"));
  c10d::TCPStoreOptions o;
  o.port = static_cast<std::uint16_t>(port);
  o.isServer = is_server;
  o.numWorkers = static_cast<std::size_t>(world_size);
  o.waitWorkers = false;  // the process groups wait for their members themselves
  o.timeout = timeout;
  // Note [TCPStore binds every interface]
  // LibTorch 1.13's TCPStoreOptions has no bind address (later releases can adopt a pre-bound
  // listening socket, TCPStoreOptions::masterListenFd; 1.13 cannot), so trainer 0's store
  // listens on the wildcard address of `port`, even for a loopback-only cluster. What keeps other jobs and other hosts
  // out is the attempt's key prefix (Note [Store key prefix], distributed_job.h) and the
  // operator's network policy (README, "Network policy"): the coordinator's --store-port-range
  // and Gloo's ephemeral ports reachable between workers only.
  try {
    auto h = std::make_shared<StoreHandle>();
    h->store = c10::make_intrusive<c10d::TCPStore>(host, o);
    return h;
  } catch (const std::exception& e) {
    return FromException(absl::StrCat(is_server ? "host store at " : "connect to store at ", host, ":", port), e);
  }
}

StorePtr MakeInProcessStore(std::chrono::milliseconds timeout) {
  auto h = std::make_shared<StoreHandle>();
  h->store = c10::make_intrusive<c10d::HashStore>();
  h->store->setTimeout(timeout);
  return h;
}

bool BuiltWithNccl() {
#ifdef VSDM_WITH_CUDA
  return true;
#else
  return false;
#endif
}

std::string DefaultBackend(bool want_cuda) {
  return want_cuda && BuiltWithNccl() && torch::cuda::is_available() ? "nccl" : "gloo";
}

absl::StatusOr<std::string> ResolveBackend(const std::string& choice, bool want_cuda) {
  if (choice == "auto") return DefaultBackend(want_cuda);
  if (choice == "gloo") return choice;
  if (choice == "nccl") {
    if (!BuiltWithNccl())
      return absl::FailedPreconditionError(
          "nccl: this build has no NCCL backend (configure with -DVSDM_WITH_CUDA=ON against a CUDA LibTorch)");
    return choice;
  }
  return absl::InvalidArgumentError(absl::StrCat("must be auto, gloo or nccl, got \"", choice, "\""));
}

struct Comm::Impl {
  std::string name, backend;
  int rank = 0, size = 1;
  c10::intrusive_ptr<GroupBase> pg;
  // nccl: the group's GPU; collectives run on tensors there. Gloo: the CPU, unused.
  torch::Device device{torch::kCPU};

  // Note [Collective tensors on any device] (comm.h). NCCL needs contiguous tensors on the group's
  // device; Gloo takes contiguous CPU and CUDA tensors as they are (it stages CUDA ones through
  // pinned host memory on its own streams, ordered after the caller's current stream). A staged
  // copy is written back by the caller of Stage.
  torch::Tensor Stage(const torch::Tensor& t) const { return device.is_cuda() ? t.to(device).contiguous() : t.contiguous(); }
};

Comm::Comm(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Comm::~Comm() = default;
int Comm::rank() const { return impl_->rank; }
int Comm::size() const { return impl_->size; }
const std::string& Comm::backend() const { return impl_->backend; }

absl::StatusOr<std::unique_ptr<Comm>> Comm::Create(const StorePtr& store, const std::string& prefix, int rank, int size,
                                                   const CommOptions& options) {
  if (rank < 0 || rank >= size)
    return absl::InvalidArgumentError(absl::StrCat("rank ", rank, " not in [0, ", size, ")"));
  auto impl = std::make_unique<Impl>();
  impl->name = options.name.empty() ? prefix : options.name;
  impl->backend = options.backend;
  impl->rank = rank;
  impl->size = size;
  auto prefixed = c10::make_intrusive<c10d::PrefixStore>(prefix, store->store);
  try {
    if (options.backend == "gloo") {
      auto o = c10d::ProcessGroupGloo::Options::create(options.timeout);
      if (!options.bind.empty()) {
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(options.bind));
      } else if (!options.interface.empty()) {
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(options.interface));
      } else {
        o->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      o->threads = 2;
      impl->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, rank, size, o);
    } else if (options.backend == "nccl") {
#ifdef VSDM_WITH_CUDA
      if (!torch::cuda::is_available()) return absl::FailedPreconditionError("backend nccl: no CUDA device");
      // One GPU per rank: each rank's own when it sees several (threads of one test process), else
      // cuda:0 (a rank process whose CUDA_VISIBLE_DEVICES names its GPU).
      const auto index = static_cast<c10::DeviceIndex>(rank % torch::cuda::device_count());
      c10::cuda::set_device(index);
      auto o = c10d::ProcessGroupNCCL::Options::create();
      o->timeout = options.timeout;
      impl->pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed, rank, size, o);
      impl->device = torch::Device(torch::kCUDA, index);
#else
      return absl::FailedPreconditionError(
          "backend nccl: this build has no CUDA (configure with -DVSDM_WITH_CUDA=ON against a CUDA LibTorch)");
#endif
    } else {
      return absl::InvalidArgumentError(absl::StrCat("backend: must be gloo or nccl, got ", options.backend));
    }
  } catch (const std::exception& e) {
    return FromException(absl::StrCat("join process group '", impl->name, "' as rank ", rank, "/", size), e);
  }
  return std::unique_ptr<Comm>(new Comm(std::move(impl)));
}

int64_t DeviceMemoryUsedBytes() {
#ifdef VSDM_WITH_CUDA
  if (!torch::cuda::is_available()) return -1;
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) return -1;
  return static_cast<int64_t>(total_bytes - free_bytes);
#else
  return -1;
#endif
}

absl::Status Comm::Broadcast(torch::Tensor& t, int root) {
  try {
    std::vector<torch::Tensor> v{impl_->Stage(t)};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    impl_->pg->broadcast(v, o)->wait();
    if (!v[0].is_same(t)) t.copy_(v[0]);  // staged: the result back into the caller's tensor
  } catch (const std::exception& e) {
    return FromException(absl::StrCat(impl_->name, " broadcast from rank ", root), e);
  }
  return absl::OkStatus();
}

absl::Status Comm::AllReduceSum(std::vector<torch::Tensor>& buckets) {
  try {
    std::vector<std::vector<torch::Tensor>> staged;
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    staged.reserve(buckets.size());
    for (auto& b : buckets) {
      staged.push_back({impl_->Stage(b)});
      works.push_back(impl_->pg->allreduce(staged.back(), c10d::AllreduceOptions()));
    }
    for (size_t i = 0; i < works.size(); ++i) {
      works[i]->wait();
      if (!staged[i][0].is_same(buckets[i])) buckets[i].copy_(staged[i][0]);
    }
  } catch (const std::exception& e) {
    return FromException(absl::StrCat(impl_->name, " all-reduce"), e);
  }
  return absl::OkStatus();
}

absl::Status Comm::BroadcastBytes(std::string& bytes, int root, int64_t max_bytes) {
  torch::Tensor n = torch::tensor({static_cast<int64_t>(bytes.size())}, torch::kLong);
  if (auto s = Broadcast(n, root); !s.ok()) return s;
  const int64_t size = n.item<int64_t>();
  // Every rank checks the same size, so all refuse together and none posts the payload.
  if (size < 0 || size > max_bytes)
    return absl::OutOfRangeError(absl::StrCat(impl_->name, " broadcast of bytes from rank ", root, ": size ", size,
                                              " is outside [0, ", max_bytes, "]; refused, nothing allocated"));
  if (size == 0) {
    bytes.clear();
    return absl::OkStatus();
  }
  torch::Tensor buf = impl_->rank == root ? torch::from_blob(bytes.data(), {size}, torch::kUInt8).clone()
                                          : torch::empty({size}, torch::kUInt8);
  if (auto s = Broadcast(buf, root); !s.ok()) return s;
  if (impl_->rank != root) bytes.assign(reinterpret_cast<const char*>(buf.data_ptr<uint8_t>()), size);
  return absl::OkStatus();
}

}  // namespace vsdm::worker
