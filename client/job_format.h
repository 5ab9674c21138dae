// How vsdmctl prints jobs, events and workers: the human tables and lines, and the JSON form
// (-o json, proto field names). Pure functions of the messages, so tests compare strings.
#pragma once

#include <string>

#include <google/protobuf/message.h>

#include "vsdm/v1/service.pb.h"

namespace vsdm::client {

// The message as indented JSON with the proto field names ("job_id"), no trailing newline.
std::string ToJson(const google::protobuf::Message& message);

// "round 3/10 [=========>          ]  30%  loss 0.1234  |A| 0.500  12 steps/s  goodput 90%  ETA 42s"
std::string ProgressBar(const v1::Progress& progress);

// "<id> <STATE>[: message]\n", plus the quality figures of a succeeded job that has them.
std::string FinalSummary(const v1::Job& job);

// `vsdmctl get`: id, name, state and attempts, then pending reason / progress / outcome lines.
std::string JobDetails(const v1::Job& job);

// `vsdmctl list`: a header and one row a job.
std::string JobTable(const v1::ListJobsResponse& jobs);

// Note [Sweeps]: the figure a group's members are compared by: `metric` when given, else the
// first of energy_distance, fd, crps_sum that a member's final metrics have ("" if none).
std::string GroupMetric(const v1::ListJobsResponse& jobs, const std::string& metric);
// Lower is better but for these (confident_fraction, accuracy, ...).
bool HigherIsBetter(const std::string& metric);
// The index of the best member that has `metric` (succeeded ones only), or -1.
int BestMember(const v1::ListJobsResponse& jobs, const std::string& metric);
// `vsdmctl list --group`: one row a member (its overrides and the metric; `*` on the best), then
// "best: <job> (<overrides>) <metric> <value>" and how many members are in which state.
std::string GroupTable(const v1::ListJobsResponse& jobs, const std::string& metric);

// `vsdmctl workers`: a header and one row a worker.
std::string WorkerTable(const v1::ListWorkersResponse& workers);

// `vsdmctl logs`: "#<seq> [<kind>] <STATE>: <message>".
std::string EventLine(const v1::JobEvent& event);

}  // namespace vsdm::client
