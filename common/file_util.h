// Small file helpers shared by every layer: crash-safe writes and whole-file reads.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace vsdm {

// Writes `bytes` to `path` atomically: a temp file in the same directory, fsync, rename over
// `path`, fsync of the directory. Readers see the old file or the new one, never a torn one.
// INTERNAL with errno text on failure (the temp file is removed).
absl::Status AtomicWriteFile(const std::string& path, const std::string& bytes);

// The whole file; NOT_FOUND if it cannot be opened.
absl::StatusOr<std::string> ReadFile(const std::string& path);

}  // namespace vsdm
