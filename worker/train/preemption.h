// Preemption notices (SIGTERM: scancel, a deleted pod, the agent stopping an attempt) for
// vsdm-train. Note [Preemption]: the handler only sets a flag; the ranks agree at every round
// boundary whether any of them got one ([5] of Note [Collective order], distributed_job.h), so
// one signalled rank stops them all after the same round; trainer 0 then writes that round's
// checkpoint (when it did not just write one) and every rank exits with TrainExit::kPreempted
// (75), which the coordinator requeues without counting a restart. A watchdog bounds it: a
// process that has not exited `grace` seconds after the signal (a round longer than the grace, a
// final evaluation that cannot finish in it, a rendezvous that waits for peers) exits 75 there
// and then, before the sender's SIGKILL; the previous checkpoint stays the resume point.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace vsdm::worker {

// Installs the SIGTERM handler (async-signal-safe: it sets an atomic flag and posts a
// semaphore) and starts the watchdog thread, which exits the process with 75 `grace_seconds`
// after the first SIGTERM (<= 0: never). Blocks SIGTERM in the calling thread, and so in every
// thread started after it: only the watchdog takes the signal (see the .cc). Call once, from
// main, before starting any thread.
void InstallPreemptionHandler(double grace_seconds);
// Whether this process has received SIGTERM.
bool PreemptionRequested();

// ABORTED "preempted: <what>", marked so IsPreempted recognises it: how RunRank and
// RunStandalone report a stop at a preemption notice.
absl::Status PreemptedError(const std::string& what);
bool IsPreempted(const absl::Status& status);

}  // namespace vsdm::worker
