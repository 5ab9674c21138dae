// A real vsdm-coordinator process on loopback (port 0, the bound port read back), driven through
// the generated gRPC stubs: the job API end to end, health, /metrics, and durability across a
// kill -9. Label `integration`.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/port_file.h"
#include "common/spawn.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "vsdm/v1/service.grpc.pb.h"

namespace vsdm {
namespace {
namespace fs = std::filesystem;

SpawnOptions LogTo(const std::string& path) {
  SpawnOptions o;
  o.log_path = path;
  return o;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs vsdm-coordinator with `args` to its exit; its exit code (-1 if it did not start), its
// output in `*out`.
int RunCoordinator(const std::vector<std::string>& args, const std::string& log, std::string* out) {
  std::vector<std::string> argv = {VSDM_COORDINATOR_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  fs::remove(log);
  absl::StatusOr<pid_t> pid = Spawn(argv, LogTo(log));
  if (!pid.ok()) return -1;
  int status = 0;
  waitpid(*pid, &status, 0);
  *out = ReadAll(log);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// One coordinator process over a data dir.
class CoordinatorProcess {
 public:
  explicit CoordinatorProcess(std::string dir) : dir_(std::move(dir)) {}
  ~CoordinatorProcess() { Kill9(); }

  bool Start() {
    const std::string ports = dir_ + "/ports";
    fs::remove(ports);
    absl::StatusOr<pid_t> pid =
        Spawn({VSDM_COORDINATOR_BIN, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--data-dir",
               dir_ + "/data", "--port-file", ports, "--tick-seconds", "0.05"},
              LogTo(dir_ + "/coordinator.log"));
    if (!pid.ok()) return false;
    pid_ = *pid;
    absl::StatusOr<BoundPorts> bound = WaitForPortFile(ports, absl::Seconds(10));
    if (!bound.ok()) return false;
    port_ = bound->grpc;
    metrics_port_ = bound->metrics;
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port_), grpc::InsecureChannelCredentials());
    return true;
  }
  void Kill9() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }
  int metrics_port() const { return metrics_port_; }
  std::string Log() const { return ReadAll(dir_ + "/coordinator.log"); }

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
  // Watch a job while it is cancelled: the stream replays, then the cancel arrives live on the
  // open stream, and it ends. The replayed event is read before the cancel is sent, so the
  // subscription exists by then (the server subscribes before it replays) and the cancel cannot
  // have been part of the replay.
  {
    grpc::ClientContext ctx;
    Deadline(ctx, 20);
    v1::WatchJobRequest wr;
    wr.set_job_id(ids[1]);
    auto reader = stub_->WatchJob(&ctx, wr);
    v1::JobEvent e;
    ASSERT_TRUE(reader->Read(&e));
    EXPECT_EQ(e.kind(), "submitted");
    EXPECT_EQ(e.sequence(), 1);
    {
      grpc::ClientContext cctx;
      Deadline(cctx);
      v1::CancelJobRequest cr;
      cr.set_job_id(ids[1]);
      v1::Job c;
      ASSERT_TRUE(stub_->CancelJob(&cctx, cr, &c).ok());
      EXPECT_EQ(c.state(), v1::JOB_STATE_CANCELLED);
    }
    ASSERT_TRUE(reader->Read(&e)) << "the cancel did not arrive on the open stream";
    EXPECT_EQ(e.kind(), "cancelled");
    EXPECT_EQ(e.sequence(), 2);
    EXPECT_EQ(e.state(), v1::JOB_STATE_CANCELLED);
    EXPECT_FALSE(reader->Read(&e)) << "the stream ends after the final event, got " << e.kind();
    grpc::Status watch_status = reader->Finish();
    EXPECT_TRUE(watch_status.ok()) << watch_status.error_message();
  }
  {  // cancelling it again: FAILED_PRECONDITION
    grpc::ClientContext ctx;
    Deadline(ctx);
    v1::CancelJobRequest cr;
    cr.set_job_id(ids[1]);
    v1::Job c;
    EXPECT_EQ(stub_->CancelJob(&ctx, cr, &c).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  }
  // Artifacts stream from <data-dir>/artifacts/<job>/; paths cannot leave it. A job that has not
  // succeeded serves only its checkpoints (complete files), not a result half uploaded.
  fs::create_directories(dir_ + "/data/artifacts/" + ids[0] + "/checkpoint");
  std::string payload(200 * 1024, 'x');
  payload[12345] = 'y';
  std::ofstream(dir_ + "/data/artifacts/" + ids[0] + "/checkpoint/ckpt-00000003.pt") << payload;
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
  ASSERT_TRUE(fetch("checkpoint/ckpt-00000003.pt", &data).ok());
  EXPECT_EQ(data, payload);
  std::string none;
  EXPECT_EQ(fetch("samples.npy", &none).error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << "old: served while the job is queued";
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(fetch("../../vsdm.db", &none).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(fetch("checkpoint/ckpt-00000009.pt", &none).error_code(), grpc::StatusCode::NOT_FOUND);
  // /metrics counts what happened (the job gauges follow within a tick or two: poll).
  const std::string cmd = "curl -s http://127.0.0.1:" + std::to_string(proc_->metrics_port()) + "/metrics";
  const std::vector<std::string> want = {"vsdm_rpc_total{code=\"INVALID_ARGUMENT\",method=\"SubmitJob\"} 1",
                                         "vsdm_jobs{state=\"cancelled\"} 1", "vsdm_scheduling_pass_seconds_count",
                                         "vsdm_jobs_pending{reason=\"no_store_port\"} 0",
                                         "vsdm_build_info{component=\"coordinator\",version=\"" VSDM_VERSION "\"} 1"};
  std::string metrics;
  for (int i = 0; i < 100; ++i) {
    metrics.clear();
    if (FILE* p = popen(cmd.c_str(), "r")) {
      char buf[4096];
      size_t n;
      while ((n = fread(buf, 1, sizeof buf, p)) > 0) metrics.append(buf, n);
      pclose(p);
    }
    bool all = true;
    for (const auto& w : want) all = all && metrics.find(w) != std::string::npos;
    if (all) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (const auto& w : want) EXPECT_NE(metrics.find(w), std::string::npos) << w << "\n" << metrics.substr(0, 3000);
}

TEST(CoordinatorFlagsTest, VersionPrintsTheProjectVersion) {
  const std::string log = (fs::temp_directory_path() / ("vsdm_coord_version_" + std::to_string(::getpid()))).string();
  std::string out;
  EXPECT_EQ(RunCoordinator({"--version"}, log, &out), 0) << out;
  EXPECT_EQ(out, "vsdm-coordinator " VSDM_VERSION "\n");
  fs::remove(log);
}

TEST(CoordinatorFlagsTest, ABadStorePortRangeExitsTwoNamingTheFlag) {
  const std::string log = (fs::temp_directory_path() / ("vsdm_coord_flags_" + std::to_string(::getpid()))).string();
  for (const char* bad : {"29999-29500", "29500", "0-10", "x-y"}) {
    std::string out;
    EXPECT_EQ(RunCoordinator({"--store-port-range", bad, "--data-dir", log + ".data"}, log, &out), 2) << bad << out;
    EXPECT_NE(out.find("--store-port-range"), std::string::npos) << bad << ": " << out;
    EXPECT_NE(out.find("LO"), std::string::npos) << bad << ": " << out;
  }
  EXPECT_FALSE(fs::exists(log + ".data")) << "refused before it opened the store";
  fs::remove(log);
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
