// What the coordinator still has to tell each worker agent: the rank assignments it has not yet
// reported running, and the attempts it must abort; plus the TCPStore port each live attempt's
// rank 0 serves on, handed out from a configured range so that no two live attempts share one.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "vsdm/v1/service.pb.h"

namespace vsdm::server {

// An inclusive range of TCP ports, lo <= hi.
struct PortRange {
  int lo = 29500;
  int hi = 29999;
  int size() const { return hi - lo + 1; }
};

// "LO-HI" (e.g. "29500-29999"), 1 <= LO <= HI <= 65535. INVALID_ARGUMENT saying what is wrong
// and the allowed range (the caller prefixes the flag's name).
absl::StatusOr<PortRange> ParsePortRange(absl::string_view text);

// Not thread-safe: JobManager serialises calls (under its lock).
class AssignmentBook {
 public:
  // REQUIRES: 1 <= ports.lo <= ports.hi <= 65535.
  explicit AssignmentBook(PortRange ports) : ports_(ports), next_(ports.lo) {}

  // --- store ports
  // A port for `attempt_id`'s store: the next one round-robin from the last one handed out that
  // no live attempt holds (a port is live from TakePort until EndAttempt). nullopt when every port
  // of the range is held. An attempt that already holds one gets the same port again.
  std::optional<int> TakePort(const std::string& attempt_id);
  // Marks `port` held by `attempt_id` (an attempt that was running before a coordinator restart).
  // False, changing nothing, when the port is outside the range or held by another attempt.
  bool HoldPort(const std::string& attempt_id, int port);
  std::optional<int> PortOf(const std::string& attempt_id) const;
  int ports_held() const { return static_cast<int>(port_of_.size()); }
  const PortRange& ports() const { return ports_; }

  // --- assignments
  // Queues `a` for `worker_id` until Deliverable drops it.
  void Assign(const std::string& worker_id, v1::Assignment a);
  // The assignments to send `worker_id` in this heartbeat's response. First drops, for good,
  // every queued one for which `done(a)` is true (the worker reports the rank running, the rank
  // has exited, or the attempt has ended); the rest are sent again on every heartbeat, so a lost
  // response loses no rank.
  std::vector<v1::Assignment> Deliverable(const std::string& worker_id,
                                          const std::function<bool(const v1::Assignment&)>& done);

  // --- aborts
  // Tells `worker_id` to abort `attempt_id` (once, in its next TakeAborts).
  void Abort(const std::string& worker_id, const std::string& attempt_id);
  // The attempts `worker_id` must abort, sorted; each is returned once.
  std::vector<std::string> TakeAborts(const std::string& worker_id);

  // The attempt has ended (succeeded, failed, cancelled, or its start was not made): drops its
  // queued assignments on every worker and releases its store port. Its aborts stay queued.
  void EndAttempt(const std::string& attempt_id);

 private:
  PortRange ports_;
  int next_;                                                        // where the next TakePort starts looking
  std::map<std::string, int> port_of_;                              // live attempt -> its store port
  std::set<int> held_;                                              // the values of port_of_
  std::map<std::string, std::vector<v1::Assignment>> assignments_;  // per worker, in order
  std::map<std::string, std::set<std::string>> aborts_;             // per worker
};

}  // namespace vsdm::server
