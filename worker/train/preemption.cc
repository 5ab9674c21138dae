#include "worker/train/preemption.h"

#include <semaphore.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <thread>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "common/train_protocol.h"

namespace vsdm::worker {
namespace {

constexpr char kPreemptedPayload[] = "vsdm.preempted";

// Lock-free, so touching it from the handler is async-signal-safe (as is sem_post).
std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free);
sem_t g_signalled;

void OnSigterm(int) {
  if (!g_stop.exchange(true)) sem_post(&g_signalled);
}

void Watchdog(double grace_seconds) {
  while (sem_wait(&g_signalled) != 0 && errno == EINTR) {
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(grace_seconds));
  const std::string msg = absl::StrCat(
      "vsdm-train: preempted: not stopped ", grace_seconds,
      " s after SIGTERM (no round boundary in time); exiting 75 without a new checkpoint, the previous one "
      "stays the resume point\n");
  (void)!::write(STDERR_FILENO, msg.data(), msg.size());
  std::_Exit(train_protocol::ExitCode(train_protocol::TrainExit::kPreempted));
}

}  // namespace

void InstallPreemptionHandler(double grace_seconds) {
  sem_init(&g_signalled, 0, 0);
  if (grace_seconds > 0) std::thread(Watchdog, grace_seconds).detach();
  struct sigaction sa {};
  sa.sa_handler = OnSigterm;
  sigemptyset(&sa.sa_mask);
  // Blocking calls (Gloo's socket reads, file writes) resume after the handler instead of
  // failing with EINTR: the stop happens at the round boundary, not inside a collective.
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, nullptr);
}

bool PreemptionRequested() { return g_stop.load(); }

absl::Status PreemptedError(const std::string& what) {
  absl::Status s = absl::AbortedError(absl::StrCat("preempted: ", what));
  s.SetPayload(kPreemptedPayload, absl::Cord("1"));
  return s;
}

bool IsPreempted(const absl::Status& status) {
  return status.code() == absl::StatusCode::kAborted && status.GetPayload(kPreemptedPayload).has_value();
}

}  // namespace vsdm::worker
