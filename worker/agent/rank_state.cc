#include "worker/agent/rank_state.h"

#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace vsdm::worker {
namespace {

nlohmann::json ToJson(const ProcessIdentity& p) {
  return {{"pid", p.pid}, {"pgid", p.pgid}, {"start_time", p.start_time}};
}

absl::StatusOr<ProcessIdentity> IdentityFromJson(const nlohmann::json& j) {
  if (!j.is_object() || !j.contains("pid") || !j.contains("pgid") || !j.contains("start_time") ||
      !j["pid"].is_number_integer() || !j["pgid"].is_number_integer() || !j["start_time"].is_number_unsigned())
    return absl::InvalidArgumentError("a process needs integer pid, pgid and start_time");
  ProcessIdentity p;
  p.pid = j["pid"].get<pid_t>();
  p.pgid = j["pgid"].get<pid_t>();
  p.start_time = j["start_time"].get<uint64_t>();
  return p;
}

}  // namespace

std::optional<uint64_t> ProcessStartTime(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string stat = buf.str();
  // "pid (comm) state ppid ...": comm may hold spaces and ')', so fields count from the last ')'.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  const std::vector<std::string> fields = absl::StrSplit(stat.substr(close + 1), ' ', absl::SkipEmpty());
  // fields[0] is field 3 (state): field 22 is fields[19].
  uint64_t start = 0;
  if (fields.size() < 20 || !absl::SimpleAtoi(fields[19], &start)) return std::nullopt;
  return start;
}

ProcessIdentity SelfIdentity() {
  ProcessIdentity p;
  p.pid = getpid();
  p.pgid = getpgrp();
  p.start_time = ProcessStartTime(p.pid).value_or(0);
  return p;
}

std::string RankStateToJson(const RankState& state) {
  nlohmann::json ranks = nlohmann::json::array();
  for (const RankRecord& r : state.ranks) {
    nlohmann::json j = ToJson(r.process);
    j["attempt_id"] = r.attempt_id;
    j["rank"] = r.rank;
    ranks.push_back(std::move(j));
  }
  return nlohmann::json{{"agent", ToJson(state.agent)}, {"ranks", ranks}}.dump(1) + "\n";
}

absl::StatusOr<RankState> RankStateFromJson(const std::string& text) {
  const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("agent") || !j.contains("ranks") || !j["ranks"].is_array())
    return absl::InvalidArgumentError("not an agent's rank record: want {\"agent\": {...}, \"ranks\": [...]}");
  RankState state;
  auto agent = IdentityFromJson(j["agent"]);
  if (!agent.ok()) return agent.status();
  state.agent = *agent;
  for (const auto& r : j["ranks"]) {
    auto p = IdentityFromJson(r);
    if (!p.ok()) return p.status();
    if (!r.contains("attempt_id") || !r["attempt_id"].is_string() || !r.contains("rank") ||
        !r["rank"].is_number_integer())
      return absl::InvalidArgumentError("a rank needs a string attempt_id and an integer rank");
    state.ranks.push_back({*p, r["attempt_id"].get<std::string>(), r["rank"].get<int>()});
  }
  return state;
}

std::string RankStatePath(const std::string& work_dir, const std::string& worker_id) {
  std::string name = worker_id;
  for (char& c : name)
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) c = '_';
  return (std::filesystem::path(work_dir) / absl::StrCat("agent-", name, ".ranks")).string();
}

std::vector<RankRecord> KillLeftoverRanks(const std::vector<RankRecord>& records) {
  std::vector<RankRecord> killed;
  for (const RankRecord& r : records) {
    const ProcessIdentity& p = r.process;
    if (p.pid <= 1 || p.pgid <= 1 || p.pid == getpid()) continue;
    const auto start = ProcessStartTime(p.pid);
    if (!start || *start != p.start_time) continue;  // gone, or the pid now names another process
    // The live leader holds its pid, so no other group can have taken the number meanwhile.
    const int rc = getpgid(p.pid) == p.pgid ? kill(-p.pgid, SIGKILL) : kill(p.pid, SIGKILL);
    if (rc == 0) killed.push_back(r);
  }
  return killed;
}

}  // namespace vsdm::worker
