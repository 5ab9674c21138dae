// The one adapter between vsdm and c10d: the rendezvous store, process groups (Gloo, on CPU or
// CUDA tensors; NCCL when built with VSDM_WITH_CUDA and a device is present) and the few
// collectives the runtime posts, with exceptions turned into Status. Everything that differs
// between Debian's LibTorch 1.13 and LibTorch 2.x (ProcessGroup vs Backend base class, NCCL
// options) lives in comm.cc; no other file includes a c10d header.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace vsdm::worker {

// A c10d key-value store (opaque outside comm.cc).
struct StoreHandle;
using StorePtr = std::shared_ptr<StoreHandle>;

// The TCPStore of one attempt: hosted by the process with is_server (trainer rank 0), joined by
// the others. Clients retry the connection until `timeout`. The server listens on every
// interface (LibTorch 1.13 cannot bind one; see the note at its creation in comm.cc).
absl::StatusOr<StorePtr> ConnectTcpStore(const std::string& host, int port, bool is_server, int world_size,
                                         std::chrono::milliseconds timeout);
// A c10d exception's message as a Status: DEADLINE_EXCEEDED for a timeout, UNAVAILABLE when the
// peer or the store is gone or unreachable (retrying the attempt may help), INTERNAL for
// anything else (a local error such as a bad root or mismatched tensors: exit 1, not "peer lost").
absl::Status ClassifyCommError(const std::string& where, std::string message);

// An in-process store (c10d::HashStore), for ranks that are threads of one test process.
// `timeout` bounds every wait on it, a group's join included (c10d's default is 5 minutes).
StorePtr MakeInProcessStore(std::chrono::milliseconds timeout = std::chrono::minutes(5));

struct CommOptions {
  std::string backend = "gloo";              // gloo | nccl
  std::chrono::milliseconds timeout{60000};  // every collective fails after this, never hangs
  std::string bind;                          // gloo: address to bind (wins over `interface`)
  std::string interface;                     // gloo: network interface to bind; both empty = the hostname's address
  std::string name;                          // how errors name the group; "" = its store prefix
};

// The most BroadcastBytes accepts by default: the size comes from the wire (root's peer), and a
// receiver allocates it.
inline constexpr int64_t kMaxBroadcastBytes = int64_t{2} << 30;  // 2 GiB

// "nccl" when this build has the NCCL backend and a CUDA device is visible, else "gloo".
std::string DefaultBackend(bool want_cuda);
// The backend a choice names (vsdm-train --backend, $VSDM_BACKEND): "auto" is
// DefaultBackend(want_cuda); "gloo" and "nccl" are themselves (Gloo also serves ranks whose
// tensors are on a GPU, e.g. several ranks sharing one GPU, which NCCL refuses). "nccl" in a build
// without it is FAILED_PRECONDITION; anything else INVALID_ARGUMENT naming the choices.
absl::StatusOr<std::string> ResolveBackend(const std::string& choice, bool want_cuda);
// Whether this binary was built with the NCCL backend (VSDM_WITH_CUDA).
bool BuiltWithNccl();
// Bytes in use on the current CUDA device (cudaMemGetInfo: total - free, so other processes'
// allocations count too); -1 without CUDA.
int64_t DeviceMemoryUsedBytes();

// One process group. Collectives block until done or failed (a dead or stuck peer turns into
// an error after CommOptions::timeout at the latest). Not thread-safe.
class Comm {
 public:
  // Joins the group `prefix` (its own key space in `store`) as `rank` of `size`. Blocks until
  // every member has joined, or fails after the timeout.
  static absl::StatusOr<std::unique_ptr<Comm>> Create(const StorePtr& store, const std::string& prefix, int rank,
                                                      int size, const CommOptions& options);
  ~Comm();

  int rank() const;
  int size() const;
  const std::string& backend() const;

  // Note [Collective tensors on any device]: the tensors of Broadcast and AllReduceSum may live
  // on the CPU or a CUDA device under either backend (Gloo copies CUDA tensors through pinned
  // host memory itself; for NCCL, comm.cc stages CPU tensors, or ones on another GPU, to the
  // group's device); a non-contiguous tensor is staged as a contiguous copy. Either way the result
  // is written back into the caller's tensor before the call returns, and a CUDA result is ordered
  // before later work on the caller's current stream.
  //
  // In place: every rank ends with root's contents of `t` (same shape and dtype on all ranks).
  absl::Status Broadcast(torch::Tensor& t, int root);
  // In place, sum over ranks; one collective per tensor, all posted before the first wait, so
  // buckets travel concurrently.
  absl::Status AllReduceSum(std::vector<torch::Tensor>& buckets);
  // Root's bytes to every rank (size first, then the payload). A size outside [0, max_bytes]
  // (root's own, or one read from the wire) is OUT_OF_RANGE on every rank, before anything is
  // allocated and before the payload is posted, so no rank is left waiting for it.
  absl::Status BroadcastBytes(std::string& bytes, int root, int64_t max_bytes = kMaxBroadcastBytes);

 private:
  struct Impl;
  explicit Comm(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace vsdm::worker
