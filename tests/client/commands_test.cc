// vsdmctl's commands against the generated MockJobServiceStub (requests, printed output, JSON,
// exit codes), the free store-port search, and `local up|down` with stand-in binaries (shell
// scripts) in a temp bin dir: the failure paths leave no process and no state behind.
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <grpcpp/test/mock_stream.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/call_unary.h"
#include "client/commands.h"
#include "common/train_protocol.h"
#include "client/job_format.h"
#include "client/local_cluster.h"
#include "client/port_range.h"
#include "common/file_util.h"
#include "common/spawn.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "vsdm/v1/service_mock.grpc.pb.h"

namespace vsdm::client {
namespace {

namespace fs = std::filesystem;
using ::testing::_;
using ::testing::DoAll;
using ::testing::HasSubstr;
using ::testing::InSequence;
using ::testing::Invoke;
using ::testing::Not;
using ::testing::Return;
using ::testing::SaveArg;
using ::testing::SetArgPointee;

// A fresh directory under the test temp dir, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::path(::testing::TempDir()) / "vsdm-client-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (fs::path(path_) / name).string(); }

 private:
  std::string path_;
};

std::string ReadAll(const std::string& path) {
  auto text = ReadFile(path);
  return text.ok() ? *text : "";
}

// A server-side stream of `messages` ending with `end`, as the stub's *Raw method returns it
// (the caller owns it).
template <class T>
grpc::testing::MockClientReader<T>* Stream(std::vector<T> messages, grpc::Status end = grpc::Status::OK) {
  auto* reader = new grpc::testing::MockClientReader<T>();
  auto next = std::make_shared<size_t>(0);
  EXPECT_CALL(*reader, Read(_)).WillRepeatedly([messages, next](T* m) {
    if (*next >= messages.size()) return false;
    *m = messages[(*next)++];
    return true;
  });
  EXPECT_CALL(*reader, Finish()).WillOnce(Return(end));
  return reader;
}

v1::JobEvent Event(int64_t seq, const std::string& kind, const std::string& message,
                   v1::JobState state = v1::JOB_STATE_RUNNING) {
  v1::JobEvent e;
  e.set_job_id("j-1");
  e.set_sequence(seq);
  e.set_kind(kind);
  e.set_message(message);
  e.set_state(state);
  return e;
}

v1::JobEvent ProgressEvent(int64_t seq, int64_t round) {
  v1::JobEvent e = Event(seq, "progress", "");
  e.mutable_progress()->set_round(round);
  e.mutable_progress()->set_rounds(4);
  e.mutable_progress()->set_loss(0.5);
  e.mutable_progress()->set_eta_seconds(90);
  return e;
}

v1::Job MakeJob(const std::string& id, v1::JobState state) {
  v1::Job j;
  j.set_job_id(id);
  j.set_state(state);
  j.mutable_spec()->set_name("spiral");
  j.set_attempts(1);
  return j;
}

WatchArgs WatchOf(const std::string& job_id, bool json = false) {
  WatchArgs a;
  a.job_id = job_id;
  a.json = json;
  return a;
}

LogsArgs LogsOf(const std::string& job_id) {
  LogsArgs a;
  a.job_id = job_id;
  a.events = true;
  return a;
}

// Seconds from now to the call's deadline.
double SecondsLeft(const grpc::ClientContext* ctx) {
  return std::chrono::duration<double>(ctx->deadline() - std::chrono::system_clock::now()).count();
}

class CommandsTest : public ::testing::Test {
 protected:
  // Writes a job spec YAML into the temp dir; returns its path.
  std::string SpecFile() {
    const std::string path = dir_ / "job.yaml";
    std::ofstream(path) << "name: spiral-test\ntrain:\n  rounds: 5\nresources:\n  trainers: 1\n";
    return path;
  }
  // ReportFailure into err_; its exit code.
  int Report(const absl::Status& s) { return ReportFailure(s, err_); }

  v1::MockJobServiceStub stub_;
  std::ostringstream out_, err_;
  TempDir dir_;
};

// ---- exit codes ---------------------------------------------------------------------------

TEST_F(CommandsTest, ExitCodesFollowTheRetryPredicate) {
  EXPECT_EQ(ExitCode(absl::OkStatus()), 0);
  EXPECT_EQ(ExitCode(absl::UnavailableError("x")), 3);
  EXPECT_EQ(ExitCode(absl::DeadlineExceededError("x")), 3);
  EXPECT_EQ(ExitCode(absl::InvalidArgumentError("x")), 2);
  EXPECT_EQ(ExitCode(absl::NotFoundError("x")), 2);
  EXPECT_EQ(ExitCode(absl::FailedPreconditionError("x")), 2);
  EXPECT_EQ(ExitCode(WithExitCode(absl::UnavailableError("x"), 1)), 1);
}

TEST_F(CommandsTest, ExplicitExitCodeSuppressesTheCoordinatorHint) {
  EXPECT_EQ(Report(WithExitCode(absl::UnavailableError("local up: no"), 3)), 3);
  EXPECT_EQ(err_.str(), "vsdmctl: local up: no\n");
}

TEST_F(CommandsTest, EmptyMessagePrintsNothing) {
  EXPECT_EQ(Report(WithExitCode(absl::AbortedError(""), 1)), 1);
  EXPECT_EQ(err_.str(), "");
}

TEST_F(CommandsTest, CallUnaryPrefixesWhatAndKeepsTheCode) {
  double left = 0;
  const absl::Status s = CallUnary("get j-1", absl::Seconds(7), [&](grpc::ClientContext* ctx) {
    left = SecondsLeft(ctx);
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "job j-1 not found");
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "get j-1: job j-1 not found");
  EXPECT_GT(left, 5.0);
  EXPECT_LE(left, 7.0);
}

// ---- submit -------------------------------------------------------------------------------

TEST_F(CommandsTest, SubmitSendsTheSpecWithOverridesAndRequestId) {
  v1::SubmitJobRequest sent;
  double left = 0;
  EXPECT_CALL(stub_, SubmitJob(_, _, _))
      .WillOnce(DoAll(
          Invoke([&](grpc::ClientContext* ctx, const v1::SubmitJobRequest&, v1::Job*) { left = SecondsLeft(ctx); }),
          SaveArg<1>(&sent), SetArgPointee<2>(MakeJob("j-1", v1::JOB_STATE_QUEUED)), Return(grpc::Status::OK)));
  SubmitArgs args;
  args.file = SpecFile();
  args.overrides = {"train.rounds=10", "resources.trainers=2"};
  args.request_id = "req-7";
  ASSERT_TRUE(RunSubmit(args, stub_, out_).ok());
  EXPECT_EQ(sent.spec().name(), "spiral-test");
  EXPECT_EQ(sent.spec().train().rounds(), 10);
  EXPECT_EQ(sent.spec().resources().trainers(), 2);
  EXPECT_EQ(sent.request_id(), "req-7");
  EXPECT_GT(left, 25.0);  // submit has a 30 s deadline
  EXPECT_EQ(out_.str(), "j-1 submitted (QUEUED)\n");
}

TEST_F(CommandsTest, SubmitJsonPrintsTheJob) {
  EXPECT_CALL(stub_, SubmitJob(_, _, _))
      .WillOnce(DoAll(SetArgPointee<2>(MakeJob("j-1", v1::JOB_STATE_QUEUED)), Return(grpc::Status::OK)));
  SubmitArgs args;
  args.file = SpecFile();
  args.json = true;
  ASSERT_TRUE(RunSubmit(args, stub_, out_).ok());
  const auto j = nlohmann::json::parse(out_.str());
  EXPECT_EQ(j["job_id"], "j-1");
  EXPECT_EQ(j["state"], "JOB_STATE_QUEUED");
  EXPECT_EQ(j["spec"]["name"], "spiral");
}

TEST_F(CommandsTest, SubmitRefusesABadOverrideNamingTheKeyWithoutCalling) {
  EXPECT_CALL(stub_, SubmitJob(_, _, _)).Times(0);
  SubmitArgs args;
  args.file = SpecFile();
  args.overrides = {"train.no_such_field=3"};
  const absl::Status s = RunSubmit(args, stub_, out_);
  EXPECT_EQ(Report(s), 2);
  EXPECT_THAT(err_.str(), HasSubstr("train.no_such_field"));
  EXPECT_THAT(err_.str(), HasSubstr(args.file));
}

TEST_F(CommandsTest, SubmitOfAMissingFileExits2) {
  EXPECT_CALL(stub_, SubmitJob(_, _, _)).Times(0);
  SubmitArgs args;
  args.file = dir_ / "nope.yaml";
  EXPECT_EQ(Report(RunSubmit(args, stub_, out_)), 2);
  EXPECT_THAT(err_.str(), HasSubstr("nope.yaml"));
}

TEST_F(CommandsTest, InvalidArgumentFromTheServerExits2NamingTheField) {
  EXPECT_CALL(stub_, SubmitJob(_, _, _))
      .WillOnce(Return(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "spec.train.batch_points: must be in [1, 1048576], got 0")));
  SubmitArgs args;
  args.file = SpecFile();
  EXPECT_EQ(Report(RunSubmit(args, stub_, out_)), 2);
  EXPECT_EQ(err_.str(),
            absl::StrCat("vsdmctl: submit ", args.file, ": spec.train.batch_points: must be in [1, 1048576], got 0\n"));
}

TEST_F(CommandsTest, UnavailableExits3WithTheCoordinatorHint) {
  EXPECT_CALL(stub_, GetJob(_, _, _))
      .WillOnce(Return(grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection refused")));
  EXPECT_EQ(Report(RunGet(JobArgs{"j-1"}, stub_, out_)), 3);
  EXPECT_EQ(err_.str(),
            "vsdmctl: get j-1: connection refused\n"
            "vsdmctl: is the coordinator running? (vsdmctl local up, or --coordinator)\n");
}

TEST_F(CommandsTest, DeadlineExceededExits3) {
  EXPECT_CALL(stub_, ListWorkers(_, _, _))
      .WillOnce(Return(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "deadline")));
  EXPECT_EQ(Report(RunWorkers(WorkersArgs{}, stub_, out_)), 3);
  EXPECT_THAT(err_.str(), HasSubstr("is the coordinator running?"));
}

TEST_F(CommandsTest, SubmitWaitFollowsTheJobAndExits1WhenItFails) {
  EXPECT_CALL(stub_, SubmitJob(_, _, _))
      .WillOnce(DoAll(SetArgPointee<2>(MakeJob("j-1", v1::JOB_STATE_QUEUED)), Return(grpc::Status::OK)));
  EXPECT_CALL(stub_, WatchJobRaw(_, _))
      .WillOnce(Return(Stream<v1::JobEvent>({Event(1, "failed", "rank 0 exited 1", v1::JOB_STATE_FAILED)})));
  v1::Job failed = MakeJob("j-1", v1::JOB_STATE_FAILED);
  failed.set_message("rank 0 exited 1");
  EXPECT_CALL(stub_, GetJob(_, _, _)).WillOnce(DoAll(SetArgPointee<2>(failed), Return(grpc::Status::OK)));
  SubmitArgs args;
  args.file = SpecFile();
  args.wait = true;
  EXPECT_EQ(Report(RunSubmit(args, stub_, out_)), 1);
  EXPECT_EQ(out_.str(), "j-1 submitted (QUEUED)\n[failed] rank 0 exited 1\nj-1 FAILED: rank 0 exited 1\n");
  EXPECT_EQ(err_.str(), "");
}

// ---- get, list, cancel, workers -----------------------------------------------------------

TEST_F(CommandsTest, GetPrintsTheJobWithItsProgress) {
  v1::GetJobRequest sent;
  v1::Job running = MakeJob("j-1", v1::JOB_STATE_RUNNING);
  running.mutable_progress()->set_round(2);
  running.mutable_progress()->set_rounds(4);
  running.set_message("attempt 1 running");
  EXPECT_CALL(stub_, GetJob(_, _, _))
      .WillOnce(DoAll(SaveArg<1>(&sent), SetArgPointee<2>(running), Return(grpc::Status::OK)));
  ASSERT_TRUE(RunGet(JobArgs{"j-1"}, stub_, out_).ok());
  EXPECT_EQ(sent.job_id(), "j-1");
  EXPECT_EQ(out_.str(),
            "j-1  spiral  RUNNING  attempts 1\n" + ProgressBar(running.progress()) + "\nlast: attempt 1 running\n");
}

TEST_F(CommandsTest, GetOfASucceededJobPrintsItsFigures) {
  v1::Job done = MakeJob("j-1", v1::JOB_STATE_SUCCEEDED);
  auto& m = *done.mutable_progress()->mutable_metrics();
  m["energy_distance"] = 0.0123;
  m["energy_distance_floor"] = 0.01;
  m["pmf_rmse"] = 1e-3;
  m["pmf_rmse_floor"] = 5e-4;
  m["ode_straightness"] = 0.9;
  m["wall_seconds"] = 61;
  EXPECT_CALL(stub_, GetJob(_, _, _)).WillOnce(DoAll(SetArgPointee<2>(done), Return(grpc::Status::OK)));
  ASSERT_TRUE(RunGet(JobArgs{"j-1"}, stub_, out_).ok());
  EXPECT_EQ(out_.str(),
            "j-1  spiral  SUCCEEDED  attempts 1\nj-1 SUCCEEDED\n"
            "energy distance 0.0123 (data floor 0.0100), PMF-RMSE 1.000e-03 (floor 5.000e-04), "
            "ODE straightness 0.900, 61s\n");
}

TEST_F(CommandsTest, GetJsonPrintsTheMessage) {
  EXPECT_CALL(stub_, GetJob(_, _, _))
      .WillOnce(DoAll(SetArgPointee<2>(MakeJob("j-1", v1::JOB_STATE_RUNNING)), Return(grpc::Status::OK)));
  ASSERT_TRUE(RunGet(JobArgs{"j-1", true}, stub_, out_).ok());
  const auto j = nlohmann::json::parse(out_.str());
  EXPECT_EQ(j["job_id"], "j-1");
  EXPECT_EQ(j["attempts"], 1);
}

TEST_F(CommandsTest, ListFollowsEveryPageWithTheStateFilter) {
  v1::ListJobsResponse page1, page2;
  *page1.add_jobs() = MakeJob("j-2", v1::JOB_STATE_RUNNING);
  page1.set_next_page_token("tok");
  *page2.add_jobs() = MakeJob("j-1", v1::JOB_STATE_RUNNING);
  std::vector<v1::ListJobsRequest> sent;
  auto page = [&](const v1::ListJobsResponse& p) {
    return [&sent, p](grpc::ClientContext*, const v1::ListJobsRequest& req, v1::ListJobsResponse* resp) {
      sent.push_back(req);
      *resp = p;
      return grpc::Status::OK;
    };
  };
  EXPECT_CALL(stub_, ListJobs(_, _, _)).WillOnce(page(page1)).WillOnce(page(page2));
  ASSERT_TRUE(RunList(ListArgs{"running"}, stub_, out_).ok());
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(sent[0].page_size(), 100);
  EXPECT_EQ(sent[0].page_token(), "");
  EXPECT_EQ(sent[1].page_token(), "tok");
  const std::vector<std::string> lines = absl::StrSplit(out_.str(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_THAT(lines[0], HasSubstr("JOB"));
  EXPECT_THAT(lines[1], HasSubstr("j-2"));
  EXPECT_THAT(lines[1], HasSubstr("round 0/0"));
  EXPECT_THAT(lines[2], HasSubstr("j-1"));
}

TEST_F(CommandsTest, ListJsonHasEveryPage) {
  v1::ListJobsResponse page1, page2;
  *page1.add_jobs() = MakeJob("j-2", v1::JOB_STATE_QUEUED);
  page1.set_next_page_token("tok");
  *page2.add_jobs() = MakeJob("j-1", v1::JOB_STATE_FAILED);
  EXPECT_CALL(stub_, ListJobs(_, _, _))
      .WillOnce(DoAll(SetArgPointee<2>(page1), Return(grpc::Status::OK)))
      .WillOnce(DoAll(SetArgPointee<2>(page2), Return(grpc::Status::OK)));
  ASSERT_TRUE(RunList(ListArgs{"", true}, stub_, out_).ok());
  const auto j = nlohmann::json::parse(out_.str());
  ASSERT_EQ(j["jobs"].size(), 2u);
  EXPECT_EQ(j["jobs"][1]["job_id"], "j-1");
}

TEST_F(CommandsTest, ListRefusesAnUnknownStateWithoutCalling) {
  EXPECT_CALL(stub_, ListJobs(_, _, _)).Times(0);
  EXPECT_EQ(Report(RunList(ListArgs{"sleeping"}, stub_, out_)), 2);
  EXPECT_EQ(err_.str(), "vsdmctl: --state: must be queued|running|succeeded|failed|cancelled, got sleeping\n");
}

TEST_F(CommandsTest, CancelSendsTheJobAndPrintsItsState) {
  v1::CancelJobRequest sent;
  EXPECT_CALL(stub_, CancelJob(_, _, _))
      .WillOnce(DoAll(SaveArg<1>(&sent), SetArgPointee<2>(MakeJob("j-1", v1::JOB_STATE_CANCELLED)),
                      Return(grpc::Status::OK)));
  ASSERT_TRUE(RunCancel(JobArgs{"j-1"}, stub_, out_).ok());
  EXPECT_EQ(sent.job_id(), "j-1");
  EXPECT_EQ(out_.str(), "j-1 CANCELLED\n");
}

TEST_F(CommandsTest, CancelOfAFinishedJobExits2) {
  EXPECT_CALL(stub_, CancelJob(_, _, _))
      .WillOnce(Return(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "job j-1 is SUCCEEDED")));
  EXPECT_EQ(Report(RunCancel(JobArgs{"j-1"}, stub_, out_)), 2);
  EXPECT_EQ(err_.str(), "vsdmctl: cancel j-1: job j-1 is SUCCEEDED\n");
}

TEST_F(CommandsTest, WorkersPrintsATableAndJson) {
  v1::ListWorkersResponse resp;
  auto* w = resp.add_workers();
  w->set_worker_id("local-0");
  w->set_state("alive");
  w->mutable_resources()->set_host("127.0.0.1");
  w->mutable_resources()->set_slots(2);
  w->set_free_slots(1);
  auto* r = w->add_ranks();
  r->set_attempt_id("j-1/1");
  r->set_rank(0);
  EXPECT_CALL(stub_, ListWorkers(_, _, _))
      .Times(2)
      .WillRepeatedly(DoAll(SetArgPointee<2>(resp), Return(grpc::Status::OK)));
  ASSERT_TRUE(RunWorkers(WorkersArgs{}, stub_, out_).ok());
  EXPECT_EQ(out_.str(),
            "WORKER           STATE  HOST             SLOTS  FREE  RANKS\n"
            "local-0          alive  127.0.0.1        2      1     j-1/1#0\n");
  out_.str("");
  ASSERT_TRUE(RunWorkers(WorkersArgs{true}, stub_, out_).ok());
  EXPECT_EQ(nlohmann::json::parse(out_.str())["workers"][0]["worker_id"], "local-0");
}

// ---- watch --------------------------------------------------------------------------------

TEST_F(CommandsTest, WatchPrintsEventsAndOneBarARoundThenTheOutcome) {
  v1::WatchJobRequest sent;
  EXPECT_CALL(stub_, WatchJobRaw(_, _))
      .WillOnce(DoAll(
          SaveArg<1>(&sent),
          Return(Stream<v1::JobEvent>({Event(1, "running", "attempt 1"), ProgressEvent(2, 1), ProgressEvent(3, 1),
                                       ProgressEvent(4, 2), Event(5, "succeeded", "done", v1::JOB_STATE_SUCCEEDED)}))));
  EXPECT_CALL(stub_, GetJob(_, _, _))
      .WillOnce(DoAll(SetArgPointee<2>(MakeJob("j-1", v1::JOB_STATE_SUCCEEDED)), Return(grpc::Status::OK)));
  WatchArgs args = WatchOf("j-1");
  ASSERT_TRUE(RunWatch(args, stub_, out_).ok());
  EXPECT_EQ(sent.job_id(), "j-1");
  EXPECT_EQ(sent.after_sequence(), 0);
  EXPECT_EQ(out_.str(), "[running] attempt 1\n" + ProgressBar(ProgressEvent(2, 1).progress()) + "\n" +
                            ProgressBar(ProgressEvent(4, 2).progress()) + "\n[succeeded] done\nj-1 SUCCEEDED\n");
}

TEST_F(CommandsTest, WatchOnATerminalRedrawsTheBarInPlace) {
  EXPECT_CALL(stub_, WatchJobRaw(_, _))
      .WillOnce(Return(Stream<v1::JobEvent>(
          {ProgressEvent(1, 1), ProgressEvent(2, 1), Event(3, "succeeded", "done", v1::JOB_STATE_SUCCEEDED)})));
  EXPECT_CALL(stub_, GetJob(_, _, _))
      .WillOnce(DoAll(SetArgPointee<2>(MakeJob("j-1", v1::JOB_STATE_SUCCEEDED)), Return(grpc::Status::OK)));
  WatchArgs args = WatchOf("j-1");
  args.follow.tty = true;
  ASSERT_TRUE(RunWatch(args, stub_, out_).ok());
  const std::string bar = ProgressBar(ProgressEvent(1, 1).progress());
  EXPECT_EQ(out_.str(), "\r" + bar + "\r" + bar + "\n[succeeded] done\nj-1 SUCCEEDED\n");
}

TEST_F(CommandsTest, WatchReconnectsAfterTheLastEventWhenTheCoordinatorIsUnavailable) {
  v1::WatchJobRequest first, second;
  {
    InSequence in_order;
    EXPECT_CALL(stub_, WatchJobRaw(_, _))
        .WillOnce(DoAll(
            SaveArg<1>(&first),
            Return(Stream<v1::JobEvent>({Event(1, "scheduled", "s"), Event(2, "running", "r"), ProgressEvent(3, 1)},
                                        grpc::Status(grpc::StatusCode::UNAVAILABLE, "restarting")))));
    EXPECT_CALL(stub_, WatchJobRaw(_, _))
        .WillOnce(DoAll(SaveArg<1>(&second),
                        Return(Stream<v1::JobEvent>({Event(4, "cancelled", "by user", v1::JOB_STATE_CANCELLED)}))));
  }
  EXPECT_CALL(stub_, GetJob(_, _, _))
      .WillOnce(DoAll(SetArgPointee<2>(MakeJob("j-1", v1::JOB_STATE_CANCELLED)), Return(grpc::Status::OK)));
  WatchArgs args = WatchOf("j-1");
  args.follow.reconnect_delay = absl::ZeroDuration();
  EXPECT_EQ(Report(RunWatch(args, stub_, out_)), 1);  // cancelled: not a success
  EXPECT_EQ(first.after_sequence(), 0);
  EXPECT_EQ(second.after_sequence(), 2);  // progress events are not replayed
  EXPECT_THAT(out_.str(), HasSubstr("[cancelled] by user\nj-1 CANCELLED\n"));
}

TEST_F(CommandsTest, WatchGivesUpAfterItsReconnectTries) {
  EXPECT_CALL(stub_, WatchJobRaw(_, _))
      .Times(3)
      .WillRepeatedly(Invoke([](grpc::ClientContext*, const v1::WatchJobRequest&) {
        return Stream<v1::JobEvent>({}, grpc::Status(grpc::StatusCode::UNAVAILABLE, "down"));
      }));
  EXPECT_CALL(stub_, GetJob(_, _, _)).Times(0);
  WatchArgs args = WatchOf("j-1");
  args.follow.reconnect_tries = 2;
  args.follow.reconnect_delay = absl::ZeroDuration();
  EXPECT_EQ(Report(RunWatch(args, stub_, out_)), 3);
  EXPECT_THAT(err_.str(), HasSubstr("vsdmctl: watch j-1: down\n"));
}

TEST_F(CommandsTest, WatchOfAnUnknownJobExits2AtOnce) {
  EXPECT_CALL(stub_, WatchJobRaw(_, _))
      .WillOnce(Return(Stream<v1::JobEvent>({}, grpc::Status(grpc::StatusCode::NOT_FOUND, "job j-9 not found"))));
  EXPECT_EQ(Report(RunWatch(WatchOf("j-9"), stub_, out_)), 2);
  EXPECT_EQ(err_.str(), "vsdmctl: watch j-9: job j-9 not found\n");
}

TEST_F(CommandsTest, WatchJsonPrintsEveryEventAsJson) {
  EXPECT_CALL(stub_, WatchJobRaw(_, _))
      .WillOnce(
          Return(Stream<v1::JobEvent>({ProgressEvent(1, 1), Event(2, "succeeded", "done", v1::JOB_STATE_SUCCEEDED)})));
  EXPECT_CALL(stub_, GetJob(_, _, _))
      .WillOnce(DoAll(SetArgPointee<2>(MakeJob("j-1", v1::JOB_STATE_SUCCEEDED)), Return(grpc::Status::OK)));
  ASSERT_TRUE(RunWatch(WatchOf("j-1", true), stub_, out_).ok());
  std::istringstream lines(out_.str());
  std::vector<nlohmann::json> events;
  std::string text, line;
  while (std::getline(lines, line)) {  // objects are indented over several lines
    if (line.empty()) continue;        // the printer's newline, then the line's own
    text += line + "\n";
    if (line == "}") {
      events.push_back(nlohmann::json::parse(text));
      text.clear();
    }
  }
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0]["kind"], "progress");
  EXPECT_EQ(events[1]["kind"], "succeeded");
  EXPECT_EQ(text, "");  // no human summary after the events
}

TEST_F(CommandsTest, ProgressBarShowsRoundLossAndEta) {
  v1::Progress p;
  p.set_round(3);
  p.set_rounds(10);
  p.set_loss(0.1234);
  p.set_a_norm(0.5);
  p.set_steps_per_second(12);
  p.set_goodput_ratio(0.9);
  p.set_eta_seconds(42);
  EXPECT_EQ(ProgressBar(p),
            "round 3/10 [=========>                    ]  30%  loss 0.1234  |A| 0.500  12 steps/s  "
            "goodput 90%  ETA 42s");
}

// ---- logs ---------------------------------------------------------------------------------

TEST_F(CommandsTest, LogsPrintsStoredEventsAndTheLocalClusterLogDirInUse) {
  double left = 0;
  EXPECT_CALL(stub_, WatchJobRaw(_, _)).WillOnce(Invoke([&](grpc::ClientContext* ctx, const v1::WatchJobRequest&) {
    left = SecondsLeft(ctx);
    return Stream<v1::JobEvent>(
        {Event(1, "submitted", "queued", v1::JOB_STATE_QUEUED), ProgressEvent(2, 1), Event(3, "running", "attempt 1")},
        grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "deadline"));
  }));
  LogsArgs args = LogsOf("j-1");
  args.local_state_dir = dir_ / "state";
  ASSERT_TRUE(RunLogs(args, stub_, out_).ok());
  EXPECT_LE(left, 2.0);  // the stream of a running job is cut off after the stored events
  EXPECT_EQ(out_.str(), absl::StrCat("#1 [submitted] QUEUED: queued\n#3 [running] RUNNING: attempt 1\n",
                                     "ranks' logs: <agent work dir>/jobs/j-1/logs/ (local cluster: ", dir_.path(),
                                     "/state/work/jobs/j-1/logs/)\n"));
}

TEST_F(CommandsTest, LogsDoesNotMentionALocalClusterForAnotherCoordinator) {
  EXPECT_CALL(stub_, WatchJobRaw(_, _)).WillOnce(Return(Stream<v1::JobEvent>({Event(1, "submitted", "q")})));
  ASSERT_TRUE(RunLogs(LogsOf("j-1"), stub_, out_).ok());
  EXPECT_THAT(out_.str(), HasSubstr("ranks' logs: <agent work dir>/jobs/j-1/logs/\n"));
  EXPECT_THAT(out_.str(), Not(HasSubstr("local cluster")));
}

TEST_F(CommandsTest, LogsFailsOnOtherStreamErrors) {
  EXPECT_CALL(stub_, WatchJobRaw(_, _))
      .WillOnce(Return(Stream<v1::JobEvent>({}, grpc::Status(grpc::StatusCode::UNAVAILABLE, "refused"))));
  EXPECT_EQ(Report(RunLogs(LogsOf("j-1"), stub_, out_)), 3);
  EXPECT_THAT(err_.str(), HasSubstr("vsdmctl: logs j-1: refused"));
}

// A state dir that looks like a running local cluster at `addr` (this test process is its
// "coordinator", so it is alive).
void FakeRunningCluster(const std::string& state_dir, const std::string& addr) {
  fs::create_directories(state_dir);
  std::ofstream(fs::path(state_dir) / "pids") << getpid() << "\n";
  std::ofstream(fs::path(state_dir) / "coordinator") << addr << "\n";
}

TEST_F(CommandsTest, TheLocalLogHintUsesTheGivenStateDirOnlyForItsCoordinator) {
  const std::string state = dir_ / "vsdm-home";
  FakeRunningCluster(state, "127.0.0.1:4321");
  EXPECT_EQ(LocalClusterStateDirFor("127.0.0.1:4321", state), state);
  EXPECT_EQ(LocalClusterStateDirFor("10.1.2.3:50051", state), "");
  EXPECT_EQ(LocalClusterStateDirFor("127.0.0.1:4321", dir_ / "no-cluster-here"), "");
  EXPECT_EQ(ResolveCoordinator("", nullptr, state), "127.0.0.1:4321");
  EXPECT_EQ(ResolveCoordinator("", "10.1.2.3:50051", state), "10.1.2.3:50051");
  EXPECT_EQ(ResolveCoordinator("h:1", "10.1.2.3:50051", state), "h:1");
  EXPECT_EQ(ResolveCoordinator("", "", dir_ / "no-cluster-here"), "127.0.0.1:50051");
}

TEST_F(CommandsTest, TheStateDirIsVsdmHomeElseUnderHome) {
  EXPECT_EQ(DefaultStateDir("/srv/vsdm", "/home/u"), "/srv/vsdm");
  EXPECT_EQ(DefaultStateDir("", "/home/u"), "/home/u/.vsdm/local");
  EXPECT_EQ(DefaultStateDir(nullptr, "/home/u"), "/home/u/.vsdm/local");
}

// ---- artifacts ----------------------------------------------------------------------------

// A chunk of an artifact stream; the first of a stream carries the file's size (`total`).
v1::ArtifactChunk Chunk(const std::string& data, int64_t total = 0) {
  v1::ArtifactChunk c;
  c.set_data(data);
  c.set_total_bytes(total);
  return c;
}

TEST_F(CommandsTest, ArtifactsWritesTheFilesThatExistIntoTheOutDir) {
  std::vector<std::string> asked;
  EXPECT_CALL(stub_, GetArtifactRaw(_, _))
      .Times(static_cast<int>(vsdm::train_protocol::kArtifacts.size()))
      .WillRepeatedly(Invoke([&](grpc::ClientContext*, const v1::GetArtifactRequest& req) {
        EXPECT_EQ(req.job_id(), "j-1");
        asked.push_back(req.path());
        if (req.path() == "samples.png") return Stream<v1::ArtifactChunk>({Chunk("ab", 4), Chunk("cd")});
        if (req.path() == "metrics.json") return Stream<v1::ArtifactChunk>({Chunk("{}", 2)});
        if (req.path() == "targets.npy") return Stream<v1::ArtifactChunk>({Chunk("", 0)});  // empty, and whole
        return Stream<v1::ArtifactChunk>({}, grpc::Status(grpc::StatusCode::NOT_FOUND, "no such artifact"));
      }));
  const std::string out_dir = dir_ / "out/nested";
  ASSERT_TRUE(RunArtifacts(ArtifactsArgs{"j-1", out_dir}, stub_, out_).ok());
  EXPECT_THAT(asked, ::testing::ElementsAre("metrics.json", "samples.npy", "samples.png", "model.pt", "forecasts.npy",
                                            "targets.npy", "contexts.npy", "forecast.png"));
  EXPECT_EQ(ReadAll(out_dir + "/samples.png"), "abcd");
  EXPECT_EQ(ReadAll(out_dir + "/metrics.json"), "{}");
  EXPECT_EQ(ReadAll(out_dir + "/targets.npy"), "");
  EXPECT_TRUE(fs::exists(out_dir + "/targets.npy"));
  EXPECT_FALSE(fs::exists(out_dir + "/model.pt"));
  EXPECT_EQ(out_.str(), absl::StrCat(out_dir, "/metrics.json  (2 bytes)\n", out_dir, "/samples.png  (4 bytes)\n",
                                     out_dir, "/targets.npy  (0 bytes)\n"));
  // Only the three files: no temp file left, nothing outside the out dir.
  EXPECT_EQ(std::distance(fs::directory_iterator(out_dir), fs::directory_iterator()), 3);
}

// Review H5: a stream that ended early (a file that vanished or failed to read on the server,
// which the old coordinator ended with OK) used to be saved, short, as a success.
TEST_F(CommandsTest, ArtifactsFailsOnAShortStreamAndLeavesNoFileUnderItsName) {
  const std::string out_dir = dir_ / "out";
  fs::create_directories(out_dir);
  std::ofstream(out_dir + "/samples.npy") << "previous";
  EXPECT_CALL(stub_, GetArtifactRaw(_, _))
      .WillRepeatedly(Invoke([&](grpc::ClientContext*, const v1::GetArtifactRequest& req) {
        if (req.path() == "metrics.json") return Stream<v1::ArtifactChunk>({Chunk("{}", 2)});
        if (req.path() == "samples.npy")
          return Stream<v1::ArtifactChunk>({Chunk("abc", 10), Chunk("de")});  // 5 of 10 bytes, then OK
        return Stream<v1::ArtifactChunk>({}, grpc::Status(grpc::StatusCode::NOT_FOUND, "no such artifact"));
      }));
  EXPECT_EQ(Report(RunArtifacts(ArtifactsArgs{"j-1", out_dir}, stub_, out_)), 2);
  EXPECT_EQ(err_.str(), absl::StrCat("vsdmctl: artifact samples.npy: received 5 of 10 bytes; ", out_dir,
                                     "/samples.npy not written\n"));
  EXPECT_EQ(ReadAll(out_dir + "/samples.npy"), "previous");  // untouched
  EXPECT_EQ(ReadAll(out_dir + "/metrics.json"), "{}");
  EXPECT_EQ(std::distance(fs::directory_iterator(out_dir), fs::directory_iterator()), 2);  // no temp file
}

// The coordinator serves a job's result only once it has succeeded (FAILED_PRECONDITION before):
// exit 1 with its message, and nothing written.
TEST_F(CommandsTest, ArtifactsOfAJobThatHasNotSucceededExitOneWithTheCoordinatorsReason) {
  const std::string out_dir = dir_ / "out";
  EXPECT_CALL(stub_, GetArtifactRaw(_, _))
      .WillOnce(Return(Stream<v1::ArtifactChunk>(
          {}, grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                           "j-1 is RUNNING: its artifacts are served once it has succeeded"))));
  EXPECT_EQ(Report(RunArtifacts(ArtifactsArgs{"j-1", out_dir}, stub_, out_)), 1);
  EXPECT_THAT(err_.str(), HasSubstr("j-1 is RUNNING: its artifacts are served once it has succeeded"));
  EXPECT_EQ(std::distance(fs::directory_iterator(out_dir), fs::directory_iterator()), 0);
}

TEST_F(CommandsTest, ArtifactsFailsOnAStreamWithoutASizeOrOneThatBreaksOff) {
  const std::string out_dir = dir_ / "out";
  EXPECT_CALL(stub_, GetArtifactRaw(_, _))
      .WillRepeatedly(Invoke([](grpc::ClientContext*, const v1::GetArtifactRequest&) {
        return Stream<v1::ArtifactChunk>({}, grpc::Status(grpc::StatusCode::NOT_FOUND, "no such artifact"));
      }));
  // What the old coordinator sent for a file gone between its check and its open.
  EXPECT_CALL(stub_, GetArtifactRaw(_, _))
      .WillOnce(Return(Stream<v1::ArtifactChunk>({Chunk("", -1)})))
      .RetiresOnSaturation();
  EXPECT_EQ(Report(RunArtifacts(ArtifactsArgs{"j-1", out_dir}, stub_, out_)), 2);
  EXPECT_THAT(err_.str(), HasSubstr("artifact metrics.json: received 0 of an unknown number of bytes"));
  // An error after some chunks: the error, and no file.
  EXPECT_CALL(stub_, GetArtifactRaw(_, _))
      .WillOnce(Return(Stream<v1::ArtifactChunk>({Chunk("{\"lo", 12)},
                                                 grpc::Status(grpc::StatusCode::INTERNAL, "j-1/metrics.json ended"))))
      .RetiresOnSaturation();
  EXPECT_EQ(Report(RunArtifacts(ArtifactsArgs{"j-1", out_dir}, stub_, out_)), 2);
  EXPECT_THAT(err_.str(), HasSubstr("artifact metrics.json: j-1/metrics.json ended"));
  EXPECT_EQ(std::distance(fs::directory_iterator(out_dir), fs::directory_iterator()), 0);
}

TEST_F(CommandsTest, ArtifactsReportsAFailedWriteAndLeavesNoFile) {
  // A real write error without root: RLIMIT_FSIZE makes writes past 4 bytes fail with EFBIG.
  const std::string out_dir = dir_ / "out";
  EXPECT_CALL(stub_, GetArtifactRaw(_, _)).WillOnce(Return(Stream<v1::ArtifactChunk>({Chunk("{\"loss\": 1}", 11)})));
  struct rlimit old_limit;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  struct rlimit small = old_limit;
  small.rlim_cur = 4;
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  const absl::Status s = RunArtifacts(ArtifactsArgs{"j-1", out_dir}, stub_, out_);
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  ::signal(SIGXFSZ, old_handler);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("write " + out_dir + "/.metrics.json.part-")) << s;
  EXPECT_EQ(std::distance(fs::directory_iterator(out_dir), fs::directory_iterator()), 0);
}

TEST_F(CommandsTest, ArtifactsOfAJobWithNoneExits1) {
  EXPECT_CALL(stub_, GetArtifactRaw(_, _))
      .Times(static_cast<int>(vsdm::train_protocol::kArtifacts.size()))
      .WillRepeatedly(Invoke([](grpc::ClientContext*, const v1::GetArtifactRequest&) {
        return Stream<v1::ArtifactChunk>({}, grpc::Status(grpc::StatusCode::NOT_FOUND, "no"));
      }));
  EXPECT_EQ(Report(RunArtifacts(ArtifactsArgs{"j-1", dir_ / "out"}, stub_, out_)), 1);
  EXPECT_EQ(err_.str(), "vsdmctl: j-1 has no artifacts (yet)\n");
}

TEST_F(CommandsTest, ArtifactsStopsAtAnErrorNamingTheFile) {
  EXPECT_CALL(stub_, GetArtifactRaw(_, _))
      .WillOnce(Return(
          Stream<v1::ArtifactChunk>({}, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                                     "path: must be a relative path inside the job's artifacts"))));
  EXPECT_EQ(Report(RunArtifacts(ArtifactsArgs{"j-1", dir_ / "out"}, stub_, out_)), 2);
  EXPECT_EQ(err_.str(), "vsdmctl: artifact metrics.json: path: must be a relative path inside the job's artifacts\n");
}

// ---- free store ports ---------------------------------------------------------------------

// A socket listening on 127.0.0.1 at a port the kernel picked; the port.
int ListenOnSomePort(int* fd) {
  *fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  EXPECT_EQ(bind(*fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_EQ(listen(*fd, 1), 0);
  socklen_t len = sizeof(addr);
  getsockname(*fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

TEST(PortRangeTest, APortInUseIsNotFree) {
  int fd = -1;
  const int port = ListenOnSomePort(&fd);
  EXPECT_FALSE(PortsAreFree(port, 1));
  EXPECT_FALSE(PortsAreFree(port - 3, 4));  // the last of the four is taken
  close(fd);
}

TEST(PortRangeTest, ChoosesAFreeBlockInsideTheBounds) {
  std::mt19937 rng(7);
  for (int i = 0; i < 5; ++i) {
    auto r = ChooseFreePortRange(PortRangeSearch{}, rng);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->hi - r->lo + 1, 64);
    EXPECT_GE(r->lo, 20000);
    EXPECT_LT(r->hi, 40000);
  }
}

TEST(PortRangeTest, GivesUpWhenEveryCandidateIsTaken) {
  int fd = -1;
  const int port = ListenOnSomePort(&fd);
  std::mt19937 rng(1);
  PortRangeSearch s;
  s.count = 1;
  s.min_port = port;
  s.max_port = port + 1;  // the only candidate is the port in use
  s.tries = 3;
  EXPECT_EQ(ChooseFreePortRange(s, rng).status().code(), absl::StatusCode::kUnavailable);
  close(fd);
  s.max_port = s.min_port;
  EXPECT_EQ(ChooseFreePortRange(s, rng).status().code(), absl::StatusCode::kInvalidArgument);
}

// ---- local up / down with stand-in binaries -----------------------------------------------

// True while `pid` exists and is not a zombie.
bool ProcessLives(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string pid_field, comm, state;
  if (!(stat >> pid_field >> comm >> state)) return false;
  return state != "Z";
}

pid_t PidIn(const std::string& path) {
  pid_t pid = 0;
  std::ifstream(path) >> pid;
  return pid;
}

void WriteScript(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
  fs::permissions(path, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec);
}

// A JobService that answers ListWorkers with `workers` agents, on a loopback port.
class FakeCoordinatorService : public v1::JobService::Service {
 public:
  explicit FakeCoordinatorService(int workers) : workers_(workers) {}
  grpc::Status ListWorkers(grpc::ServerContext*, const v1::ListWorkersRequest*,
                           v1::ListWorkersResponse* resp) override {
    for (int i = 0; i < workers_; ++i) resp->add_workers()->set_worker_id(absl::StrCat("local-", i));
    return grpc::Status::OK;
  }

 private:
  int workers_;
};

// Stand-in binaries: the coordinator writes its pid, args and the port file `grpc_port` (a real
// gRPC port the test serves, or a closed one), then sleeps; the agent does as `agent_body` says.
class LocalClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(dir_ / "bin");
    options_.state_dir = dir_ / "state";
    options_.bin_dir = dir_ / "bin";
    options_.workers = 2;
    options_.start_timeout = absl::Seconds(20);
    options_.register_timeout = absl::Seconds(20);
    WriteScript(dir_ / "bin/vsdm-train", "#!/bin/sh\nexit 0\n");
  }
  void TearDown() override {
    for (pid_t p : StandInPids()) {
      if (ProcessLives(p)) kill(p, SIGKILL);
    }
  }

  // $1.. of the port file option, and its directory, in shell.
  static constexpr const char* kFindPortFile =
      "pf=''; prev=''\nfor a in \"$@\"; do [ \"$prev\" = --port-file ] && pf=\"$a\"; prev=\"$a\"; done\n";

  void CoordinatorStandIn(int grpc_port) {
    WriteScript(dir_ / "bin/vsdm-coordinator",
                absl::StrCat("#!/bin/sh\n", kFindPortFile, "echo \"$@\" > ", dir_ / "coordinator.args", "\n",
                             "echo $$ > ", dir_ / "coordinator.pid", "\n", "printf 'grpc ", grpc_port,
                             "\\nmetrics 9\\n' > \"$pf.tmp\" && mv \"$pf.tmp\" \"$pf\"\n", "exec sleep 300\n"));
  }
  // An agent that writes its pid and metrics port file and sleeps, except local-`fail` which
  // exits at once.
  void AgentStandIn(int fail) {
    WriteScript(
        dir_ / "bin/vsdm-worker",
        absl::StrCat("#!/bin/sh\n", kFindPortFile, "case \"$*\" in *\"--id local-", fail, " \"*) exit 1;; esac\n",
                     "echo $$ > \"$pf.pid\"\nprintf 'metrics 19\\n' > \"$pf.tmp\" && mv \"$pf.tmp\" \"$pf\"\n",
                     "exec sleep 300\n"));
  }
  std::vector<pid_t> StandInPids() {
    std::vector<pid_t> pids = {PidIn(dir_ / "coordinator.pid")};
    for (int w = 0; w < options_.workers; ++w)
      pids.push_back(PidIn(options_.state_dir + "/worker-" + std::to_string(w) + ".port.pid"));
    return pids;
  }
  // Nothing of a cluster is left: no process, no pids/coordinator/ports file.
  void ExpectNothingLeft() {
    for (pid_t p : StandInPids()) {
      EXPECT_FALSE(p > 0 && ProcessLives(p)) << "pid " << p << " still runs";
    }
    for (const char* f :
         {"pids", "coordinator", "ports", "worker-0.port", "worker-1.port", "prometheus-targets.json"}) {
      EXPECT_FALSE(fs::exists(fs::path(options_.state_dir) / f)) << f;
    }
    EXPECT_FALSE(LocalClusterAddress(options_.state_dir).ok());
  }
  // A loopback port nothing listens on.
  static int ClosedPort() {
    int fd = -1;
    const int port = ListenOnSomePort(&fd);
    close(fd);
    return port;
  }

  TempDir dir_;
  LocalClusterOptions options_;
};

TEST_F(LocalClusterTest, AnAgentThatCannotBeStartedLeavesNothingRunning) {
  CoordinatorStandIn(ClosedPort());
  WriteScript(dir_ / "bin/vsdm-worker", "#!/nonexistent/interpreter\n");  // executable, cannot exec
  auto up = LocalClusterUp(options_);
  ASSERT_FALSE(up.ok());
  EXPECT_THAT(up.status().message(), HasSubstr("vsdm-worker"));
  ASSERT_GT(PidIn(dir_ / "coordinator.pid"), 0);  // the coordinator had started
  ExpectNothingLeft();
}

TEST_F(LocalClusterTest, AnAgentThatExitsDuringStartUpStopsTheOthers) {
  CoordinatorStandIn(ClosedPort());
  AgentStandIn(/*fail=*/1);
  auto up = LocalClusterUp(options_);
  ASSERT_EQ(up.status().code(), absl::StatusCode::kUnavailable) << up.status();
  EXPECT_THAT(up.status().message(), HasSubstr("worker-1"));
  ASSERT_GT(PidIn(options_.state_dir + "/worker-0.port.pid"), 0);  // agent 0 had started
  ExpectNothingLeft();
  EXPECT_TRUE(fs::exists(options_.state_dir + "/logs/worker-1.log"));  // the logs stay
}

TEST_F(LocalClusterTest, ACoordinatorThatExitsFailsWithItsLog) {
  AgentStandIn(/*fail=*/-1);
  WriteScript(dir_ / "bin/vsdm-coordinator", "#!/bin/sh\necho \"bad flag\" >&2\nexit 3\n");
  auto up = LocalClusterUp(options_);
  ASSERT_EQ(up.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(up.status().message(), HasSubstr("logs/coordinator.log"));
  EXPECT_EQ(ReadAll(options_.state_dir + "/logs/coordinator.log"), "bad flag\n");
  ExpectNothingLeft();
}

TEST_F(LocalClusterTest, UpPassesAFreeStorePortRangeAndDownStopsEverything) {
  FakeCoordinatorService service(options_.workers);
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  auto server = builder.BuildAndStart();
  ASSERT_GT(port, 0);
  CoordinatorStandIn(port);
  AgentStandIn(/*fail=*/-1);
  auto up = LocalClusterUp(options_);
  ASSERT_TRUE(up.ok()) << up.status();
  EXPECT_EQ(*up, absl::StrCat("127.0.0.1:", port));
  EXPECT_EQ(*LocalClusterAddress(options_.state_dir), *up);
  const std::vector<pid_t> pids = StandInPids();
  EXPECT_EQ(ReadAll(options_.state_dir + "/pids"), absl::StrCat(pids[0], "\n", pids[1], "\n", pids[2], "\n"));
  EXPECT_THAT(ReadAll(options_.state_dir + "/prometheus-targets.json"),
              HasSubstr("\"127.0.0.1:19\"], \"labels\": {\"component\": \"worker\", \"worker\": \"local-1\"}"));
  // --store-port-range LO-HI: 64 ports inside [20000, 40000).
  const std::string args = ReadAll(dir_ / "coordinator.args");
  const size_t at = args.find("--store-port-range ");
  ASSERT_NE(at, std::string::npos) << args;
  const std::vector<std::string> lohi =
      absl::StrSplit(args.substr(at + 19, args.find_first_of(" \n", at + 19) - at - 19), '-');
  int lo = 0, hi = 0;
  ASSERT_EQ(lohi.size(), 2u);
  ASSERT_TRUE(absl::SimpleAtoi(lohi[0], &lo) && absl::SimpleAtoi(lohi[1], &hi));
  EXPECT_EQ(hi - lo + 1, 64);
  EXPECT_GE(lo, 20000);
  EXPECT_LT(hi, 40000);
  // A second up from the same state dir is refused and starts nothing.
  EXPECT_EQ(LocalClusterUp(options_).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(StandInPids(), pids);
  ASSERT_TRUE(LocalClusterDown(options_.state_dir).ok());
  for (pid_t p : pids) {
    EXPECT_FALSE(ProcessLives(p));
  }
  EXPECT_FALSE(LocalClusterAddress(options_.state_dir).ok());
  server->Shutdown();
}

TEST_F(LocalClusterTest, UpIsRefusedWhileAProcessOfTheLastClusterRuns) {
  CoordinatorStandIn(ClosedPort());
  AgentStandIn(/*fail=*/-1);
  fs::create_directories(options_.state_dir);
  // Only an agent of the last cluster is left (no coordinator file): still refused.
  std::ofstream(options_.state_dir + "/pids") << 999999999 << "\n" << getpid() << "\n";
  auto up = LocalClusterUp(options_);
  EXPECT_EQ(up.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(fs::exists(dir_ / "coordinator.args"));  // nothing was started
  std::ostringstream out;
  EXPECT_EQ(ExitCode(RunLocalUp(options_, out)), 2);
}

TEST_F(LocalClusterTest, AMissingBinaryIsRefusedBeforeStartingAnything) {
  AgentStandIn(/*fail=*/-1);  // no vsdm-coordinator
  auto up = LocalClusterUp(options_);
  EXPECT_EQ(up.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(up.status().message(), HasSubstr("vsdm-coordinator not found (build first)"));
}

TEST_F(LocalClusterTest, DownStopsTheProcessesInThePidsFile) {
  SpawnOptions so;
  auto pid = Spawn({"/bin/sleep", "300"}, so);
  ASSERT_TRUE(pid.ok()) << pid.status();
  fs::create_directories(options_.state_dir);
  std::ofstream(options_.state_dir + "/pids") << *pid << "\n";
  std::ofstream(options_.state_dir + "/coordinator") << "127.0.0.1:1\n";
  EXPECT_TRUE(LocalClusterAddress(options_.state_dir).ok());
  std::ostringstream out;
  ASSERT_TRUE(RunLocalDown(options_.state_dir, out).ok());
  EXPECT_EQ(out.str(), "local cluster down (" + options_.state_dir + ")\n");
  EXPECT_FALSE(ProcessLives(*pid));
  EXPECT_FALSE(fs::exists(options_.state_dir + "/pids"));
}

}  // namespace
}  // namespace vsdm::client

namespace vsdm::client {
namespace {

// Review L1: `local down` after a reboot or pid reuse must not kill whatever has the pid now.
TEST(LocalClusterDownTest, LeavesAPidThatIsNoLongerAVsdmProcessAlone) {
  const pid_t other = fork();
  ASSERT_GE(other, 0);
  if (other == 0) {
    execl("/bin/sleep", "sleep", "1000", static_cast<char*>(nullptr));
    _exit(127);
  }
  const fs::path state = fs::temp_directory_path() / absl::StrCat("vsdm-l1-", getpid());
  fs::create_directories(state);
  std::ofstream(state / "pids") << other << "\n";
  // The file was written an hour before this process started: its pid is someone else's now.
  fs::last_write_time(state / "pids", fs::file_time_type::clock::now() - std::chrono::hours(1));
  ASSERT_TRUE(LocalClusterDown(state.string()).ok());
  EXPECT_EQ(kill(other, 0), 0) << "an unrelated process (sleep) was killed";
  kill(other, SIGKILL);
  waitpid(other, nullptr, 0);
  fs::remove_all(state);
}

// ---- sweeps (Note [Sweeps]) -----------------------------------------------------------------

TEST_F(CommandsTest, ASweepExpandsToEveryCombinationFirstKeySlowest) {
  auto m = ExpandSweep({"train.lr=1e-3,3e-4", "model.hidden=128,256"});
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->size(), 4u);
  EXPECT_EQ((*m)[0], (std::vector<std::string>{"train.lr=1e-3", "model.hidden=128"}));
  EXPECT_EQ((*m)[1], (std::vector<std::string>{"train.lr=1e-3", "model.hidden=256"}));
  EXPECT_EQ((*m)[3], (std::vector<std::string>{"train.lr=3e-4", "model.hidden=256"}));
  for (const char* bad : {"train.lr", "=1,2", "train.lr=", "train.lr=1,,2"}) {
    auto r = ExpandSweep({bad});
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(r.status().message().find("--sweep"), std::string::npos) << r.status();
  }
  std::vector<std::string> huge(3, "train.seed=1,2,3,4,5,6,7");  // 343 > 256
  EXPECT_EQ(ExpandSweep(huge).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(CommandsTest, SubmitSweepSendsEveryMemberInOneRequestAndABadValueSendsNothing) {
  v1::SubmitSweepRequest sent;
  v1::SubmitSweepResponse resp;
  resp.set_group_id("sweep-00000001");
  for (int i = 0; i < 2; ++i) *resp.add_jobs() = MakeJob(absl::StrCat("job-", i), v1::JOB_STATE_QUEUED);
  EXPECT_CALL(stub_, SubmitSweep(_, _, _))
      .WillOnce(DoAll(SaveArg<1>(&sent), SetArgPointee<2>(resp), Return(grpc::Status::OK)));
  SubmitArgs args;
  args.file = SpecFile();
  args.overrides = {"train.rounds=10"};
  args.sweeps = {"train.lr=0.001,0.0003"};
  args.request_id = "grid";
  ASSERT_TRUE(RunSubmit(args, stub_, out_).ok());
  ASSERT_EQ(sent.members_size(), 2);
  EXPECT_EQ(sent.request_id(), "grid");
  EXPECT_EQ(sent.members(1).spec().train().lr(), 0.0003);
  EXPECT_EQ(sent.members(1).spec().train().rounds(), 10);  // --set applies to every member
  EXPECT_EQ(sent.members(1).overrides(0), "train.lr=0.0003");
  EXPECT_NE(out_.str().find("sweep-00000001 submitted: 2 jobs"), std::string::npos) << out_.str();
  // A member the spec rules refuse: exit 2 naming it, and no call.
  args.sweeps = {"train.lr=0.001,-5"};
  const absl::Status bad = RunSubmit(args, stub_, out_);
  EXPECT_EQ(Report(bad), 2);
  EXPECT_NE(bad.message().find("(train.lr=-5): train.lr"), std::string::npos) << bad;
}

TEST_F(CommandsTest, TheGroupTableMarksTheBestSucceededMemberByTheMetric) {
  v1::ListJobsResponse jobs;
  const double ev[] = {0.30, 0.12, 0.05};
  const v1::JobState st[] = {v1::JOB_STATE_SUCCEEDED, v1::JOB_STATE_SUCCEEDED, v1::JOB_STATE_FAILED};
  for (int i = 0; i < 3; ++i) {
    v1::Job j = MakeJob(absl::StrCat("job-", i), st[i]);
    j.add_overrides(absl::StrCat("train.lr=", i));
    (*j.mutable_progress()->mutable_metrics())["energy_distance"] = ev[i];
    (*j.mutable_progress()->mutable_metrics())["confident_fraction"] = ev[i];
    *jobs.add_jobs() = j;
  }
  EXPECT_EQ(GroupMetric(jobs, ""), "energy_distance");
  EXPECT_EQ(BestMember(jobs, "energy_distance"), 1);  // the failed one's figure does not count
  EXPECT_EQ(BestMember(jobs, "confident_fraction"), 0);  // higher is better
  EXPECT_EQ(BestMember(jobs, "nope"), -1);
  const std::string t = GroupTable(jobs, "");
  EXPECT_NE(t.find("* job-1"), std::string::npos) << t;
  EXPECT_NE(t.find("best: job-1 (train.lr=1) energy_distance 0.1200 (lower is better)"), std::string::npos) << t;
  EXPECT_NE(t.find("3 members: 1 FAILED, 2 SUCCEEDED"), std::string::npos) << t;
}

// ---- live logs (Note [Live rank logs]) --------------------------------------------------------

v1::GetLogsResponse LogsPage(int attempt, v1::JobState state, std::vector<std::tuple<int, int64_t, std::string>> chunks,
                             int64_t skipped = 0) {
  v1::GetLogsResponse r;
  r.set_attempt(attempt);
  r.set_state(state);
  for (auto& [rank, offset, data] : chunks) {
    v1::LogChunk* c = r.add_chunks();
    c->set_rank(rank);
    c->set_offset(offset);
    c->set_data(data);
    c->set_skipped(skipped);
  }
  return r;
}

// `logs -f j-1` of a running job of `trainers` trainers, the coordinator answering `pages` in turn:
// the requests it sent (the output is in out_).
std::vector<v1::GetLogsRequest> FollowLogs(v1::MockJobServiceStub& stub, std::ostream& out, int trainers,
                                           const std::vector<v1::GetLogsResponse>& pages) {
  v1::Job job = MakeJob("j-1", v1::JOB_STATE_RUNNING);
  job.set_trainers(trainers);
  EXPECT_CALL(stub, GetJob(_, _, _)).WillOnce(DoAll(SetArgPointee<2>(job), Return(grpc::Status::OK)));
  std::vector<v1::GetLogsRequest> sent;
  EXPECT_CALL(stub, GetLogs(_, _, _))
      .Times(static_cast<int>(pages.size()))
      .WillRepeatedly(Invoke([&](grpc::ClientContext*, const v1::GetLogsRequest& req, v1::GetLogsResponse* resp) {
        *resp = pages.at(sent.size());
        sent.push_back(req);
        return grpc::Status::OK;
      }));
  LogsArgs args;
  args.job_id = "j-1";
  args.follow = true;
  args.poll = absl::Milliseconds(1);
  EXPECT_TRUE(RunLogs(args, stub, out).ok());
  return sent;
}

TEST_F(CommandsTest, LogsFollowPrintsWholeLinesPerRankWithCursorsUntilTheJobEnds) {
  const v1::JobState run = v1::JOB_STATE_RUNNING;
  const std::vector<v1::GetLogsRequest> sent =
      FollowLogs(stub_, out_, 2,
                 {LogsPage(1, run, {{0, 0, "a\nhal"}, {2, 0, "v\n"}}), LogsPage(1, run, {}),
                  LogsPage(1, run, {{0, 50, "f\nb\n"}}, 45), LogsPage(1, v1::JOB_STATE_SUCCEEDED, {})});
  EXPECT_EQ(out_.str(),
            "--- attempt 1 ---\n[rank 0] a\n[var 2] v\n[rank 0] hal\n[rank 0] [... 45 bytes skipped ...]\n"
            "[rank 0] f\n[rank 0] b\n");
  ASSERT_EQ(sent.size(), 4u);
  ASSERT_EQ(sent[1].after_size(), 2);
  EXPECT_EQ(sent[1].after(0).rank(), 0);
  EXPECT_EQ(sent[1].after(0).offset(), 5);
  EXPECT_EQ(sent[3].after(0).offset(), 54);
}

TEST_F(CommandsTest, LogsReadTheRestOfAnAttemptThenTheNewerOneFromItsStart) {
  const v1::JobState run = v1::JOB_STATE_RUNNING;
  const std::vector<v1::GetLogsRequest> sent =
      FollowLogs(stub_, out_, 1,
                 {LogsPage(1, run, {{0, 0, "one\n"}}),
                  LogsPage(2, run, {{0, 4, "late\n"}}),      // a newer attempt, read with attempt 1's cursors
                  LogsPage(1, run, {{0, 4, "why it failed\n"}}),  // the rest of attempt 1
                  LogsPage(1, run, {}),
                  LogsPage(2, run, {{0, 0, "two\n"}}),       // attempt 2 from its start
                  LogsPage(2, v1::JOB_STATE_FAILED, {})});
  EXPECT_EQ(out_.str(), "--- attempt 1 ---\n[rank 0] one\n[rank 0] why it failed\n--- attempt 2 ---\n[rank 0] two\n");
  ASSERT_EQ(sent.size(), 6u);
  EXPECT_EQ(sent[1].attempt(), 0);  // following: the newest
  EXPECT_EQ(sent[2].attempt(), 1);  // the rest of attempt 1, by number, from its cursor
  ASSERT_EQ(sent[2].after_size(), 1);
  EXPECT_EQ(sent[2].after(0).offset(), 4);
  EXPECT_EQ(sent[3].after(0).offset(), 18);
  EXPECT_EQ(sent[4].attempt(), 0);
  EXPECT_EQ(sent[4].after_size(), 0);  // attempt 2 from its start
}

TEST_F(CommandsTest, LogsOfAJobWithNoOutputKeptSayWhereTheFullLogsAre) {
  EXPECT_CALL(stub_, GetJob(_, _, _))
      .WillOnce(DoAll(SetArgPointee<2>(MakeJob("j-1", v1::JOB_STATE_SUCCEEDED)), Return(grpc::Status::OK)));
  EXPECT_CALL(stub_, GetLogs(_, _, _))
      .WillOnce(DoAll(SetArgPointee<2>(LogsPage(0, v1::JOB_STATE_SUCCEEDED, {})), Return(grpc::Status::OK)));
  LogsArgs args;
  args.job_id = "j-1";
  ASSERT_TRUE(RunLogs(args, stub_, out_).ok());
  EXPECT_EQ(out_.str(),
            "no rank output of j-1 is kept by the coordinator (yet); ranks' logs: <agent work dir>/jobs/j-1/logs/\n");
}

}  // namespace
}  // namespace vsdm::client
