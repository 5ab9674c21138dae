#include "server/handler_pool.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace vsdm::server {

HandlerPool::HandlerPool(int threads, int max_queued) : max_queued_(static_cast<size_t>(max_queued)) {
  threads_.reserve(static_cast<size_t>(threads));
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
}

HandlerPool::~HandlerPool() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& t : threads_) t.join();
}

bool HandlerPool::Run(std::function<void()> work) {
  absl::MutexLock lock(&mu_);
  if (stopping_ || queue_.size() >= max_queued_) {
    ++refused_;
    return false;
  }
  queue_.push_back(std::move(work));
  return true;
}

void HandlerPool::Loop() {
  for (;;) {
    std::function<void()> work;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](HandlerPool* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) { return p->stopping_ || !p->queue_.empty(); },
          this));
      if (queue_.empty()) return;  // stopping, and nothing left to run
      work = std::move(queue_.front());
      queue_.pop_front();
      ++busy_;
    }
    work();
    absl::MutexLock lock(&mu_);
    --busy_;
  }
}

absl::Status HandlerPool::BusyError() const {
  return absl::ResourceExhaustedError(
      absl::StrCat("the coordinator is busy: ", queued(), " calls are waiting for a handler; retry"));
}

int HandlerPool::queued() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(queue_.size());
}

int HandlerPool::busy() const {
  absl::MutexLock lock(&mu_);
  return busy_;
}

int64_t HandlerPool::refused() const {
  absl::MutexLock lock(&mu_);
  return refused_;
}

}  // namespace vsdm::server
