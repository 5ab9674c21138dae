// Attempt ids: "<job_id>/<n>", the n-th attempt (from 1) of a job. The one place that builds and
// parses them (the coordinator hands them to agents, which echo them back in every report).
#pragma once

#include <optional>
#include <string>

namespace vsdm::server {

struct AttemptRef {
  std::string job_id;
  int attempt = 0;  // >= 1
};

// "job-00000007/2" for ("job-00000007", 2).
std::string MakeAttemptId(const std::string& job_id, int attempt);

// The inverse of MakeAttemptId; nullopt for anything it cannot have built (no '/', an empty job
// id, an attempt number that is not a positive decimal integer).
std::optional<AttemptRef> ParseAttemptId(const std::string& attempt_id);

}  // namespace vsdm::server
