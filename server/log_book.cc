#include "server/log_book.h"

#include <algorithm>
#include <utility>

namespace vsdm::server {

void LogBook::Append(const std::string& job_id, int attempt, int rank, int64_t offset, absl::string_view data) {
  absl::MutexLock lock(&mu_);
  JobLogs& job = jobs_[job_id];
  job.last_write = ++clock_;
  auto& attempts = job.attempts;
  Tail& t = attempts[attempt][rank];
  // Only the part past what is held: an agent resends after a lost answer.
  const int64_t end = t.end();
  if (offset + static_cast<int64_t>(data.size()) <= end) return;
  if (offset < end) {
    data.remove_prefix(static_cast<size_t>(end - offset));
    offset = end;
  }
  if (!t.segments.empty() && t.segments.back().end() == offset) {
    t.segments.back().data.append(data.data(), data.size());
  } else {
    t.segments.push_back({offset, std::string(data)});
  }
  t.size += static_cast<int64_t>(data.size());
  total_ += static_cast<int64_t>(data.size()) - Trim(t);
  while (static_cast<int>(attempts.size()) > options_.attempts_per_job) {
    total_ -= AttemptBytes(attempts.begin()->second);
    attempts.erase(attempts.begin());
  }
  Evict();
}

int64_t LogBook::Trim(Tail& t) const {
  int64_t dropped = 0;
  while (t.size > options_.tail_bytes && !t.segments.empty()) {
    Segment& front = t.segments.front();
    const int64_t over = t.size - options_.tail_bytes;
    if (static_cast<int64_t>(front.data.size()) <= over) {
      dropped += static_cast<int64_t>(front.data.size());
      t.size -= static_cast<int64_t>(front.data.size());
      t.segments.pop_front();
      continue;
    }
    front.data.erase(0, static_cast<size_t>(over));
    front.offset += over;
    t.size -= over;
    dropped += over;
  }
  return dropped;
}

int64_t LogBook::AttemptBytes(const std::map<int, Tail>& ranks) {
  int64_t n = 0;
  for (const auto& [rank, t] : ranks) n += t.size;
  return n;
}

void LogBook::Evict() {
  while (total_ > options_.total_bytes && !jobs_.empty()) {
    auto oldest = std::min_element(jobs_.begin(), jobs_.end(), [](const auto& a, const auto& b) {
      return a.second.last_write < b.second.last_write;
    });
    auto& attempts = oldest->second.attempts;
    if (!attempts.empty()) {
      total_ -= AttemptBytes(attempts.begin()->second);
      attempts.erase(attempts.begin());
    }
    if (attempts.empty()) jobs_.erase(oldest);
  }
}

void LogBook::Read(const std::string& job_id, int attempt, std::optional<int> rank, const std::map<int, int64_t>& after,
                   v1::GetLogsResponse* resp) const {
  absl::MutexLock lock(&mu_);
  auto job = jobs_.find(job_id);
  if (job == jobs_.end() || job->second.attempts.empty()) return;
  const auto& attempts = job->second.attempts;
  for (const auto& [n, ranks] : attempts) resp->add_attempts(n);
  auto it = attempt == 0 ? std::prev(attempts.end()) : attempts.find(attempt);
  if (it == attempts.end()) return;
  resp->set_attempt(it->first);
  int64_t budget = options_.reply_bytes;  // the rest comes with the next read
  for (const auto& [r, t] : it->second) {
    if (budget <= 0) break;
    if (rank && *rank != r) continue;
    const auto cursor_it = after.find(r);
    const int64_t cursor = cursor_it == after.end() ? 0 : cursor_it->second;
    // The first segment with bytes past the cursor.
    auto seg = std::find_if(t.segments.begin(), t.segments.end(), [&](const Segment& s) { return s.end() > cursor; });
    if (seg == t.segments.end()) continue;
    const int64_t from = std::max(cursor, seg->offset);
    const int64_t n = std::min<int64_t>({seg->end() - from, options_.chunk_bytes, budget});
    budget -= n;
    v1::LogChunk* c = resp->add_chunks();
    c->set_rank(r);
    c->set_offset(from);
    c->set_skipped(from - cursor);
    c->set_data(seg->data.substr(static_cast<size_t>(from - seg->offset), static_cast<size_t>(n)));
  }
}

int64_t LogBook::bytes() const {
  absl::MutexLock lock(&mu_);
  return total_;
}

}  // namespace vsdm::server
