// The one retry predicate (the Abseil litmus test): UNAVAILABLE and DEADLINE_EXCEEDED mean
// "the peer is unreachable, retry the call"; every other code is an answer.
#pragma once

#include "absl/status/status.h"

namespace vsdm {

inline bool IsRetryable(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded;
}
inline bool IsRetryable(const absl::Status& s) { return IsRetryable(s.code()); }

}  // namespace vsdm
