#include "server/attempt_id.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace vsdm::server {

std::string MakeAttemptId(const std::string& job_id, int attempt) { return absl::StrCat(job_id, "/", attempt); }

std::optional<AttemptRef> ParseAttemptId(const std::string& attempt_id) {
  const auto slash = attempt_id.rfind('/');
  if (slash == std::string::npos || slash == 0) return std::nullopt;
  AttemptRef ref;
  if (!absl::SimpleAtoi(absl::string_view(attempt_id).substr(slash + 1), &ref.attempt) || ref.attempt < 1)
    return std::nullopt;
  ref.job_id = attempt_id.substr(0, slash);
  // Only what MakeAttemptId builds: no sign, spaces or leading zeros in the number.
  if (MakeAttemptId(ref.job_id, ref.attempt) != attempt_id) return std::nullopt;
  return ref;
}

}  // namespace vsdm::server
