#include "worker/train/preemption.h"

#include <pthread.h>
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

// The one thread SIGTERM is delivered to (every thread started after InstallPreemptionHandler
// blocks it), so the handler interrupts no system call of the job's own threads.
void Watchdog(double grace_seconds) {
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  pthread_sigmask(SIG_UNBLOCK, &term, nullptr);
  while (sem_wait(&g_signalled) != 0 && errno == EINTR) {
  }
  if (grace_seconds <= 0) return;
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
  struct sigaction sa {};
  sa.sa_handler = OnSigterm;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, nullptr);
  // A handler run on a thread interrupts that thread's blocking call, and SA_RESTART does not
  // restart them all: connect(), poll() and epoll_wait() fail with EINTR (the TCPStore's
  // connect did, and the rank exited 3). So this thread and every thread it starts from now on
  // (c10d, Gloo, the job's own) block SIGTERM, and the watchdog thread, which unblocks it, takes
  // it. (Threads a library started before main, such as OpenBLAS's pool, may take it too: it
  // interrupts nothing of the job's there.)
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &term, nullptr);
  std::thread(Watchdog, grace_seconds).detach();
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
