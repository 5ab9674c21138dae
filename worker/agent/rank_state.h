// The agent's record of the ranks it runs, kept on disk so that the next agent on this worker
// can stop what a crashed predecessor left behind (Note [The agent's record of its ranks]).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace vsdm::worker {

// Note [The agent's record of its ranks]
// Ranks run in their own process groups and die with their agent (PR_SET_PDEATHSIG), but that
// signal is tied to the forking thread and is lost across a setuid exec, so the agent also
// keeps `<work dir>/agent-<worker id>.ranks` (rewritten atomically whenever the set of its
// children changes): each child's pid, process group and start time (/proc/<pid>/stat field
// 22, clock ticks since boot), with its attempt and rank. An agent that starts with the same
// worker id and work dir SIGKILLs each recorded process group whose leader is still alive with
// the recorded start time, so a pid reused by an unrelated process is never signalled. The file
// also names the agent that wrote it (pid and start time): while that agent is alive (two agents
// sharing one id, review L6) its ranks are left alone.
//
// The coordinator learns the same thing from the other side: the new agent registers with a new
// instance id and lists none of those ranks, so their attempts fail at once and are requeued.

// Identifies one process across pid reuse.
struct ProcessIdentity {
  pid_t pid = 0;
  pid_t pgid = 0;
  uint64_t start_time = 0;  // /proc/<pid>/stat field 22
};

// Field 22 of /proc/<pid>/stat; nullopt when there is no such process (or it cannot be read).
std::optional<uint64_t> ProcessStartTime(pid_t pid);

// This process, for the record's header.
ProcessIdentity SelfIdentity();

struct RankRecord {
  ProcessIdentity process;
  std::string attempt_id;
  int rank = 0;
};

struct RankState {
  ProcessIdentity agent;  // the agent that wrote the file
  std::vector<RankRecord> ranks;
};

std::string RankStateToJson(const RankState& state);
// INVALID_ARGUMENT for text that is not such a record.
absl::StatusOr<RankState> RankStateFromJson(const std::string& text);

// `<work_dir>/agent-<worker_id>.ranks`, the worker id with every byte outside [A-Za-z0-9._-]
// replaced by '_'.
std::string RankStatePath(const std::string& work_dir, const std::string& worker_id);

// SIGKILL to the process group of each record whose leader is alive with the recorded start
// time (to that process alone when it has left its group). Records of pid <= 1 or pgid <= 1 are
// ignored (kill(-1) would reach every process). Returns the records it signalled.
std::vector<RankRecord> KillLeftoverRanks(const std::vector<RankRecord>& records);

}  // namespace vsdm::worker
