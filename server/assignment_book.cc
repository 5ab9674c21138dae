#include "server/assignment_book.h"

#include <algorithm>
#include <iterator>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace vsdm::server {

absl::StatusOr<PortRange> ParsePortRange(absl::string_view text) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, absl::MaxSplits('-', 1));
  PortRange r;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &r.lo) || !absl::SimpleAtoi(parts[1], &r.hi))
    return absl::InvalidArgumentError(absl::StrCat("want LO-HI (e.g. 29500-29999), got \"", text, "\""));
  if (r.lo < 1 || r.hi > 65535 || r.lo > r.hi)
    return absl::InvalidArgumentError(
        absl::StrCat("want 1 <= LO <= HI <= 65535, got ", r.lo, "-", r.hi, " (\"", text, "\")"));
  return r;
}

std::optional<int> AssignmentBook::TakePort(const std::string& attempt_id) {
  if (auto it = port_of_.find(attempt_id); it != port_of_.end()) return it->second;
  for (int i = 0; i < ports_.size(); ++i) {
    const int port = ports_.lo + (next_ - ports_.lo + i) % ports_.size();
    if (held_.count(port)) continue;
    port_of_[attempt_id] = port;
    held_.insert(port);
    next_ = port == ports_.hi ? ports_.lo : port + 1;
    return port;
  }
  return std::nullopt;
}

bool AssignmentBook::HoldPort(const std::string& attempt_id, int port) {
  if (port < ports_.lo || port > ports_.hi) return false;
  if (auto it = port_of_.find(attempt_id); it != port_of_.end()) return it->second == port;
  if (!held_.insert(port).second) return false;
  port_of_[attempt_id] = port;
  return true;
}

std::optional<int> AssignmentBook::PortOf(const std::string& attempt_id) const {
  auto it = port_of_.find(attempt_id);
  if (it == port_of_.end()) return std::nullopt;
  return it->second;
}

void AssignmentBook::Assign(const std::string& worker_id, v1::Assignment a) {
  assignments_[worker_id].push_back(std::move(a));
}

std::vector<v1::Assignment> AssignmentBook::Deliverable(const std::string& worker_id,
                                                        const std::function<bool(const v1::Assignment&)>& done) {
  auto it = assignments_.find(worker_id);
  if (it == assignments_.end()) return {};
  auto& list = it->second;
  list.erase(std::remove_if(list.begin(), list.end(), done), list.end());
  if (list.empty()) {
    assignments_.erase(it);
    return {};
  }
  return list;
}

void AssignmentBook::Abort(const std::string& worker_id, const std::string& attempt_id) {
  aborts_[worker_id].insert(attempt_id);
}

std::vector<std::string> AssignmentBook::TakeAborts(const std::string& worker_id) {
  auto it = aborts_.find(worker_id);
  if (it == aborts_.end()) return {};
  std::vector<std::string> out(it->second.begin(), it->second.end());
  aborts_.erase(it);
  return out;
}

void AssignmentBook::EndAttempt(const std::string& attempt_id) {
  for (auto it = assignments_.begin(); it != assignments_.end();) {
    auto& list = it->second;
    list.erase(
        std::remove_if(list.begin(), list.end(), [&](const v1::Assignment& a) { return a.attempt_id() == attempt_id; }),
        list.end());
    it = list.empty() ? assignments_.erase(it) : std::next(it);
  }
  if (auto it = port_of_.find(attempt_id); it != port_of_.end()) {
    held_.erase(it->second);
    port_of_.erase(it);
  }
}

}  // namespace vsdm::server
