// The agent's logic against a fake coordinator and a fake process supervisor (no gRPC, no
// processes): what it starts, in which order it reports, what it keeps while the coordinator is
// unreachable. And the real POSIX supervisor's SIGTERM -> SIGKILL escalation, timed by a
// FakeClock, on a real child that ignores SIGTERM.
#include "worker/agent/agent.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/file_util.h"
#include "common/job_spec.h"
#include "common/spawn.h"
#include "common/train_protocol.h"
#include "proto/job_spec_proto.h"
#include "worker/agent/process_supervisor.h"
#include "worker/agent/rank_state.h"

namespace vsdm::worker {
namespace {
namespace fs = std::filesystem;
namespace tp = train_protocol;

// Thread-safe: with StartHeartbeatThread, Register and Heartbeat come from the agent's heartbeat
// thread while the loop uploads and reports. Tests without that thread read the vectors
// directly; the others through the locked accessors.
class FakeCoordinatorClient : public CoordinatorClient {
 public:
  absl::StatusOr<v1::RegisterResponse> Register(const v1::RegisterRequest& r) override {
    absl::MutexLock lock(&mu);
    registers.push_back(r);
    if (!reachable) return absl::UnavailableError("down");
    v1::RegisterResponse resp;
    resp.set_heartbeat_seconds(heartbeat_seconds);
    return resp;
  }
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& r) override {
    absl::MutexLock lock(&mu);
    heartbeats.push_back(r);
    if (!reachable) return absl::UnavailableError("down");
    if (lease_lost) {
      lease_lost = false;
      return absl::NotFoundError("unknown worker");
    }
    v1::HeartbeatResponse resp;
    if (!next_heartbeat.empty()) {
      resp = next_heartbeat.front();
      next_heartbeat.pop_front();
    }
    return resp;
  }
  absl::Status Report(const v1::ReportRequest& r) override {
    absl::MutexLock lock(&mu);
    reports.push_back(r);
    return reachable ? absl::OkStatus() : absl::UnavailableError("down");
  }
  absl::Status Complete(const v1::CompleteRequest& r) override {
    absl::MutexLock lock(&mu);
    if (!reachable || completes_down) return absl::UnavailableError("down");
    completes.push_back(r);
    calls.push_back(absl::StrCat("complete ", r.rank()));
    return absl::OkStatus();
  }
  absl::Status UploadArtifact(const v1::UploadArtifactRequest& r) override {
    absl::Duration delay;
    {
      absl::MutexLock lock(&mu);
      delay = upload_delay;
    }
    absl::SleepFor(delay);  // a slow link; not under the lock, heartbeats go on meanwhile
    absl::MutexLock lock(&mu);
    if (!reachable || uploads_down) return absl::UnavailableError("down");
    uploads.push_back(r);
    calls.push_back(absl::StrCat("upload ", r.path()));
    return absl::OkStatus();
  }
  // Serves `checkpoints` (round -> bytes) in pages of `page` bytes, as ArtifactStore does.
  absl::StatusOr<v1::FetchCheckpointResponse> FetchCheckpoint(const v1::FetchCheckpointRequest& r) override {
    absl::MutexLock lock(&mu);
    fetches.push_back(r);
    if (!reachable || (fail_after_pages >= 0 && fail_after_pages-- == 0)) return absl::UnavailableError("down");
    v1::FetchCheckpointResponse resp;
    auto it = r.round() == 0 ? (checkpoints.empty() ? checkpoints.end() : std::prev(checkpoints.end()))
                             : checkpoints.find(r.round());
    if (it == checkpoints.end()) {
      if (r.round() != 0) return absl::NotFoundError("gone");
      return resp;
    }
    if (it->first <= r.after_round()) return resp;
    resp.set_round(it->first);
    resp.set_size(static_cast<int64_t>(it->second.size()));
    resp.set_offset(r.offset());
    resp.set_data(it->second.substr(static_cast<size_t>(r.offset()), page));
    return resp;
  }

  absl::Status AppendLog(const v1::AppendLogRequest& r) override {
    absl::MutexLock lock(&mu);
    if (!reachable) return absl::UnavailableError("down");
    if (!log_error.ok()) return log_error;
    log_appends.push_back(r);
    calls.push_back(absl::StrCat("log ", r.rank()));
    return absl::OkStatus();
  }
  // The bytes appended for (attempt, rank), placed at their offsets ('\0' in gaps).
  std::string LogOf(const std::string& attempt_id, int rank) {
    absl::MutexLock lock(&mu);
    std::string out;
    for (const auto& a : log_appends) {
      if (a.attempt_id() != attempt_id || a.rank() != rank) continue;
      const size_t end = static_cast<size_t>(a.offset()) + a.data().size();
      if (out.size() < end) out.resize(end, '\0');
      out.replace(static_cast<size_t>(a.offset()), a.data().size(), a.data());
    }
    return out;
  }

  void Queue(const v1::HeartbeatResponse& r) {
    absl::MutexLock lock(&mu);
    next_heartbeat.push_back(r);
  }
  std::vector<v1::HeartbeatRequest> Heartbeats() {
    absl::MutexLock lock(&mu);
    return heartbeats;
  }
  size_t Completes() {
    absl::MutexLock lock(&mu);
    return completes.size();
  }

  absl::Mutex mu;
  bool reachable = true;
  bool lease_lost = false;
  bool uploads_down = false;    // UploadArtifact alone is UNAVAILABLE
  bool completes_down = false;  // Complete alone is UNAVAILABLE
  double heartbeat_seconds = 1;
  absl::Duration upload_delay = absl::ZeroDuration();  // per UploadArtifact call
  std::deque<v1::HeartbeatResponse> next_heartbeat;
  std::vector<v1::RegisterRequest> registers;
  std::vector<v1::HeartbeatRequest> heartbeats;
  std::vector<v1::ReportRequest> reports;
  std::vector<v1::CompleteRequest> completes;
  std::vector<v1::UploadArtifactRequest> uploads;
  std::vector<v1::AppendLogRequest> log_appends;
  absl::Status log_error;  // what AppendLog answers (OK = take it)
  std::vector<std::string> calls;  // "upload PATH", "log RANK" and "complete RANK", in order
  std::map<int64_t, std::string> checkpoints;
  size_t page = 1000;
  int fail_after_pages = -1;  // >= 0: that many pages succeed, then the coordinator is gone
  std::vector<v1::FetchCheckpointRequest> fetches;
};

class FakeProcessSupervisor : public ProcessSupervisor {
 public:
  absl::StatusOr<int64_t> Start(const std::vector<std::string>& argv, const ChildOptions& options) override {
    if (fail_start) return absl::InternalError("start vsdm-train: No such file or directory");
    started.push_back({argv, options});
    return next_id++;
  }
  void Stop(int64_t id, const StopOptions& how) override {
    stopped.push_back({id, how});
    if (exit_on_stop >= 0) Exit(id, exit_on_stop);
  }
  std::vector<ChildExit> Poll() override {
    std::vector<ChildExit> out(exits.begin(), exits.end());
    exits.clear();
    return out;
  }
  void Exit(int64_t id, int code) { exits.push_back({id, code, 0, "last line"}); }

  bool fail_start = false;
  int exit_on_stop = -1;  // >= 0: a stopped child exits with this code at the next Poll
  int64_t next_id = 1;
  std::vector<std::pair<std::vector<std::string>, ChildOptions>> started;
  std::vector<std::pair<int64_t, StopOptions>> stopped;
  std::vector<ChildExit> exits;
};

ChildOptions LogTo(const std::string& path) {
  ChildOptions o;
  o.log_path = path;
  return o;
}

// Polls `sup` until one child has exited (a few seconds at most).
std::vector<ChildExit> WaitForExit(ProcessSupervisor& sup) {
  std::vector<ChildExit> exits;
  for (int i = 0; i < 500 && exits.empty(); ++i) {
    exits = sup.Poll();
    if (exits.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return exits;
}

class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    work_ = (fs::temp_directory_path() / ("vsdm_agent_test_" + std::to_string(::getpid()))).string();
    fs::remove_all(work_);
    options_.worker_id = "w1";
    options_.slots = 3;
    options_.host = "10.1.2.3";
    options_.work_dir = work_;
    options_.train_bin = "/opt/vsdm/bin/vsdm-train";
    options_.threads_per_rank = 2;
    options_.pg_timeout_seconds = 45;
    options_.kill_grace = absl::Seconds(7);
  }
  // The work dir and the files beside it that tests make (also when they fail midway).
  void TearDown() override {
    for (const char* suffix : {"", "-rank.sh", "-target", "-elsewhere"}) fs::remove_all(work_ + suffix);
  }

  v1::Assignment MakeAssignment(int rank, const std::string& attempt_id = "job-1/2") {
    v1::Assignment a;
    a.set_job_id("job-1");
    a.set_attempt_id(attempt_id);
    a.set_attempt(2);
    a.set_rank(rank);
    a.set_trainers(2);
    a.set_store_addr("10.1.2.3:29517");
    JobSpec spec;
    spec.name = "agent-test";
    spec.resources.trainers = 2;
    *a.mutable_spec() = JobSpecToProto(spec);
    return a;
  }
  void Assign(std::vector<v1::Assignment> as) {
    v1::HeartbeatResponse r;
    for (auto& a : as) *r.add_assignments() = a;
    client_.Queue(r);
  }
  std::string JobDir() const { return (fs::path(work_) / "jobs" / "job-1").string(); }
  // The out dir of attempt 2 as MakeAssignment makes it (no job uid).
  std::string OutDir() const { return (fs::path(JobDir()) / "attempt-2").string(); }

  std::string work_;
  AgentOptions options_;
  FakeCoordinatorClient client_;
  FakeProcessSupervisor processes_;
};

TEST_F(AgentTest, StartsEachAssignedRankOnceWithTheProtocolsArgvAndSpecFile) {
  Agent agent(options_, client_, processes_);
  Assign({MakeAssignment(0), MakeAssignment(2)});
  agent.Step();
  ASSERT_TRUE(agent.registered());
  ASSERT_EQ(client_.registers.size(), 1u);
  EXPECT_EQ(client_.registers[0].resources().slots(), 3);
  EXPECT_EQ(client_.registers[0].resources().host(), "10.1.2.3");
  ASSERT_EQ(processes_.started.size(), 2u);
  // What the agent passes is exactly what vsdm-train's parser reads back.
  auto parsed = tp::ParseTrainArgs(processes_.started[0].first);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const tp::TrainArgs& t = parsed->args;
  EXPECT_EQ(processes_.started[0].first[0], "/opt/vsdm/bin/vsdm-train");
  EXPECT_EQ(t.rank, 0);
  EXPECT_EQ(t.trainers, 2);
  EXPECT_EQ(t.store, "10.1.2.3:29517");
  EXPECT_EQ(t.attempt, 2);
  EXPECT_EQ(t.threads, 2);
  EXPECT_EQ(t.pg_timeout_seconds, 45);
  EXPECT_EQ(t.bind, "10.1.2.3");
  EXPECT_FALSE(t.standalone);
  EXPECT_EQ(t.out_dir, OutDir());
  EXPECT_EQ(t.spec_path, (fs::path(OutDir()) / tp::kSpecFile).string());
  EXPECT_EQ(t.job_id, "job-1");
  EXPECT_EQ(processes_.started[0].second.log_path,
            (fs::path(JobDir()) / tp::kLogsDir / tp::RankLogName(2, 0)).string());
  // The store address is one argv element: a value starting with '-' could not become a flag.
  const auto& argv = processes_.started[0].first;
  EXPECT_NE(std::find(argv.begin(), argv.end(), "--store=10.1.2.3:29517"), argv.end());
  EXPECT_EQ(std::find(argv.begin(), argv.end(), "--store"), argv.end());
  // The rank's limits are the agent's options.
  EXPECT_EQ(processes_.started[0].second.max_open_files, options_.rank_max_open_files);
  EXPECT_EQ(processes_.started[0].second.max_address_space_bytes, 0);
  // The spec file is a spec vsdm-train accepts, and it is the assigned one.
  auto spec = LoadJobSpecFile(t.spec_path);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name, "agent-test");
  // The coordinator repeats assignments until they are reported running: no second start.
  Assign({MakeAssignment(0), MakeAssignment(2)});
  agent.Step();
  EXPECT_EQ(processes_.started.size(), 2u);
  EXPECT_EQ(agent.running(), 2u);
  ASSERT_FALSE(client_.heartbeats.empty());
  EXPECT_EQ(client_.heartbeats.back().running_size(), 2);
}

TEST_F(AgentTest, ASpawnFailureIsReportedAsAFailedRankNotDropped) {
  processes_.fail_start = true;
  Agent agent(options_, client_, processes_);
  Assign({MakeAssignment(1)});
  agent.Step();
  ASSERT_EQ(client_.completes.size(), 1u);
  EXPECT_EQ(client_.completes[0].rank(), 1);
  EXPECT_EQ(client_.completes[0].exit_code(), tp::ExitCode(tp::TrainExit::kFailed));
  EXPECT_NE(client_.completes[0].message().find("No such file"), std::string::npos);
  EXPECT_EQ(agent.running(), 0u);
}

TEST_F(AgentTest, AbortStopsTheAttemptsRanksWithTheGraceAndDoesNotReportTheirExit) {
  Agent agent(options_, client_, processes_);
  Assign({MakeAssignment(0), MakeAssignment(1)});
  agent.Step();
  v1::HeartbeatResponse abort;
  abort.add_abort_attempts("job-1/2");
  client_.next_heartbeat.push_back(abort);
  agent.Step();
  ASSERT_EQ(processes_.stopped.size(), 2u);
  EXPECT_EQ(processes_.stopped[0].second.grace, absl::Seconds(7));
  // No stack dump on an abort (it held cancelled ranks past their grace); the fence has one.
  EXPECT_EQ(processes_.stopped[0].second.dump_stacks_after, absl::InfiniteDuration());
  // A second abort of the same attempt does not stop twice.
  client_.next_heartbeat.push_back(abort);
  agent.Step();
  EXPECT_EQ(processes_.stopped.size(), 2u);
  // Aborted ranks are listed while their processes live (the coordinator frees their slots
  // once they are gone, M6), and their exits are not reported.
  EXPECT_EQ(client_.heartbeats.back().running_size(), 2);
  processes_.Exit(1, 143);
  processes_.Exit(2, 143);
  agent.Step();
  agent.Step();
  EXPECT_TRUE(client_.completes.empty());
  EXPECT_EQ(agent.running(), 0u);
  EXPECT_EQ(client_.heartbeats.back().running_size(), 0);
}

// Note [Stacks of a hung rank]: an abort (the coordinator's progress deadline, a cancel) dumps the
// stacks of a rank whose log has been silent for a minute, 4 s before its SIGKILL; a rank that is
// logging stops without.
TEST_F(AgentTest, AnAbortDumpsTheStacksOfARankWhoseLogHasBeenSilentForAMinute) {
  Agent agent(options_, client_, processes_);
  Assign({MakeAssignment(0), MakeAssignment(1)});
  agent.Step();
  const fs::path logs = fs::path(JobDir()) / tp::kLogsDir;
  for (int rank : {0, 1}) std::ofstream(logs / tp::RankLogName(2, rank)) << "[trainer] round 3/10\n";
  fs::last_write_time(logs / tp::RankLogName(2, 1), fs::file_time_type::clock::now() - std::chrono::seconds(90));
  v1::HeartbeatResponse abort;
  abort.add_abort_attempts("job-1/2");
  client_.next_heartbeat.push_back(abort);
  agent.Step();
  ASSERT_EQ(processes_.stopped.size(), 2u);
  EXPECT_EQ(processes_.stopped[0].second.dump_stacks_after, absl::InfiniteDuration()) << "rank 0 is logging";
  EXPECT_EQ(processes_.stopped[1].second.dump_stacks_after, absl::Seconds(3)) << "rank 1: silent for 90 s (grace 7 s)";
}

TEST_F(AgentTest, RankZeroSucceedsOnlyAfterItsArtifactsAreUploadedAndKeepsReportsWhileUnreachable) {
  Agent agent(options_, client_, processes_);
  Assign({MakeAssignment(0)});
  agent.Step();
  ASSERT_TRUE(AtomicWriteFile((fs::path(OutDir()) / tp::kMetricsFile).string(),
                              R"({"energy_distance": 0.04, "spec": {"name": "x"}})")
                  .ok());
  ASSERT_TRUE(AtomicWriteFile((fs::path(OutDir()) / tp::kModelFile).string(), std::string(3 << 20, 'm')).ok());
  // The coordinator is away when rank 0 exits: nothing is lost, nothing is reported early.
  client_.reachable = false;
  processes_.Exit(1, 0);
  agent.Step();
  agent.Step();
  EXPECT_TRUE(client_.uploads.empty());
  EXPECT_TRUE(client_.completes.empty());
  client_.reachable = true;
  client_.lease_lost = true;  // it restarted meanwhile: the agent registers again
  agent.Step();
  agent.Step();
  ASSERT_EQ(client_.completes.size(), 1u);
  const auto& c = client_.completes[0];
  EXPECT_EQ(c.exit_code(), 0);
  EXPECT_EQ(c.attempt_id(), "job-1/2");
  EXPECT_DOUBLE_EQ(c.metrics().at("energy_distance"), 0.04);
  EXPECT_EQ(c.metrics().count("spec"), 0u);  // only numbers
  // Uploaded: metrics.json in one chunk, model.pt in 1 MiB chunks, the last one marked; none of
  // the absent artifacts.
  std::map<std::string, std::string> got;
  std::map<std::string, bool> last;
  for (const auto& u : client_.uploads) {
    EXPECT_EQ(u.offset(), static_cast<int64_t>(got[u.path()].size())) << u.path();
    got[u.path()] += u.data();
    last[u.path()] = u.last();
  }
  EXPECT_EQ(got.size(), 2u);
  EXPECT_EQ(got[tp::kModelFile].size(), 3u << 20);
  EXPECT_TRUE(last[tp::kModelFile]);
  EXPECT_TRUE(last[tp::kMetricsFile]);
  EXPECT_GE(client_.registers.size(), 2u);
}

TEST_F(AgentTest, AFailedRankIsReportedWithItsLogTailAndRankZeroWithoutMetricsFails) {
  Agent agent(options_, client_, processes_);
  Assign({MakeAssignment(0), MakeAssignment(1)});
  agent.Step();
  processes_.Exit(2, 3);  // rank 1: peer lost
  processes_.Exit(1, 0);  // rank 0: "succeeded" but wrote no metrics.json
  agent.Step();
  ASSERT_EQ(client_.completes.size(), 2u);
  std::map<int, v1::CompleteRequest> by_rank;
  for (const auto& c : client_.completes) by_rank[c.rank()] = c;
  EXPECT_EQ(by_rank[1].exit_code(), 3);
  EXPECT_NE(by_rank[1].message().find("last line"), std::string::npos);
  EXPECT_EQ(by_rank[0].exit_code(), 1);
  EXPECT_NE(by_rank[0].message().find(tp::kMetricsFile), std::string::npos);
}

TEST_F(AgentTest, ForwardsEachNewTrainerProgressRecordOnceAndIgnoresAGarbledOne) {
  Agent agent(options_, client_, processes_);
  Assign({MakeAssignment(0)});
  agent.Step();
  EXPECT_TRUE(client_.reports.empty());
  tp::TrainerProgress p;
  p.round = 3;
  p.rounds = 10;
  p.loss = 0.5;
  p.a_norm = 1.25;
  p.steps_per_second = 40;
  p.eta_seconds = 70;
  const std::string path = (fs::path(OutDir()) / tp::kProgressFile).string();
  ASSERT_TRUE(AtomicWriteFile(path, p.ToJson()).ok());
  agent.Step();
  agent.Step();  // same file: not sent again
  ASSERT_EQ(client_.reports.size(), 1u);
  const auto& pr = client_.reports[0].progress();
  EXPECT_EQ(pr.round(), 3);
  EXPECT_EQ(pr.rounds(), 10);
  EXPECT_DOUBLE_EQ(pr.loss(), 0.5);
  EXPECT_DOUBLE_EQ(pr.a_norm(), 1.25);
  EXPECT_DOUBLE_EQ(pr.steps_per_second(), 40);
  EXPECT_DOUBLE_EQ(pr.eta_seconds(), 70);
  ASSERT_TRUE(AtomicWriteFile(path, R"({"round": 4, "rounds": 10, "bogus": 1})").ok());
  agent.Step();
  EXPECT_EQ(client_.reports.size(), 1u);
  p.round = 4;
  ASSERT_TRUE(AtomicWriteFile(path, p.ToJson()).ok());
  agent.Step();
  ASSERT_EQ(client_.reports.size(), 2u);
  EXPECT_EQ(client_.reports[1].progress().round(), 4);
  EXPECT_TRUE(client_.reports[1].progress().metrics().empty());
  // A resume that refused newer checkpoints goes up as two metrics (the coordinator's event).
  p.round = 5;
  p.checkpoints_skipped = 1;
  p.resumed_from_round = 2;
  ASSERT_TRUE(AtomicWriteFile(path, p.ToJson()).ok());
  agent.Step();
  ASSERT_EQ(client_.reports.size(), 3u);
  EXPECT_EQ(client_.reports[2].progress().metrics().at("checkpoints_skipped"), 1);
  EXPECT_EQ(client_.reports[2].progress().metrics().at("resumed_from_round"), 2);
}

// M3: the coordinator's assignment names a directory, a log file and an argv element. Each bad
// field is refused by name, reported as bad input, and nothing is created or started.
TEST_F(AgentTest, RefusesAnAssignmentWhoseJobIdAttemptRankStoreOrSecretItCannotTrust) {
  struct Case {
    std::string field;
    std::function<void(v1::Assignment&)> spoil;
  };
  const std::vector<Case> cases = {
      {"job_id", [](v1::Assignment& a) { a.set_job_id("../escaped"); }},
      {"job_id", [](v1::Assignment& a) { a.set_job_id("../../../../../../tmp/vsdm-agent-escape"); }},
      {"job_id", [](v1::Assignment& a) { a.set_job_id(".."); }},
      {"job_id", [](v1::Assignment& a) { a.set_job_id(".hidden"); }},
      {"job_id", [](v1::Assignment& a) { a.set_job_id("-rf"); }},
      {"job_id", [](v1::Assignment& a) { a.set_job_id("a/b"); }},
      {"job_id", [](v1::Assignment& a) { a.set_job_id(""); }},
      {"job_id", [](v1::Assignment& a) { a.set_job_id(std::string("job\0x", 5)); }},
      {"job_id", [](v1::Assignment& a) { a.set_job_id(std::string(129, 'j')); }},
      {"attempt", [](v1::Assignment& a) { a.set_attempt(-1); }},
      {"rank", [](v1::Assignment& a) { a.set_rank(3); }},
      {"rank", [](v1::Assignment& a) { a.set_rank(-1); }},
      {"trainers", [](v1::Assignment& a) { a.set_trainers(0); }},
      {"store_addr", [](v1::Assignment& a) { a.set_store_addr("--spec=/etc/shadow"); }},
      {"store_addr", [](v1::Assignment& a) { a.set_store_addr("-h:29500"); }},
      {"store_addr", [](v1::Assignment& a) { a.set_store_addr("10.1.2.3:0"); }},
      {"store_addr", [](v1::Assignment& a) { a.set_store_addr("10.1.2.3:65536"); }},
      {"store_addr", [](v1::Assignment& a) { a.set_store_addr("10.1.2.3"); }},
      {"store_addr", [](v1::Assignment& a) { a.set_store_addr("a b:29500"); }},
      {"store_addr", [](v1::Assignment& a) { a.set_store_addr("999.1.2.3:29500"); }},
      {"store_addr", [](v1::Assignment& a) { a.set_store_addr("[not-v6]:29500"); }},
      {"rendezvous_secret", [](v1::Assignment& a) { a.set_rendezvous_secret("abc/def"); }},
      {"rendezvous_secret", [](v1::Assignment& a) { a.set_rendezvous_secret(std::string(257, 'a')); }},
      {"job_uid", [](v1::Assignment& a) { a.set_job_uid("../../escaped"); }},
      {"job_uid", [](v1::Assignment& a) { a.set_job_uid(std::string(65, 'a')); }},
      {"spec_hash", [](v1::Assignment& a) { a.set_spec_hash("--spec=/etc/shadow"); }},
  };
  Agent agent(options_, client_, processes_);
  for (size_t i = 0; i < cases.size(); ++i) {
    v1::Assignment a = MakeAssignment(1, "bad/" + std::to_string(i));
    cases[i].spoil(a);
    Assign({a});
    agent.Step();
    ASSERT_EQ(client_.completes.size(), i + 1) << cases[i].field;
    const auto& c = client_.completes.back();
    EXPECT_EQ(c.attempt_id(), "bad/" + std::to_string(i));
    EXPECT_EQ(c.exit_code(), tp::ExitCode(tp::TrainExit::kBadInput)) << cases[i].field;
    EXPECT_NE(c.message().find(cases[i].field + ":"), std::string::npos) << c.message();
  }
  EXPECT_TRUE(processes_.started.empty());
  EXPECT_EQ(agent.running(), 0u);
  EXPECT_FALSE(fs::exists(work_)) << "a refused assignment created something";
  EXPECT_FALSE(fs::exists("/tmp/vsdm-agent-escape"));
  // The shapes a real coordinator sends are accepted.
  for (const std::string store : {"127.0.0.1:1", "[::1]:29500", "node-7.cluster.local:65535"}) {
    v1::Assignment a = MakeAssignment(0, "ok/" + store);
    a.set_store_addr(store);
    a.set_rendezvous_secret("00ff00ff00ff00ff00ff00ff00ff00ff");
    Assign({a});
    agent.Step();
  }
  EXPECT_EQ(processes_.started.size(), 3u);
  EXPECT_EQ(client_.completes.size(), cases.size());
}

// H1: the secret reaches the rank through its environment; argv (which `ps` shows every local
// user) carries neither it nor a way to name it.
TEST_F(AgentTest, HandsTheRendezvousSecretToTheRankInItsEnvironmentNotItsArgv) {
  Agent agent(options_, client_, processes_);
  v1::Assignment a = MakeAssignment(0);
  a.set_rendezvous_secret("5eC2e7a1b2c3d4e5f60718293a4b5c6d");
  v1::Assignment b = MakeAssignment(1);  // an older coordinator: no secret
  Assign({a, b});
  agent.Step();
  ASSERT_EQ(processes_.started.size(), 2u);
  const auto& [argv, options] = processes_.started[0];
  for (const auto& arg : argv) EXPECT_EQ(arg.find(a.rendezvous_secret()), std::string::npos) << arg;
  ASSERT_EQ(options.env.count(tp::kRendezvousSecretEnv), 1u);
  EXPECT_EQ(options.env.at(tp::kRendezvousSecretEnv), a.rendezvous_secret());
  EXPECT_TRUE(processes_.started[1].second.env.empty());
}

// M3: a symlink planted in a shared work dir is refused, not followed: nothing is created
// where it points, and the rank is reported failed.
TEST_F(AgentTest, RefusesASymlinkPlantedForTheJobDirectory) {
  const std::string elsewhere = work_ + "-elsewhere";
  fs::remove_all(elsewhere);
  fs::create_directories(elsewhere);
  fs::create_directories(fs::path(work_) / "jobs");
  fs::create_directory_symlink(elsewhere, fs::path(work_) / "jobs" / "job-1");
  Agent agent(options_, client_, processes_);
  Assign({MakeAssignment(0)});
  agent.Step();
  ASSERT_EQ(client_.completes.size(), 1u);
  EXPECT_EQ(client_.completes[0].exit_code(), tp::ExitCode(tp::TrainExit::kFailed));
  EXPECT_NE(client_.completes[0].message().find("symlink"), std::string::npos) << client_.completes[0].message();
  EXPECT_TRUE(processes_.started.empty());
  EXPECT_TRUE(fs::is_empty(elsewhere));
  fs::remove_all(elsewhere);
}

// M3/L4 with the real supervisor: the rank's log path is a planted symlink to a file the agent
// could write. The start fails, the target is untouched, the failure is reported.
TEST_F(AgentTest, ARankLogPlantedAsASymlinkFailsTheStartAndLeavesItsTargetUntouched) {
  FakeClock clock;
  PosixProcessSupervisor real(clock);
  // A rank that lives a moment (not /bin/true, which can exit and be reaped within the Step
  // that starts it, so `running()` would race).
  const std::string rank_bin = work_ + "-rank.sh";
  ASSERT_TRUE(AtomicWriteFile(rank_bin, "#!/bin/sh\nsleep 0.3\n").ok());
  fs::permissions(rank_bin, fs::perms::owner_all);
  options_.train_bin = rank_bin;
  const std::string target = work_ + "-target";
  ASSERT_TRUE(AtomicWriteFile(target, "precious\n").ok());
  const fs::path logs = fs::path(JobDir()) / tp::kLogsDir;
  fs::create_directories(logs);
  fs::create_symlink(target, logs / tp::RankLogName(2, 0));
  Agent agent(options_, client_, real);
  Assign({MakeAssignment(0)});
  agent.Step();
  ASSERT_EQ(client_.completes.size(), 1u);
  EXPECT_EQ(client_.completes[0].exit_code(), tp::ExitCode(tp::TrainExit::kFailed));
  EXPECT_NE(client_.completes[0].message().find("symlink"), std::string::npos) << client_.completes[0].message();
  EXPECT_EQ(agent.running(), 0u);
  EXPECT_EQ(ReadFile(target).value_or(""), "precious\n");
  // Without the planted link the same rank starts, and its new log is the agent's alone (0600).
  fs::remove(logs / tp::RankLogName(2, 0));
  Assign({MakeAssignment(0, "job-1/3")});
  agent.Step();
  EXPECT_EQ(agent.running(), 1u);
  struct stat st {};
  ASSERT_EQ(::stat((logs / tp::RankLogName(2, 0)).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(WaitForExit(real).size(), 1u);
  fs::remove(target);
  fs::remove(rank_bin);
}

// The real supervisor on a real child that ignores SIGTERM: SIGKILL comes only once the grace
// has passed on the (fake) clock, however much wall time goes by.
// Note [Checkpoints through the coordinator]: no shared disk between agents.
TEST_F(AgentTest, RankZeroFetchesTheCoordinatorsNewerCheckpointBeforeItStarts) {
  std::string bytes(2500, 'c');
  bytes[1234] = 'x';
  client_.checkpoints[40] = bytes;
  client_.checkpoints[20] = "older";
  Agent agent(options_, client_, processes_);
  Assign({MakeAssignment(0), MakeAssignment(1)});
  agent.Step();
  ASSERT_EQ(processes_.started.size(), 2u);
  // Only rank 0 fetches, in three pages of one round, continuing at each page's end.
  ASSERT_EQ(client_.fetches.size(), 3u);
  EXPECT_EQ(client_.fetches[0].attempt_id(), "job-1/2");
  EXPECT_EQ(client_.fetches[0].after_round(), 0);
  EXPECT_EQ(client_.fetches[0].round(), 0);
  EXPECT_EQ(client_.fetches[1].round(), 40);
  EXPECT_EQ(client_.fetches[2].offset(), 2000);
  const std::string file = (fs::path(OutDir()) / tp::kCheckpointDir / tp::CheckpointFileName(40)).string();
  EXPECT_EQ(ReadFile(file).value_or(""), bytes);
  // What it fetched is not uploaded back.
  agent.Step();
  EXPECT_TRUE(client_.uploads.empty());
}

TEST_F(AgentTest, ALocalCheckpointAsNewAsTheCoordinatorsIsKept) {
  const fs::path dir = fs::path(OutDir()) / tp::kCheckpointDir;
  fs::create_directories(dir);
  ASSERT_TRUE(AtomicWriteFile((dir / tp::CheckpointFileName(60)).string(), "local").ok());
  client_.checkpoints[60] = "remote";
  Agent agent(options_, client_, processes_);
  Assign({MakeAssignment(0)});
  agent.Step();
  ASSERT_EQ(client_.fetches.size(), 1u);
  EXPECT_EQ(client_.fetches[0].after_round(), 60);
  EXPECT_EQ(ReadFile((dir / tp::CheckpointFileName(60)).string()).value_or(""), "local");
  EXPECT_EQ(processes_.started.size(), 1u);
}

TEST_F(AgentTest, AFetchCutOffMidwayLeavesNoCheckpointFileAndTheRankStartsAnyway) {
  client_.checkpoints[80] = std::string(3000, 'p');
  client_.fail_after_pages = 2;
  Agent agent(options_, client_, processes_);
  Assign({MakeAssignment(0)});
  agent.Step();
  EXPECT_EQ(client_.fetches.size(), 3u);
  EXPECT_FALSE(tp::NewestCheckpointFile((fs::path(OutDir()) / tp::kCheckpointDir).string()).has_value());
  EXPECT_EQ(processes_.started.size(), 1u);
}

TEST_F(AgentTest, RankZerosAgentUploadsEachNewCheckpointOnceUnderCheckpointDir) {
  Agent agent(options_, client_, processes_);
  Assign({MakeAssignment(0)});
  agent.Step();
  ASSERT_EQ(processes_.started.size(), 1u);
  const fs::path dir = fs::path(OutDir()) / tp::kCheckpointDir;
  fs::create_directories(dir);
  std::string big(2'500'000, 'b');
  ASSERT_TRUE(AtomicWriteFile((dir / tp::CheckpointFileName(10)).string(), big).ok());
  ASSERT_TRUE(AtomicWriteFile((dir / (tp::CheckpointFileName(20) + ".tmp")).string(), "half").ok());
  agent.Step();
  // 1 MiB chunks, in order, the last one marked.
  ASSERT_EQ(client_.uploads.size(), 3u);
  for (const auto& u : client_.uploads) EXPECT_EQ(u.path(), "checkpoint/" + tp::CheckpointFileName(10));
  EXPECT_EQ(client_.uploads[1].offset(), 1 << 20);
  EXPECT_TRUE(client_.uploads[2].last());
  agent.Step();
  EXPECT_EQ(client_.uploads.size(), 3u);  // not again
  client_.reachable = false;
  ASSERT_TRUE(AtomicWriteFile((dir / tp::CheckpointFileName(30)).string(), "thirty").ok());
  agent.Step();
  client_.reachable = true;
  agent.Step();  // retried once the coordinator is back
  ASSERT_EQ(client_.uploads.size(), 4u);
  EXPECT_EQ(client_.uploads[3].path(), "checkpoint/" + tp::CheckpointFileName(30));
  EXPECT_EQ(client_.uploads[3].data(), "thirty");
}

TEST_F(AgentTest, EachRankGetsItsOwnGpuFromTheAgentsListAndNoneWithoutDevices) {
  options_.devices = 2;
  options_.visible_devices = {"4", "7"};
  Agent agent(options_, client_, processes_);
  Assign({MakeAssignment(0), MakeAssignment(1)});
  agent.Step();
  ASSERT_EQ(processes_.started.size(), 2u);
  EXPECT_EQ(processes_.started[0].second.env.at("CUDA_VISIBLE_DEVICES"), "4");
  EXPECT_EQ(processes_.started[1].second.env.at("CUDA_VISIBLE_DEVICES"), "7");
  // Rank 1 exits: its GPU is the free one for the next rank.
  processes_.exits.push_back({2, 1, 0, "failed"});
  agent.Step();
  Assign({MakeAssignment(2)});
  agent.Step();
  ASSERT_EQ(processes_.started.size(), 3u);
  EXPECT_EQ(processes_.started[2].second.env.at("CUDA_VISIBLE_DEVICES"), "7");

  AgentOptions cpu = options_;
  cpu.devices = 0;
  FakeProcessSupervisor cpu_processes;
  Agent cpu_agent(cpu, client_, cpu_processes);
  Assign({MakeAssignment(1, "job-1/3")});
  cpu_agent.Step();
  ASSERT_EQ(cpu_processes.started.size(), 1u);
  EXPECT_EQ(cpu_processes.started[0].second.env.count("CUDA_VISIBLE_DEVICES"), 0u);
}

// ---- Issue 18: held ranks, heartbeats, attempt dirs, fence, predecessors, shutdown ----------

constexpr char kUidA[] = "0123456789abcdef0123456789abcdef";
constexpr char kUidB[] = "fedcba9876543210fedcba9876543210";

std::set<std::string> Listed(const google::protobuf::RepeatedPtrField<v1::RunningRank>& running) {
  std::set<std::string> out;
  for (const auto& r : running) out.insert(absl::StrCat(r.attempt_id(), "#", r.rank()));
  return out;
}

// The 100/100 hang (issue 18): rank 0 had exited and was unreported, and the agent listed
// nothing. Every rank it still holds is listed, by Heartbeat and by Register, until its exit is
// acknowledged; with this process's instance id.
TEST_F(AgentTest, EveryHeartbeatAndRegisterListsEachRankHeldUntilItsExitIsAcknowledged) {
  Agent agent(options_, client_, processes_);
  Assign({MakeAssignment(0), MakeAssignment(1)});
  agent.Step();
  ASSERT_TRUE(AtomicWriteFile((fs::path(OutDir()) / tp::kMetricsFile).string(), R"({"energy_distance": 0.1})").ok());
  ASSERT_TRUE(AtomicWriteFile((fs::path(OutDir()) / tp::kModelFile).string(), std::string(100, 'm')).ok());
  client_.uploads_down = true;    // rank 0's artifacts cannot go up yet
  client_.completes_down = true;  // nor can rank 1's exit be reported
  processes_.Exit(1, 0);
  processes_.Exit(2, 3);
  agent.Step();
  agent.Step();
  EXPECT_EQ(agent.running(), 0u);
  const std::set<std::string> both = {"job-1/2#0", "job-1/2#1"};
  EXPECT_EQ(Listed(client_.heartbeats.back().running()), both);
  client_.lease_lost = true;  // re-registers at once, listing the same
  agent.Step();
  ASSERT_EQ(client_.registers.size(), 2u);
  EXPECT_EQ(Listed(client_.registers.back().running()), both);
  // One instance id per agent: in every Register and Heartbeat, hex, another one for another agent.
  EXPECT_EQ(agent.instance_id().size(), 32u);
  EXPECT_TRUE(std::all_of(agent.instance_id().begin(), agent.instance_id().end(), ::isxdigit));
  for (const auto& r : client_.registers) EXPECT_EQ(r.instance_id(), agent.instance_id());
  for (const auto& h : client_.heartbeats) EXPECT_EQ(h.instance_id(), agent.instance_id());
  FakeProcessSupervisor other_processes;
  EXPECT_NE(Agent(options_, client_, other_processes).instance_id(), agent.instance_id());
  client_.uploads_down = false;  // uploaded; both Completes still pending: both still listed
  agent.Step();
  agent.Step();
  EXPECT_EQ(Listed(client_.heartbeats.back().running()), both);
  client_.completes_down = false;
  agent.Step();
  EXPECT_EQ(client_.completes.size(), 2u);
  agent.Step();
  EXPECT_EQ(client_.heartbeats.back().running_size(), 0);
}

// H6: heartbeats come from their own thread; a slow upload (1.2 s here, many times the 0.2 s
// heartbeat period) holds up the loop, never the lease. The old single loop sent one heartbeat
// per turn and none during an upload.
TEST_F(AgentTest, AnUploadThatOutlastsTheHeartbeatPeriodDoesNotDelayHeartbeats) {
  client_.heartbeat_seconds = 0.2;
  client_.upload_delay = absl::Milliseconds(300);
  Agent agent(options_, client_, processes_);
  agent.StartHeartbeatThread();
  for (int i = 0; i < 250 && !agent.registered(); ++i) absl::SleepFor(absl::Milliseconds(20));
  ASSERT_TRUE(agent.registered());
  Assign({MakeAssignment(0)});
  for (int i = 0; i < 250 && processes_.started.empty(); ++i) {
    agent.Step();
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_EQ(processes_.started.size(), 1u);
  ASSERT_TRUE(AtomicWriteFile((fs::path(OutDir()) / tp::kMetricsFile).string(), R"({"energy_distance": 0.1})").ok());
  ASSERT_TRUE(AtomicWriteFile((fs::path(OutDir()) / tp::kModelFile).string(), std::string(3 << 20, 'm')).ok());
  processes_.Exit(1, 0);
  const size_t before = client_.Heartbeats().size();
  const absl::Time t0 = absl::Now();
  for (int i = 0; i < 100 && client_.Completes() == 0; ++i) agent.Step();  // 4 uploads of 0.3 s
  const absl::Duration took = absl::Now() - t0;
  ASSERT_EQ(client_.Completes(), 1u);
  const std::vector<v1::HeartbeatRequest> hbs = client_.Heartbeats();
  EXPECT_GE(took, absl::Milliseconds(1200));
  EXPECT_GE(hbs.size() - before, 4u) << "heartbeats during a " << took << " upload";
  // While its artifacts were going up, rank 0 was listed.
  size_t listing = 0;
  for (size_t i = before; i < hbs.size(); ++i) listing += Listed(hbs[i].running()).count("job-1/2#0");
  EXPECT_GE(listing, 3u);
}

// H3: each attempt writes its own dir, named by attempt and job uid; the uid and spec hash go to
// the rank (it refuses checkpoints of another job); logs stay under logs/.
TEST_F(AgentTest, EachAttemptWritesItsOwnDirectoryNamedByAttemptAndJobUid) {
  Agent agent(options_, client_, processes_);
  v1::Assignment a2 = MakeAssignment(0);
  a2.set_job_uid(kUidA);
  a2.set_spec_hash("00ff00ff00ff00ff");
  v1::Assignment a3 = a2;
  a3.set_attempt_id("job-1/3");
  a3.set_attempt(3);
  Assign({a2});
  agent.Step();
  Assign({a3});
  agent.Step();
  ASSERT_EQ(processes_.started.size(), 2u);
  const std::string dir2 = (fs::path(JobDir()) / "attempt-2-0123456789ab").string();
  const std::string dir3 = (fs::path(JobDir()) / "attempt-3-0123456789ab").string();
  for (size_t i = 0; i < 2; ++i) {
    auto parsed = tp::ParseTrainArgs(processes_.started[i].first);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(parsed->args.out_dir, i == 0 ? dir2 : dir3);
    EXPECT_EQ(parsed->args.spec_path, (fs::path(i == 0 ? dir2 : dir3) / tp::kSpecFile).string());
    EXPECT_EQ(parsed->args.job_uid, kUidA);
    EXPECT_EQ(parsed->args.spec_hash, "00ff00ff00ff00ff");
    EXPECT_TRUE(fs::is_regular_file(fs::path(i == 0 ? dir2 : dir3) / tp::kSpecFile));
  }
  EXPECT_EQ(processes_.started[1].second.log_path, (fs::path(JobDir()) / tp::kLogsDir / tp::RankLogName(3, 0)).string());
  EXPECT_FALSE(fs::exists(fs::path(JobDir()) / tp::kSpecFile));  // nothing shared at the job's top
}

// H3/H4: rank 0 of a new attempt starts from the newest checkpoint of an earlier attempt of the
// same job uid when the coordinator has nothing newer; never from another uid's (a recycled job
// id), however new.
TEST_F(AgentTest, RankZeroResumesFromAnEarlierAttemptOfTheSameUidNeverFromAnotherUids) {
  auto plant = [&](const std::string& dir, int64_t round, const std::string& bytes) {
    const fs::path d = fs::path(JobDir()) / dir / tp::kCheckpointDir;
    fs::create_directories(d);
    ASSERT_TRUE(AtomicWriteFile((d / tp::CheckpointFileName(round)).string(), bytes).ok());
  };
  plant("attempt-0-0123456789ab", 10, "A10");
  plant("attempt-1-0123456789ab", 30, "A30");
  plant(std::string("attempt-1-") + std::string(kUidB).substr(0, 12), 50, "B50");  // another job that had this id
  client_.checkpoints[20] = "coordinator's 20";
  Agent agent(options_, client_, processes_);
  v1::Assignment a = MakeAssignment(0);
  a.set_job_uid(kUidA);
  Assign({a});
  agent.Step();
  ASSERT_EQ(processes_.started.size(), 1u);
  ASSERT_EQ(client_.fetches.size(), 1u);
  EXPECT_EQ(client_.fetches[0].after_round(), 30);
  const fs::path ckpt = fs::path(JobDir()) / "attempt-2-0123456789ab" / tp::kCheckpointDir;
  auto newest = tp::NewestCheckpointFile(ckpt.string());
  ASSERT_TRUE(newest.has_value());
  EXPECT_EQ(newest->first, 30);
  EXPECT_EQ(ReadFile(newest->second).value_or(""), "A30");
  EXPECT_FALSE(fs::exists(ckpt / tp::CheckpointFileName(50)));
  // A job of uid C with the same id: none of it; and the coordinator's newer one wins over a seed.
  client_.checkpoints = {{40, "coordinator's 40"}};
  v1::Assignment c = MakeAssignment(0, "job-1/5");
  c.set_attempt(5);
  c.set_job_uid("cccccccccccccccccccccccccccccccc");
  v1::Assignment a6 = MakeAssignment(0, "job-1/6");
  a6.set_attempt(6);
  a6.set_job_uid(kUidA);
  Assign({c, a6});
  agent.Step();
  const fs::path ckpt_c = fs::path(JobDir()) / "attempt-5-cccccccccccc" / tp::kCheckpointDir;
  const fs::path ckpt_a6 = fs::path(JobDir()) / "attempt-6-0123456789ab" / tp::kCheckpointDir;
  EXPECT_EQ(client_.fetches[client_.fetches.size() - 2].after_round(), 0);  // uid C has nothing here
  auto c_newest = tp::NewestCheckpointFile(ckpt_c.string());
  ASSERT_TRUE(c_newest.has_value());
  EXPECT_EQ(ReadFile(c_newest->second).value_or(""), "coordinator's 40");  // fetched, not a seed
  auto a6_newest = tp::NewestCheckpointFile(ckpt_a6.string());
  ASSERT_TRUE(a6_newest.has_value());
  EXPECT_EQ(a6_newest->first, 40);
  EXPECT_FALSE(fs::exists(ckpt_a6 / tp::CheckpointFileName(30)));
}

// H3: each start keeps the job's newest two attempt dirs (its own uid's first) and those a rank
// of this agent still uses, and removes the others.
TEST_F(AgentTest, KeepsTheNewestTwoAttemptDirsAndThoseItsRanksStillUse) {
  fs::create_directories(fs::path(JobDir()) / "attempt-0-0123456789ab" / tp::kCheckpointDir);
  fs::create_directories(fs::path(JobDir()) / "attempt-9-fedcba987654");
  Agent agent(options_, client_, processes_);
  auto assign = [&](int attempt) {
    v1::Assignment a = MakeAssignment(1, absl::StrCat("job-1/", attempt));
    a.set_attempt(attempt);
    a.set_job_uid(kUidA);
    Assign({a});
    agent.Step();
  };
  assign(1);  // child 1 keeps running
  assign(2);  // child 2 exits
  processes_.Exit(2, 1);
  agent.Step();
  assign(3);
  assign(4);
  auto present = [&](const std::string& name) { return fs::exists(fs::path(JobDir()) / name); };
  EXPECT_TRUE(present("attempt-4-0123456789ab"));
  EXPECT_TRUE(present("attempt-3-0123456789ab"));
  EXPECT_TRUE(present("attempt-1-0123456789ab")) << "in use by a running rank";
  EXPECT_FALSE(present("attempt-2-0123456789ab"));
  EXPECT_FALSE(present("attempt-0-0123456789ab"));
  EXPECT_FALSE(present("attempt-9-fedcba987654"));
  EXPECT_TRUE(present(tp::kLogsDir));
}

// H3: an agent whose coordinator has been silent past --fence-after (its lease is long expired,
// the attempts run elsewhere) stops its ranks, with their stacks if they hang; 0 = never.
TEST_F(AgentTest, StopsItsRanksOnceTheCoordinatorHasBeenSilentLongerThanTheFence) {
  FakeClock clock;
  options_.fence_after = absl::Seconds(120);
  Agent agent(options_, client_, processes_, nullptr, &clock);
  Assign({MakeAssignment(0), MakeAssignment(1)});
  agent.Step();
  ASSERT_EQ(agent.running(), 2u);
  client_.reachable = false;
  clock.Advance(absl::Seconds(100));
  agent.Step();
  clock.Advance(absl::Seconds(19));
  agent.Step();
  EXPECT_TRUE(processes_.stopped.empty()) << "stopped within the fence";
  clock.Advance(absl::Seconds(2));
  agent.Step();
  ASSERT_EQ(processes_.stopped.size(), 2u);
  EXPECT_EQ(processes_.stopped[0].second.grace, absl::Seconds(7));
  // Stacks 4 s before the SIGKILL of the 7 s grace (Note [Stacks of a hung rank]).
  EXPECT_EQ(processes_.stopped[1].second.dump_stacks_after, absl::Seconds(3));
  agent.Step();
  EXPECT_EQ(processes_.stopped.size(), 2u);  // once
  // Back, the coordinator learns what is still alive; their exits are not reported.
  client_.reachable = true;
  client_.lease_lost = true;
  agent.Step();
  EXPECT_EQ(Listed(client_.registers.back().running()), (std::set<std::string>{"job-1/2#0", "job-1/2#1"}));
  processes_.Exit(1, 143);
  processes_.Exit(2, 143);
  agent.Step();
  agent.Step();
  EXPECT_TRUE(client_.completes.empty());
  EXPECT_EQ(client_.heartbeats.back().running_size(), 0);

  AgentOptions never = options_;
  never.fence_after = absl::ZeroDuration();
  FakeProcessSupervisor never_processes;
  Agent patient(never, client_, never_processes, nullptr, &clock);
  Assign({MakeAssignment(0, "job-1/7")});
  patient.Step();
  ASSERT_EQ(never_processes.started.size(), 1u);
  client_.reachable = false;
  clock.Advance(absl::Hours(10));
  patient.Step();
  EXPECT_TRUE(never_processes.stopped.empty());
}

// Processes a test starts and must not leave behind (killed and reaped at TearDown of the test).
class AgentProcessTest : public AgentTest {
 protected:
  void TearDown() override {
    for (pid_t pid : pids_) {
      ::kill(-pid, SIGKILL);
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    AgentTest::TearDown();
  }
  // A `sleep 1000` in its own process group, as a rank is; its identity.
  ProcessIdentity Sleeper() {
    SpawnOptions o;
    o.new_process_group = true;
    auto pid = Spawn({"/bin/sleep", "1000"}, o);
    EXPECT_TRUE(pid.ok()) << pid.status();
    if (!pid.ok()) return {};
    pids_.push_back(*pid);
    return {*pid, *pid, ProcessStartTime(*pid).value_or(0)};
  }
  // The exit status of `pid` within 5 s, or nullopt.
  std::optional<int> WaitStatus(pid_t pid) {
    for (int i = 0; i < 250; ++i) {
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        pids_.erase(std::remove(pids_.begin(), pids_.end(), pid), pids_.end());
        return status;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return std::nullopt;
  }
  bool Alive(pid_t pid) {
    int status = 0;
    return ::waitpid(pid, &status, WNOHANG) == 0;
  }

  std::vector<pid_t> pids_;
};

// H3: a restarted agent SIGKILLs the process group of each rank its predecessor recorded that is
// still alive with the recorded start time, and nothing whose pid was reused (another start
// time).
TEST_F(AgentProcessTest, ARestartedAgentKillsTheRanksItsPredecessorLeftRunningAndNoOtherProcess) {
  fs::create_directories(work_);
  const ProcessIdentity left = Sleeper();
  const ProcessIdentity reused = Sleeper();
  ASSERT_NE(left.start_time, 0u);
  RankState before;
  before.agent = {0, 0, 0};  // an agent long gone
  before.ranks.push_back({left, "job-1/4", 0});
  before.ranks.push_back({{reused.pid, reused.pgid, reused.start_time + 1}, "job-1/4", 1});  // a pid since reused
  const std::string state_path = RankStatePath(work_, "w1");
  ASSERT_TRUE(AtomicWriteFile(state_path, RankStateToJson(before)).ok());
  Agent agent(options_, client_, processes_);
  agent.Step();
  const auto status = WaitStatus(left.pid);
  ASSERT_TRUE(status.has_value()) << "the predecessor's rank is still running";
  EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL);
  EXPECT_TRUE(Alive(reused.pid)) << "a process that only shares a recorded pid was killed";
  auto after = RankStateFromJson(ReadFile(state_path).value_or(""));
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_TRUE(after->ranks.empty());
  EXPECT_EQ(after->agent.pid, ::getpid());

  // The record of an agent that is still alive (two agents on one id) is left alone.
  const ProcessIdentity victim = Sleeper();
  RankState live;
  live.agent = reused;  // alive
  live.ranks.push_back({victim, "job-1/5", 0});
  ASSERT_TRUE(AtomicWriteFile(state_path, RankStateToJson(live)).ok());
  FakeProcessSupervisor other;
  Agent second(options_, client_, other);
  second.Recover();
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_TRUE(Alive(victim.pid));
}

// H3, the whole story with the real supervisor: the agent records the rank it starts (pid, group,
// start time, attempt, rank), and a successor with the same id and work dir stops it.
TEST_F(AgentProcessTest, RecordsEachRankItStartsSoThatItsSuccessorStopsIt) {
  FakeClock clock;
  PosixProcessSupervisor real(clock);
  const std::string rank_bin = work_ + "-rank.sh";
  ASSERT_TRUE(AtomicWriteFile(rank_bin, "#!/bin/sh\nexec sleep 30\n").ok());
  fs::permissions(rank_bin, fs::perms::owner_all);
  options_.train_bin = rank_bin;
  Agent agent(options_, client_, real);
  Assign({MakeAssignment(1)});
  agent.Step();
  ASSERT_EQ(agent.running(), 1u);
  auto state = RankStateFromJson(ReadFile(RankStatePath(work_, "w1")).value_or(""));
  ASSERT_TRUE(state.ok()) << state.status();
  ASSERT_EQ(state->ranks.size(), 1u);
  const RankRecord& rec = state->ranks[0];
  EXPECT_EQ(rec.attempt_id, "job-1/2");
  EXPECT_EQ(rec.rank, 1);
  ASSERT_TRUE(real.Identity(1).has_value());
  EXPECT_EQ(rec.process.pid, real.Identity(1)->pid);
  EXPECT_EQ(rec.process.pgid, rec.process.pid);
  EXPECT_EQ(rec.process.start_time, ProcessStartTime(rec.process.pid).value_or(1));
  FakeProcessSupervisor none;
  Agent successor(options_, client_, none);
  successor.Recover();
  auto exits = WaitForExit(real);
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0].signal, SIGKILL);
  fs::remove(rank_bin);
}

// SIGTERM to the agent: SIGTERM to each rank (no stack dump), rank 0's checkpoint written on
// SIGTERM goes up, then each exit is reported with its code (75: a preemption, not a failure).
TEST_F(AgentTest, ShutdownStopsEachRankUploadsRankZerosLastCheckpointAndReportsThePreemptedExits) {
  options_.kill_grace = absl::Seconds(1);
  processes_.exit_on_stop = tp::ExitCode(tp::TrainExit::kPreempted);
  Agent agent(options_, client_, processes_);
  Assign({MakeAssignment(0), MakeAssignment(1)});
  agent.Step();
  ASSERT_EQ(agent.running(), 2u);
  const fs::path dir = fs::path(OutDir()) / tp::kCheckpointDir;
  ASSERT_TRUE(AtomicWriteFile((dir / tp::CheckpointFileName(12)).string(), "preempted at 12").ok());
  agent.Shutdown();
  ASSERT_EQ(processes_.stopped.size(), 2u);
  for (const auto& [id, how] : processes_.stopped) {
    EXPECT_EQ(how.grace, absl::Seconds(1));
    EXPECT_EQ(how.dump_stacks_after, absl::InfiniteDuration());
  }
  ASSERT_EQ(client_.completes.size(), 2u);
  for (const auto& c : client_.completes) EXPECT_EQ(c.exit_code(), 75) << c.rank();
  const std::string upload = "upload checkpoint/" + tp::CheckpointFileName(12);
  const auto at = [&](const std::string& call) {
    return std::find(client_.calls.begin(), client_.calls.end(), call) - client_.calls.begin();
  };
  ASSERT_LT(at(upload), static_cast<long>(client_.calls.size())) << "the last checkpoint was not uploaded";
  EXPECT_LT(at(upload), at("complete 0"));
  EXPECT_EQ(client_.uploads.back().data(), "preempted at 12");
  EXPECT_EQ(agent.running(), 0u);
}

// A rank 0 preempted by someone else (scancel signals every process) while the agent runs on: its
// last checkpoint goes up before its exit 75 is reported.
TEST_F(AgentTest, APreemptedRankZerosLastCheckpointGoesUpBeforeItsExitIsReported) {
  Agent agent(options_, client_, processes_);
  Assign({MakeAssignment(0)});
  agent.Step();
  const fs::path dir = fs::path(OutDir()) / tp::kCheckpointDir;
  ASSERT_TRUE(AtomicWriteFile((dir / tp::CheckpointFileName(8)).string(), "at 8").ok());
  agent.Step();  // uploaded while running
  ASSERT_EQ(client_.uploads.size(), 1u);
  ASSERT_TRUE(AtomicWriteFile((dir / tp::CheckpointFileName(9)).string(), "at 9, on SIGTERM").ok());
  processes_.Exit(1, 75);
  agent.Step();
  ASSERT_EQ(client_.uploads.size(), 2u);
  EXPECT_EQ(client_.uploads[1].path(), "checkpoint/" + tp::CheckpointFileName(9));
  ASSERT_EQ(client_.completes.size(), 1u);
  EXPECT_EQ(client_.completes[0].exit_code(), 75);
  EXPECT_EQ(client_.calls.back(), "complete 0");
}

// L7: temp files of interrupted atomic writes are removed at start once an hour old; nothing else.
TEST_F(AgentTest, RemovesTempFilesOfInterruptedWritesOlderThanAnHourAtStart) {
  const fs::path ckpt = fs::path(JobDir()) / "attempt-1" / tp::kCheckpointDir;
  fs::create_directories(ckpt);
  const auto two_hours_ago = fs::file_time_type::clock::now() - std::chrono::hours(2);
  auto make = [&](const fs::path& p, bool old) {
    ASSERT_TRUE(AtomicWriteFile(p.string(), "x").ok());
    if (old) fs::last_write_time(p, two_hours_ago);
  };
  const fs::path stale = ckpt / ".tmp-ckpt-00000004.pt-77-0badf00d-0";
  const fs::path fresh = ckpt / ".tmp-ckpt-00000005.pt-77-0badf00d-1";
  const fs::path kept = ckpt / tp::CheckpointFileName(4);
  const fs::path top = fs::path(work_) / ".tmp-agent-w1.ranks-77-0badf00d-2";
  make(stale, true);
  make(fresh, false);
  make(kept, true);
  make(top, true);
  Agent agent(options_, client_, processes_);
  agent.Step();
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_FALSE(fs::exists(top));
  EXPECT_TRUE(fs::exists(fresh)) << "a write that may be in progress";
  EXPECT_TRUE(fs::exists(kept));
}

TEST(PosixProcessSupervisorTest, EscalatesToSigkillWhenTheGraceHasPassedOnItsClock) {
  FakeClock clock;
  PosixProcessSupervisor sup(clock);
  const std::string log = (fs::temp_directory_path() / ("vsdm_sup_" + std::to_string(::getpid()) + ".log")).string();
  auto id = sup.Start({"/bin/sh", "-c", "trap '' TERM; echo started; while true; do sleep 0.05; done"}, LogTo(log));
  ASSERT_TRUE(id.ok()) << id.status();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  sup.Stop(*id, StopOptions{absl::Seconds(10)});
  for (int i = 0; i < 10; ++i) {
    EXPECT_TRUE(sup.Poll().empty()) << "exited before its grace";
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  clock.Advance(absl::Seconds(11));
  std::vector<ChildExit> exits;
  for (int i = 0; i < 100 && exits.empty(); ++i) {
    exits = sup.Poll();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0].id, *id);
  EXPECT_EQ(exits[0].signal, SIGKILL);
  EXPECT_EQ(exits[0].exit_code, 128 + SIGKILL);
  EXPECT_NE(exits[0].log_tail.find("started"), std::string::npos);
  fs::remove(log);
}

TEST(PosixProcessSupervisorTest, ReportsExitCodesAndAStartFailureNamesTheBinary) {
  FakeClock clock;
  PosixProcessSupervisor sup(clock);
  auto id = sup.Start({"/bin/sh", "-c", "exit 3"}, LogTo("/dev/null"));
  ASSERT_TRUE(id.ok());
  std::vector<ChildExit> exits;
  for (int i = 0; i < 200 && exits.empty(); ++i) {
    exits = sup.Poll();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0].exit_code, 3);
  EXPECT_EQ(exits[0].signal, 0);
  auto bad = sup.Start({"/nonexistent/vsdm-train"}, LogTo("/dev/null"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("/nonexistent/vsdm-train"), std::string::npos);
}

// M3: a rank gets the allow-listed part of the agent's environment plus what it is handed; the
// agent's bearer token and other secrets never reach it.
TEST(PosixProcessSupervisorTest, AChildGetsOnlyTheAllowListedEnvironmentAndWhatItIsHanded) {
  const std::vector<std::pair<std::string, std::string>> set = {{"VSDM_TOKEN", "agent-bearer-token"},
                                                                {"AWS_SECRET_ACCESS_KEY", "aws"},
                                                                {"VSDM_RENDEZVOUS_SECRET", "stale"},
                                                                {"GITHUB_TOKEN", "gh"},
                                                                {"LD_PRELOAD", "/tmp/evil.so"},
                                                                {"VSDM_OPERATOR_NOTE", "kept"},
                                                                {"OMP_NUM_THREADS", "3"},
                                                                {"GLOO_SOCKET_IFNAME", "lo"},
                                                                {"LC_ALL", "C"},
                                                                {"XDG_CACHE_HOME", "/tmp/cache"}};
  for (const auto& [k, v] : set) ::setenv(k.c_str(), v.c_str(), 1);
  FakeClock clock;
  PosixProcessSupervisor sup(clock);
  const std::string log = (fs::temp_directory_path() / ("vsdm_env_" + std::to_string(::getpid()) + ".log")).string();
  fs::remove(log);
  ChildOptions o = LogTo(log);
  o.env[tp::kRendezvousSecretEnv] = "00ff";
  auto id = sup.Start({"/usr/bin/env"}, o);
  for (const auto& [k, v] : set) ::unsetenv(k.c_str());
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_EQ(WaitForExit(sup).size(), 1u);
  const std::string env = ReadFile(log).value_or("");
  std::set<std::string> lines;
  for (const auto& line : absl::StrSplit(env, '\n')) lines.insert(std::string(line));
  for (const char* kept : {"VSDM_OPERATOR_NOTE=kept", "OMP_NUM_THREADS=3", "GLOO_SOCKET_IFNAME=lo", "LC_ALL=C",
                           "XDG_CACHE_HOME=/tmp/cache", "VSDM_RENDEZVOUS_SECRET=00ff"})
    EXPECT_EQ(lines.count(kept), 1u) << kept << " missing from:\n" << env;
  if (::getenv("PATH") != nullptr) {
    EXPECT_EQ(lines.count(absl::StrCat("PATH=", ::getenv("PATH"))), 1u) << env;
  }
  for (const char* gone : {"VSDM_TOKEN", "agent-bearer-token", "AWS_SECRET", "GITHUB_TOKEN", "LD_PRELOAD", "stale"})
    EXPECT_EQ(env.find(gone), std::string::npos) << gone << " leaked into:\n" << env;
  fs::remove(log);
}

TEST(PosixProcessSupervisorTest, ChildEnvironmentKeepsTheParentsOrderAndLetsHandedValuesWin) {
  EXPECT_EQ(ChildEnvironment({"PATH=/bin", "SSH_AUTH_SOCK=/tmp/a", "HOME=/h", "VSDM_X=1", "NOEQUALS", "=bad"},
                             {{"VSDM_X", "2"}, {"VSDM_RENDEZVOUS_SECRET", "ab"}}),
            (std::vector<std::string>{"PATH=/bin", "HOME=/h", "VSDM_RENDEZVOUS_SECRET=ab", "VSDM_X=2"}));
  for (const char* allowed : {"PATH", "HOME", "LANG", "LC_CTYPE", "TZ", "TMPDIR", "LD_LIBRARY_PATH", "OMP_WAIT_POLICY",
                              "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "NCCL_SOCKET_IFNAME",
                              "GLOO_SOCKET_IFNAME", "TORCH_DISTRIBUTED_DEBUG", "VSDM_COORDINATOR", "XDG_CACHE_HOME"})
    EXPECT_TRUE(IsAllowedChildVariable(allowed)) << allowed;
  for (const char* denied : {"VSDM_TOKEN", "VSDM_WORKER_TOKEN", "VSDM_TLS_KEY", "VSDM_RENDEZVOUS_SECRET", "NCCL_SECRET",
                             "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "GOOGLE_APPLICATION_CREDENTIALS",
                             "LD_PRELOAD", "SSH_AUTH_SOCK", "PYTHONPATH", "http_proxy", "MYSQL_PWD", "DB_PASSWORD"})
    EXPECT_FALSE(IsAllowedChildVariable(denied)) << denied;
}

// M3/H2: no core dumps (a rank's memory holds the secret and the model), bounded descriptors and,
// when configured, bounded address space; and none of the agent's own descriptors.
TEST(PosixProcessSupervisorTest, AChildRunsWithoutCoreDumpsWithItsLimitsAndWithoutTheAgentsDescriptors) {
  const int leaked = ::open("/dev/null", O_RDONLY);  // no O_CLOEXEC: a plain spawn would pass it on
  ASSERT_GE(leaked, 3);
  FakeClock clock;
  PosixProcessSupervisor sup(clock);
  const std::string log = (fs::temp_directory_path() / ("vsdm_lim_" + std::to_string(::getpid()) + ".log")).string();
  fs::remove(log);
  ChildOptions o = LogTo(log);
  o.max_open_files = 256;
  o.max_address_space_bytes = int64_t{8} << 30;
  const std::string script = "ulimit -c; ulimit -n; ulimit -v; [ -e /proc/$$/fd/" + std::to_string(leaked) +
                             " ] && echo leaked || echo closed";
  auto id = sup.Start({"/bin/sh", "-c", script}, o);
  ::close(leaked);
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_EQ(WaitForExit(sup).size(), 1u);
  EXPECT_EQ(ReadFile(log).value_or(""), absl::StrCat("0\n256\n", (int64_t{8} << 30) / 1024, "\nclosed\n"));
  fs::remove(log);
}

// L2: a child's process group is signalled only while its leader is unreaped (a zombie holds
// the number, so no other group can have it); after the reap, never.
TEST(PosixProcessSupervisorTest, AGroupIsSignalledOnlyWhileItsLeaderIsUnreaped) {
  FakeClock clock;
  struct Call {
    pid_t target;
    int sig;
    bool leader_reaped;
  };
  std::vector<Call> calls;
  PosixSupervisorOptions o;
  o.kill = [&](pid_t target, int sig) {
    bool reaped = false;
    if (target < 0) {
      siginfo_t info{};
      reaped = ::waitid(P_PID, static_cast<id_t>(-target), &info, WEXITED | WNOHANG | WNOWAIT) != 0 && errno == ECHILD;
    }
    calls.push_back({target, sig, reaped});
    return ::kill(target, sig);
  };
  PosixProcessSupervisor sup(clock, o);
  auto quick = sup.Start({"/bin/sh", "-c", "exit 0"}, LogTo("/dev/null"));
  auto stubborn = sup.Start({"/bin/sh", "-c", "trap '' TERM; while true; do sleep 0.05; done"}, LogTo("/dev/null"));
  ASSERT_TRUE(quick.ok() && stubborn.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  sup.Stop(*stubborn, StopOptions{absl::Seconds(1)});
  clock.Advance(absl::Seconds(2));
  std::vector<ChildExit> exits;
  for (int i = 0; i < 300 && exits.size() < 2; ++i) {
    for (auto& e : sup.Poll()) exits.push_back(e);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(exits.size(), 2u);
  ASSERT_GE(calls.size(), 3u);  // SIGTERM, SIGKILL, and one SIGKILL of each group at its exit
  for (const Call& c : calls) EXPECT_FALSE(c.leader_reaped) << "kill(" << c.target << ", " << c.sig << ")";
  const size_t n = calls.size();
  sup.Stop(*quick, StopOptions{});
  sup.Poll();
  EXPECT_EQ(calls.size(), n);
}

// Note [Stacks of a hung rank]: a child still running 2 s after SIGTERM gets gdb's stacks in its
// log; the SIGKILL still waits for the end of its grace.
TEST(PosixProcessSupervisorTest, AppendsTheStacksOfAChildThatOutlivesItsSigtermToItsLogBeforeItsSigkill) {
  if (::access("/usr/bin/gdb", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/gdb";
  FakeClock clock;
  PosixProcessSupervisor sup(clock);
  const std::string log = (fs::temp_directory_path() / ("vsdm_gdb_" + std::to_string(::getpid()) + ".log")).string();
  fs::remove(log);
  const std::unique_ptr<const std::string, void (*)(const std::string*)> remove_log(
      &log, [](const std::string* p) { fs::remove(*p); });  // also when an assertion returns early
  auto id = sup.Start({"/bin/sh", "-c", "trap '' TERM; echo started; while true; do sleep 0.05; done"}, LogTo(log));
  ASSERT_TRUE(id.ok()) << id.status();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  StopOptions how;
  how.grace = absl::Seconds(10);
  how.dump_stacks_after = absl::Seconds(2);
  sup.Stop(*id, how);
  clock.Advance(absl::Seconds(1));
  EXPECT_TRUE(sup.Poll().empty());
  EXPECT_EQ(ReadFile(log).value_or("").find("its stacks"), std::string::npos) << "dumped before 2 s";
  clock.Advance(absl::Seconds(2));
  EXPECT_TRUE(sup.Poll().empty()) << "killed before its grace";
  const std::string text = ReadFile(log).value_or("");
  EXPECT_NE(text.find("is still running after SIGTERM; its stacks (gdb)"), std::string::npos) << text;
  EXPECT_NE(text.find("#0 "), std::string::npos) << text;
  clock.Advance(absl::Seconds(8));
  std::vector<ChildExit> exits = WaitForExit(sup);
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0].signal, SIGKILL);
}

// H3: a rank dies with its agent (PR_SET_PDEATHSIG), even when the agent is SIGKILLed and no
// destructor runs. The "agent" is a forked copy of this process; this process, a subreaper,
// inherits the orphan and sees how it ended.
TEST(PosixProcessSupervisorTest, AChildDiesWithTheAgentThatStartedIt) {
  ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t agent = ::fork();
  ASSERT_GE(agent, 0);
  if (agent == 0) {
    FakeClock clock;
    PosixProcessSupervisor sup(clock);
    auto id = sup.Start({"/bin/sleep", "1000"}, LogTo("/dev/null"));
    const pid_t pid = id.ok() ? sup.Identity(*id)->pid : -1;
    (void)!::write(fds[1], &pid, sizeof pid);
    ::_exit(0);  // gone without ~PosixProcessSupervisor, as after kill -9
  }
  ::close(fds[1]);
  pid_t rank = -1;
  ASSERT_EQ(::read(fds[0], &rank, sizeof rank), static_cast<ssize_t>(sizeof rank));
  ::close(fds[0]);
  ::waitpid(agent, nullptr, 0);
  ASSERT_GT(rank, 0);
  int status = 0;
  bool reaped = false;
  for (int i = 0; i < 250 && !reaped; ++i) {
    reaped = ::waitpid(rank, &status, WNOHANG) == rank;
    if (!reaped) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!reaped) {
    ::kill(rank, SIGKILL);
    ::waitpid(rank, &status, 0);
  }
  ::prctl(PR_SET_CHILD_SUBREAPER, 0);
  ASSERT_TRUE(reaped) << "the rank outlived its agent";
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

void AppendTo(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::app) << text;
}

// Note [Live rank logs]: each turn the new bytes of every rank's log go up; what an unreachable
// coordinator missed goes later; a refused rank is given up; an exiting rank's rest goes before
// its exit is reported.
TEST_F(AgentTest, ForwardsItsRanksLogsAndTheRestOfALogBeforeTheExitIsReported) {
  FakeClock clock;
  Agent agent(options_, client_, processes_, nullptr, &clock);
  Assign({MakeAssignment(0), MakeAssignment(2)});
  agent.Step();
  ASSERT_EQ(processes_.started.size(), 2u);
  const std::string log0 = processes_.started[0].second.log_path, log2 = processes_.started[1].second.log_path;
  AppendTo(log0, "round 1\n");
  AppendTo(log2, "var 1\n");
  agent.Step();
  EXPECT_EQ(client_.LogOf("job-1/2", 0), "round 1\n");
  EXPECT_EQ(client_.LogOf("job-1/2", 2), "var 1\n");
  // Unreachable: kept, and sent once the pause is over.
  AppendTo(log0, "round 2\n");
  client_.reachable = false;
  agent.Step();
  client_.reachable = true;
  agent.Step();
  EXPECT_EQ(client_.LogOf("job-1/2", 0), "round 1\n");  // paused for 5 s, not retried every turn
  clock.Advance(absl::Seconds(6));
  agent.Step();
  EXPECT_EQ(client_.LogOf("job-1/2", 0), "round 1\nround 2\n");
  // Rank 2 fails while forwarding is paused (an append just failed): its last lines are still
  // tried, and are up before its exit is reported.
  AppendTo(log2, "error: boom\n");
  AppendTo(log0, "round 3\n");
  client_.reachable = false;
  agent.Step();  // pauses forwarding for 5 s
  client_.reachable = true;
  processes_.Exit(2, 1);
  agent.Step();
  EXPECT_EQ(client_.LogOf("job-1/2", 2), "var 1\nerror: boom\n");
  EXPECT_EQ(client_.LogOf("job-1/2", 0), "round 1\nround 2\n");  // rank 0 runs on: it waits for the pause
  ASSERT_EQ(client_.completes.size(), 1u);
  EXPECT_EQ(client_.completes[0].rank(), 2);
  const auto& order = client_.calls;
  const auto log2_at = std::find(order.rbegin(), order.rend(), "log 2");
  const auto complete2_at = std::find(order.rbegin(), order.rend(), "complete 2");
  ASSERT_TRUE(log2_at != order.rend() && complete2_at != order.rend());
  EXPECT_GT(log2_at - order.rbegin(), complete2_at - order.rbegin());  // the log call came first
  // The coordinator refuses rank 0's logs (its attempt is over): no more calls for it.
  clock.Advance(absl::Seconds(6));
  client_.log_error = absl::FailedPreconditionError("attempt over");
  agent.Step();
  client_.log_error = absl::OkStatus();
  const size_t calls = client_.log_appends.size();
  AppendTo(log0, "round 4\n");
  agent.Step();
  EXPECT_EQ(client_.log_appends.size(), calls);
}

}  // namespace
}  // namespace vsdm::worker
