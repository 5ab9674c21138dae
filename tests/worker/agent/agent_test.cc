// The agent's logic against a fake coordinator and a fake process supervisor (no gRPC, no
// processes): what it starts, in which order it reports, what it keeps while the coordinator is
// unreachable. And the real POSIX supervisor's SIGTERM -> SIGKILL escalation, timed by a
// FakeClock, on a real child that ignores SIGTERM.
#include "worker/agent/agent.h"

#include <signal.h>

#include <chrono>
#include <deque>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "common/clock.h"
#include "common/file_util.h"
#include "common/job_spec.h"
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

  bool reachable = true;
  bool lease_lost = false;
  std::deque<v1::HeartbeatResponse> next_heartbeat;
  std::vector<v1::RegisterRequest> registers;
  std::vector<v1::HeartbeatRequest> heartbeats;
  std::vector<v1::ReportRequest> reports;
  std::vector<v1::CompleteRequest> completes;
  std::vector<v1::UploadArtifactRequest> uploads;
};

class FakeProcessSupervisor : public ProcessSupervisor {
 public:
  absl::StatusOr<int64_t> Start(const std::vector<std::string>& argv, const std::string& log_path) override {
    if (fail_start) return absl::InternalError("start vsdm-train: No such file or directory");
    started.push_back({argv, log_path});
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
  std::vector<std::pair<std::vector<std::string>, std::string>> started;
  std::vector<std::pair<int64_t, absl::Duration>> stopped;
  std::vector<ChildExit> exits;
};

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
  EXPECT_EQ(processes_.started[0].second, (fs::path(OutDir()) / tp::kLogsDir / tp::RankLogName(2, 0)).string());
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

// The real supervisor on a real child that ignores SIGTERM: SIGKILL comes only once the grace
// has passed on the (fake) clock, however much wall time goes by.
TEST(PosixProcessSupervisorTest, EscalatesToSigkillWhenTheGraceHasPassedOnItsClock) {
  FakeClock clock;
  PosixProcessSupervisor sup(clock);
  const std::string log = (fs::temp_directory_path() / ("vsdm_sup_" + std::to_string(::getpid()) + ".log")).string();
  auto id = sup.Start({"/bin/sh", "-c", "trap '' TERM; echo started; while true; do sleep 0.05; done"}, log);
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
  auto id = sup.Start({"/bin/sh", "-c", "exit 3"}, "/dev/null");
  ASSERT_TRUE(id.ok());
  std::vector<ChildExit> exits;
  for (int i = 0; i < 200 && exits.empty(); ++i) {
    exits = sup.Poll();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0].exit_code, 3);
  EXPECT_EQ(exits[0].signal, 0);
  auto bad = sup.Start({"/nonexistent/vsdm-train"}, "/dev/null");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("/nonexistent/vsdm-train"), std::string::npos);
}

}  // namespace
}  // namespace vsdm::worker
