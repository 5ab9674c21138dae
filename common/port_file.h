// The port file a listening process writes once it is bound ("grpc PORT\nmetrics PORT\n"; a
// line only for what it serves), so a parent that asked for port 0 learns the real ports. One
// format, written by the coordinator and the agent, read by vsdmctl local up, tests and benches.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace vsdm {

struct BoundPorts {
  int grpc = 0;     // 0 = not served
  int metrics = 0;  // 0 = not served
};

// Atomic (AtomicWriteFile): a reader never sees half a file.
absl::Status WritePortFile(const std::string& path, const BoundPorts& ports);

// NOT_FOUND while the file does not exist; INVALID_ARGUMENT naming the line if it is garbled.
absl::StatusOr<BoundPorts> ReadPortFile(const std::string& path);

// Polls ReadPortFile every 50 ms until it succeeds or `timeout` passes (DEADLINE_EXCEEDED).
absl::StatusOr<BoundPorts> WaitForPortFile(const std::string& path, absl::Duration timeout);

}  // namespace vsdm
