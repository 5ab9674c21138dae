// The coordinator's two gRPC services on loopback over a job store whose disk stalls (review M7,
// Note [Handlers off the reactor], Note [Heartbeats beside the lock]): with a commit holding the
// manager's mutex and every handler thread blocked in a write, health checks and heartbeats still
// answer, the heartbeat renewing its lease; once the disk answers, every blocked call succeeds.
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "server/job_service.h"
#include "server/worker_service.h"
#include "tests/server/stalling_store.h"
#include "vsdm/v1/service.grpc.pb.h"

namespace vsdm::server {
namespace {
namespace fs = std::filesystem;

std::chrono::system_clock::time_point In(int ms) {
  return std::chrono::system_clock::now() + std::chrono::milliseconds(ms);
}

class ServiceStallTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() / ("vsdm_stall_" + std::to_string(::getpid()))).string();
    fs::remove_all(dir_);
    JobManagerOptions o;
    o.lease = absl::Seconds(10);
    o.log = [](const std::string&) {};
    manager_ = std::make_unique<JobManager>(store_, clock_, o);
    artifacts_ = std::make_unique<ArtifactStore>(dir_ + "/artifacts");
    metrics_ = std::make_unique<CoordinatorMetrics>(std::make_shared<prometheus::Registry>());
    auto auth = Authenticator::Create({});
    auto audit = AuditLog::Open("");
    ASSERT_TRUE(auth.ok() && audit.ok());
    auth_ = std::move(*auth);
    audit_ = std::move(*audit);
    deps_ = std::make_unique<ServiceDeps>(
        ServiceDeps{*manager_, *artifacts_, *metrics_, *auth_, *audit_, pool_, heartbeat_pool_, 100});
    jobs_ = std::make_unique<JobServiceImpl>(*deps_);
    workers_ = std::make_unique<WorkerServiceImpl>(*deps_);
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(jobs_.get());
    builder.RegisterService(workers_.get());
    server_ = builder.BuildAndStart();
    ASSERT_TRUE(server_ && port > 0);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
    job_stub_ = v1::JobService::NewStub(channel_);
    worker_stub_ = v1::WorkerService::NewStub(channel_);
  }
  void TearDown() override {
    store_.Stall(false);
    if (server_) server_->Shutdown(In(2000));
    fs::remove_all(dir_);
  }
  grpc::Status Submit(v1::Job* out, int deadline_ms) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(deadline_ms));
    v1::SubmitJobRequest req;
    req.mutable_spec()->set_name("stalled");
    req.mutable_spec()->mutable_resources()->set_trainers(1);
    return job_stub_->SubmitJob(&ctx, req, out);
  }

  // Destroyed bottom up: the server before the pools its handlers run on, those before the manager.
  RealClock clock_;
  StallingStore store_;
  std::string dir_;
  std::unique_ptr<JobManager> manager_;
  std::unique_ptr<ArtifactStore> artifacts_;
  std::unique_ptr<CoordinatorMetrics> metrics_;
  std::unique_ptr<Authenticator> auth_;
  std::unique_ptr<AuditLog> audit_;
  HandlerPool pool_{4, 1000};
  HandlerPool heartbeat_pool_{2, 1000};
  std::unique_ptr<ServiceDeps> deps_;
  std::unique_ptr<JobServiceImpl> jobs_;
  std::unique_ptr<WorkerServiceImpl> workers_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::JobService::Stub> job_stub_;
  std::unique_ptr<v1::WorkerService::Stub> worker_stub_;
};

TEST_F(ServiceStallTest, HealthAndHeartbeatsAnswerWhileEveryHandlerWaitsOnAStalledDisk) {
  v1::RegisterResponse reg;
  {
    grpc::ClientContext ctx;
    v1::RegisterRequest req;
    req.set_worker_id("w1");
    req.mutable_resources()->set_slots(1);
    req.mutable_resources()->set_host("127.0.0.1");
    ASSERT_TRUE(worker_stub_->Register(&ctx, req, &reg).ok());
  }
  v1::Job queued;
  ASSERT_TRUE(Submit(&queued, 5000).ok());

  store_.Stall(true);
  std::vector<std::thread> blocked;
  blocked.emplace_back([&] {  // commits under the manager's mutex, and waits on the disk
    grpc::ClientContext ctx;
    v1::CancelJobRequest req;
    req.set_job_id(queued.job_id());
    v1::Job out;
    EXPECT_TRUE(job_stub_->CancelJob(&ctx, req, &out).ok());
  });
  store_.AwaitBlockedWrites(1);  // the cancel, holding the lock
  for (int i = 0; i < 8; ++i)  // more submits than handler threads: each waits on the lock or the disk
    blocked.emplace_back([&] {
      v1::Job out;
      grpc::Status s = Submit(&out, 30000);
      EXPECT_TRUE(s.ok()) << s.error_message();
    });
  for (int i = 0; i < 1000 && (pool_.busy() < 4 || pool_.queued() < 5); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(pool_.busy(), 4) << "every handler thread is taken";
  ASSERT_EQ(pool_.queued(), 5);

  {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(2000));
    grpc::health::v1::HealthCheckRequest req;
    grpc::health::v1::HealthCheckResponse resp;
    grpc::Status s = grpc::health::v1::Health::NewStub(channel_)->Check(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << "health: " << s.error_message();
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(2000));
    ctx.AddMetadata(kWorkerCredentialKey, reg.worker_credential());
    v1::HeartbeatRequest req;
    req.set_worker_id("w1");
    v1::HeartbeatResponse resp;
    grpc::Status s = worker_stub_->Heartbeat(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << "heartbeat: " << s.error_message() << " (old: DEADLINE_EXCEEDED behind the disk)";
    EXPECT_EQ(resp.lease_seconds(), 10);
  }
  store_.Stall(false);
  for (std::thread& t : blocked) t.join();
  EXPECT_EQ(manager_->TakeStats().heartbeats_deferred, 1);
  v1::ListJobsResponse list;
  grpc::ClientContext ctx;
  ASSERT_TRUE(job_stub_->ListJobs(&ctx, v1::ListJobsRequest(), &list).ok());
  EXPECT_EQ(list.jobs_size(), 9);
}

}  // namespace
}  // namespace vsdm::server
