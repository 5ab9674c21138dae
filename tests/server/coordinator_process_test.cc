// A real vsdm-coordinator process on loopback (port 0, the bound port read back), driven through
// the generated gRPC stubs: the job API end to end, health, /metrics, and durability across a
// kill -9. Label `integration`.
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "grpc/health/v1/health.grpc.pb.h"
#include "vsdm/v1/service.grpc.pb.h"

extern char** environ;

namespace vsdm {
namespace {
namespace fs = std::filesystem;

// One coordinator process over a data dir.
class CoordinatorProcess {
 public:
  explicit CoordinatorProcess(std::string dir) : dir_(std::move(dir)) {}
  ~CoordinatorProcess() { Kill9(); }

  bool Start() {
    const std::string ports = dir_ + "/ports";
    fs::remove(ports);
    std::vector<std::string> args = {VSDM_COORDINATOR_BIN, "--listen", "127.0.0.1:0", "--metrics-listen",
                                     "127.0.0.1:0", "--data-dir", dir_ + "/data", "--port-file", ports,
                                     "--tick-seconds", "0.05"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, (dir_ + "/coordinator.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    const int rc = posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) return false;
    for (int i = 0; i < 200; ++i) {
      std::ifstream in(ports);
      std::string k1, k2;
      if (in >> k1 >> port_ >> k2 >> metrics_port_) {
        channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port_), grpc::InsecureChannelCredentials());
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  void Kill9() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }
  int metrics_port() const { return metrics_port_; }
  std::string Log() const {
    std::ifstream in(dir_ + "/coordinator.log");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  std::string dir_;
  pid_t pid_ = -1;
  int port_ = 0, metrics_port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
};

void Deadline(grpc::ClientContext& ctx, int seconds = 10) {
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
}

class CoordinatorProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() / ("vsdm_coord_" + std::to_string(::getpid()))).string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    proc_ = std::make_unique<CoordinatorProcess>(dir_);
    ASSERT_TRUE(proc_->Start()) << proc_->Log();
    stub_ = v1::JobService::NewStub(proc_->channel());
  }
  void TearDown() override {
    proc_.reset();
    fs::remove_all(dir_);
  }

  grpc::Status Submit(const v1::JobSpec& spec, const std::string& rid, v1::Job* out) {
    grpc::ClientContext ctx;
    Deadline(ctx);
    v1::SubmitJobRequest req;
    *req.mutable_spec() = spec;
    req.set_request_id(rid);
    return stub_->SubmitJob(&ctx, req, out);
  }
  v1::Job Get(const std::string& id, grpc::Status* st = nullptr) {
    grpc::ClientContext ctx;
    Deadline(ctx);
    v1::GetJobRequest req;
    req.set_job_id(id);
    v1::Job j;
    grpc::Status s = stub_->GetJob(&ctx, req, &j);
    if (st) *st = s;
    return j;
  }
  static v1::JobSpec Spec(int trainers = 2) {
    v1::JobSpec s;
    s.set_name("loopback");
    s.mutable_resources()->set_trainers(trainers);
    return s;
  }

  std::string dir_;
  std::unique_ptr<CoordinatorProcess> proc_;
  std::unique_ptr<v1::JobService::Stub> stub_;
};

TEST_F(CoordinatorProcessTest, ServesTheJobApiOverLoopback) {
  {  // health
    auto health = grpc::health::v1::Health::NewStub(proc_->channel());
    grpc::ClientContext ctx;
    Deadline(ctx);
    grpc::health::v1::HealthCheckResponse resp;
    ASSERT_TRUE(health->Check(&ctx, {}, &resp).ok());
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  }
  // A bad spec is refused naming the field, and nothing is created.
  v1::JobSpec bad = Spec();
  bad.mutable_train()->set_batch_points(0);
  v1::Job j;
  grpc::Status s = Submit(bad, "bad", &j);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("spec.train.batch_points"), std::string::npos) << s.error_message();
  // Submit, idempotently.
  v1::Job first;
  ASSERT_TRUE(Submit(Spec(), "req-1", &first).ok());
  EXPECT_EQ(first.state(), v1::JOB_STATE_QUEUED);
  v1::Job again;
  ASSERT_TRUE(Submit(Spec(), "req-1", &again).ok());
  EXPECT_EQ(again.job_id(), first.job_id());
  v1::Job got = Get(first.job_id());
  EXPECT_EQ(got.spec().train().batch_points(), 1024);
  EXPECT_NE(got.pending_reason(), "");  // no workers: it says why it waits
  grpc::Status nf;
  Get("job-99999999", &nf);
  EXPECT_EQ(nf.error_code(), grpc::StatusCode::NOT_FOUND);
  // List in pages of 2 over 6 jobs, newest first.
  std::vector<std::string> ids = {first.job_id()};
  for (int i = 0; i < 5; ++i) {
    v1::Job x;
    ASSERT_TRUE(Submit(Spec(), "", &x).ok());
    ids.push_back(x.job_id());
  }
  std::vector<std::string> seen;
  v1::ListJobsRequest lr;
  lr.set_page_size(2);
  int pages = 0;
  for (;;) {
    grpc::ClientContext ctx;
    Deadline(ctx);
    v1::ListJobsResponse resp;
    ASSERT_TRUE(stub_->ListJobs(&ctx, lr, &resp).ok());
    ++pages;
    for (const auto& x : resp.jobs()) seen.push_back(x.job_id());
    if (resp.next_page_token().empty()) break;
    lr.set_page_token(resp.next_page_token());
  }
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen, std::vector<std::string>(ids.rbegin(), ids.rend()));
  // Watch a job while it is cancelled: the stream replays, shows the cancel, and ends.
  std::vector<v1::JobEvent> events;
  grpc::Status watch_status;
  std::thread watcher([&] {
    grpc::ClientContext ctx;
    Deadline(ctx, 20);
    v1::WatchJobRequest wr;
    wr.set_job_id(ids[1]);
    auto reader = stub_->WatchJob(&ctx, wr);
    v1::JobEvent e;
    while (reader->Read(&e)) events.push_back(e);
    watch_status = reader->Finish();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  {
    grpc::ClientContext ctx;
    Deadline(ctx);
    v1::CancelJobRequest cr;
    cr.set_job_id(ids[1]);
    v1::Job c;
    ASSERT_TRUE(stub_->CancelJob(&ctx, cr, &c).ok());
    EXPECT_EQ(c.state(), v1::JOB_STATE_CANCELLED);
  }
  watcher.join();
  EXPECT_TRUE(watch_status.ok()) << watch_status.error_message();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind(), "submitted");
  EXPECT_EQ(events[1].kind(), "cancelled");
  EXPECT_EQ(events[1].state(), v1::JOB_STATE_CANCELLED);
  {  // cancelling it again: FAILED_PRECONDITION
    grpc::ClientContext ctx;
    Deadline(ctx);
    v1::CancelJobRequest cr;
    cr.set_job_id(ids[1]);
    v1::Job c;
    EXPECT_EQ(stub_->CancelJob(&ctx, cr, &c).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  }
  // Artifacts stream from <data-dir>/artifacts/<job>/; paths cannot leave it.
  fs::create_directories(dir_ + "/data/artifacts/" + ids[0]);
  std::string payload(200 * 1024, 'x');
  payload[12345] = 'y';
  std::ofstream(dir_ + "/data/artifacts/" + ids[0] + "/samples.npy") << payload;
  auto fetch = [&](const std::string& path, std::string* data) {
    grpc::ClientContext ctx;
    Deadline(ctx);
    v1::GetArtifactRequest ar;
    ar.set_job_id(ids[0]);
    ar.set_path(path);
    auto reader = stub_->GetArtifact(&ctx, ar);
    v1::ArtifactChunk chunk;
    while (reader->Read(&chunk)) *data += chunk.data();
    return reader->Finish();
  };
  std::string data;
  ASSERT_TRUE(fetch("samples.npy", &data).ok());
  EXPECT_EQ(data, payload);
  std::string none;
  EXPECT_EQ(fetch("../../vsdm.db", &none).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(fetch("nope.png", &none).error_code(), grpc::StatusCode::NOT_FOUND);
  // /metrics counts what happened.
  const std::string cmd = "curl -s http://127.0.0.1:" + std::to_string(proc_->metrics_port()) + "/metrics";
  std::string metrics;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) metrics.append(buf, n);
    pclose(p);
  }
  EXPECT_NE(metrics.find("vsdm_rpc_total{code=\"INVALID_ARGUMENT\",method=\"SubmitJob\"} 1"), std::string::npos)
      << metrics.substr(0, 3000);
  EXPECT_NE(metrics.find("vsdm_jobs{state=\"cancelled\"} 1"), std::string::npos);
  EXPECT_NE(metrics.find("vsdm_scheduling_pass_seconds_count"), std::string::npos);
}

TEST_F(CoordinatorProcessTest, AcknowledgedJobsSurviveAKill9) {
  constexpr int kThreads = 8, kPerThread = 40;
  std::vector<std::vector<v1::Job>> acked(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        v1::Job j;
        if (Submit(Spec(1), "t" + std::to_string(t) + "-" + std::to_string(i), &j).ok()) acked[t].push_back(j);
      }
    });
  for (auto& th : threads) th.join();
  std::map<std::string, v1::JobState> want;
  for (const auto& v : acked)
    for (const auto& j : v) want[j.job_id()] = v1::JOB_STATE_QUEUED;
  ASSERT_EQ(want.size(), static_cast<size_t>(kThreads * kPerThread));
  // Cancel a few, so states differ.
  int cancelled = 0;
  for (auto& [id, st] : want) {
    if (cancelled++ % 7) continue;
    grpc::ClientContext ctx;
    Deadline(ctx);
    v1::CancelJobRequest cr;
    cr.set_job_id(id);
    v1::Job c;
    ASSERT_TRUE(stub_->CancelJob(&ctx, cr, &c).ok());
    st = v1::JOB_STATE_CANCELLED;
  }
  proc_->Kill9();
  ASSERT_TRUE(proc_->Start()) << proc_->Log();
  stub_ = v1::JobService::NewStub(proc_->channel());
  for (const auto& [id, st] : want) {
    grpc::Status s;
    v1::Job j = Get(id, &s);
    ASSERT_TRUE(s.ok()) << id << ": " << s.error_message();
    EXPECT_EQ(j.state(), st) << id;
  }
  // The idempotency keys survived too.
  v1::Job again;
  ASSERT_TRUE(Submit(Spec(1), "t3-7", &again).ok());
  EXPECT_EQ(again.job_id(), acked[3][7].job_id());
  EXPECT_NE(proc_->Log().find(std::to_string(want.size()) + " jobs recovered"), std::string::npos) << proc_->Log();
}

}  // namespace
}  // namespace vsdm
