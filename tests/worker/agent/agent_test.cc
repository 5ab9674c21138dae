// The agent's logic against a fake coordinator and a fake process supervisor (no gRPC, no
// processes): what it starts, in which order it reports, what it keeps while the coordinator is
// unreachable. And the real POSIX supervisor's SIGTERM -> SIGKILL escalation, timed by a
// FakeClock, on a real child that ignores SIGTERM.
#include "worker/agent/agent.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/clock.h"
#include "common/file_util.h"
#include "common/job_spec.h"
#include "common/spawn.h"
#include "common/train_protocol.h"
#include "proto/job_spec_proto.h"
#include "worker/agent/process_supervisor.h"

namespace vsdm::worker {
namespace {
namespace fs = std::filesystem;
namespace tp = train_protocol;

class FakeCoordinatorClient : public CoordinatorClient {
 public:
  absl::StatusOr<v1::RegisterResponse> Register(const v1::RegisterRequest& r) override {
    registers.push_back(r);
    if (!reachable) return absl::UnavailableError("down");
    v1::RegisterResponse resp;
    resp.set_heartbeat_seconds(1);
    return resp;
  }
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& r) override {
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
    reports.push_back(r);
    return reachable ? absl::OkStatus() : absl::UnavailableError("down");
  }
  absl::Status Complete(const v1::CompleteRequest& r) override {
    if (!reachable) return absl::UnavailableError("down");
    completes.push_back(r);
    return absl::OkStatus();
  }
  absl::Status UploadArtifact(const v1::UploadArtifactRequest& r) override {
    if (!reachable) return absl::UnavailableError("down");
    uploads.push_back(r);
    return absl::OkStatus();
  }
  // Serves `checkpoints` (round -> bytes) in pages of `page` bytes, as ArtifactStore does.
  absl::StatusOr<v1::FetchCheckpointResponse> FetchCheckpoint(const v1::FetchCheckpointRequest& r) override {
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

  bool reachable = true;
  bool lease_lost = false;
  std::deque<v1::HeartbeatResponse> next_heartbeat;
  std::vector<v1::RegisterRequest> registers;
  std::vector<v1::HeartbeatRequest> heartbeats;
  std::vector<v1::ReportRequest> reports;
  std::vector<v1::CompleteRequest> completes;
  std::vector<v1::UploadArtifactRequest> uploads;
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
  void Stop(int64_t id, absl::Duration grace) override { stopped.push_back({id, grace}); }
  std::vector<ChildExit> Poll() override {
    std::vector<ChildExit> out(exits.begin(), exits.end());
    exits.clear();
    return out;
  }
  void Exit(int64_t id, int code) { exits.push_back({id, code, 0, "last line"}); }

  bool fail_start = false;
  int64_t next_id = 1;
  std::vector<std::pair<std::vector<std::string>, ChildOptions>> started;
  std::vector<std::pair<int64_t, absl::Duration>> stopped;
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
  void TearDown() override { fs::remove_all(work_); }

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
    client_.next_heartbeat.push_back(r);
  }
  std::string OutDir() const { return (fs::path(work_) / "jobs" / "job-1").string(); }

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
            (fs::path(OutDir()) / tp::kLogsDir / tp::RankLogName(2, 0)).string());
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
  EXPECT_EQ(processes_.stopped[0].second, absl::Seconds(7));
  // A second abort of the same attempt does not stop twice.
  client_.next_heartbeat.push_back(abort);
  agent.Step();
  EXPECT_EQ(processes_.stopped.size(), 2u);
  // Aborted ranks are not reported running, and their exits are not reported.
  EXPECT_EQ(client_.heartbeats.back().running_size(), 0);
  processes_.Exit(1, 143);
  processes_.Exit(2, 143);
  agent.Step();
  EXPECT_TRUE(client_.completes.empty());
  EXPECT_EQ(agent.running(), 0u);
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
  const fs::path logs = fs::path(OutDir()) / tp::kLogsDir;
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

TEST(PosixProcessSupervisorTest, EscalatesToSigkillWhenTheGraceHasPassedOnItsClock) {
  FakeClock clock;
  PosixProcessSupervisor sup(clock);
  const std::string log = (fs::temp_directory_path() / ("vsdm_sup_" + std::to_string(::getpid()) + ".log")).string();
  auto id = sup.Start({"/bin/sh", "-c", "trap '' TERM; echo started; while true; do sleep 0.05; done"}, LogTo(log));
  ASSERT_TRUE(id.ok()) << id.status();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  sup.Stop(*id, absl::Seconds(10));
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

}  // namespace
}  // namespace vsdm::worker
