// Small facts about vsdm.v1.JobState shared by the coordinator and the CLI.
#pragma once

#include <string>

#include "vsdm/v1/job.pb.h"

namespace vsdm {

inline bool IsFinalState(v1::JobState s) {
  return s == v1::JOB_STATE_SUCCEEDED || s == v1::JOB_STATE_FAILED || s == v1::JOB_STATE_CANCELLED;
}

// "SUCCEEDED" for JOB_STATE_SUCCEEDED.
inline std::string JobStateName(v1::JobState s) {
  std::string n = v1::JobState_Name(s);
  return n.rfind("JOB_STATE_", 0) == 0 ? n.substr(10) : n;
}

}  // namespace vsdm
