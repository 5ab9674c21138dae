// The authorization matrix against a real vsdm-coordinator process with --auth-tokens (loopback,
// generated stubs): every RPC of JobService and WorkerService called by each kind of caller
// (no token, a wrong token, user alice, user bob, an admin, the worker that holds the job's
// ranks, another worker), each cell checked against the code it must get. The table is printed
// (the issue note carries it). Also: the priority ceiling, the per-owner queue quota, open
// health, no reflection, and that a forged call changed nothing. Label `integration`.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/port_file.h"
#include "common/spawn.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "vsdm/v1/service.grpc.pb.h"

namespace vsdm {
namespace {
namespace fs = std::filesystem;
using grpc::StatusCode;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const char* CodeName(StatusCode c) {
  switch (c) {
    case StatusCode::OK:
      return "OK";
    case StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    case StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    default:
      return "OTHER";
  }
}

// One kind of caller: its token, and for workers the worker id it speaks as and the session
// credential its Register got.
struct CallerId {
  std::string name;
  std::string token;
  std::string worker_id;
  std::string credential;
};

class AuthMatrixTest : public ::testing::Test {
 protected:
  static constexpr char kAlice[] = "alice-token-0123456789abcdef";
  static constexpr char kBob[] = "bob-token-0123456789abcdef00";
  static constexpr char kAdmin[] = "admin-token-0123456789abcdef";
  static constexpr char kWorker1[] = "worker1-token-0123456789abcd";
  static constexpr char kWorker2[] = "worker2-token-0123456789abcd";

  void SetUp() override {
    dir_ = (fs::temp_directory_path() / ("vsdm_authz_" + std::to_string(::getpid()))).string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::ofstream(dir_ + "/tokens") << "# test tokens\n"
                                    << kAlice << " alice user\n"
                                    << kBob << " bob user\n"
                                    << kAdmin << " root admin\n"
                                    << kWorker1 << " node-1 worker\n"
                                    << kWorker2 << " node-2 worker\n";
    SpawnOptions so;
    so.log_path = dir_ + "/coordinator.log";
    auto pid = Spawn({VSDM_COORDINATOR_BIN, "--listen", "127.0.0.1:0", "--metrics-listen", "", "--data-dir",
                      dir_ + "/data", "--port-file", dir_ + "/ports", "--tick-seconds", "0.05", "--auth-tokens",
                      dir_ + "/tokens", "--max-queued-per-owner", "8", "--priority-ceiling", "100"},
                     so);
    ASSERT_TRUE(pid.ok()) << pid.status();
    pid_ = *pid;
    auto bound = WaitForPortFile(dir_ + "/ports", absl::Seconds(10));
    ASSERT_TRUE(bound.ok()) << ReadAll(dir_ + "/coordinator.log");
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(bound->grpc), grpc::InsecureChannelCredentials());
    jobs_ = v1::JobService::NewStub(channel_);
    workers_ = v1::WorkerService::NewStub(channel_);
  }
  void TearDown() override {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    fs::remove_all(dir_);
  }

  static void Prepare(grpc::ClientContext& ctx, const CallerId& c) {
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!c.token.empty()) ctx.AddMetadata("authorization", std::string("Bearer ") + c.token);
    if (!c.credential.empty()) ctx.AddMetadata("x-vsdm-worker-credential", c.credential);
  }

  grpc::Status Submit(const CallerId& c, v1::Job* out, int priority = 0) {
    grpc::ClientContext ctx;
    Prepare(ctx, c);
    v1::SubmitJobRequest req;
    req.mutable_spec()->set_name("authz");
    req.mutable_spec()->set_owner("mallory");  // ignored: the owner is who calls
    req.mutable_spec()->set_priority(priority);
    req.mutable_spec()->mutable_resources()->set_trainers(1);
    return jobs_->SubmitJob(&ctx, req, out);
  }
  v1::Job MustSubmit(const CallerId& c) {
    v1::Job j;
    grpc::Status s = Submit(c, &j);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return j;
  }
  grpc::Status Register(CallerId& c, const std::string& worker_id, int slots) {
    grpc::ClientContext ctx;
    Prepare(ctx, c);
    v1::RegisterRequest req;
    req.set_worker_id(worker_id);
    req.mutable_resources()->set_slots(slots);
    req.mutable_resources()->set_host("127.0.0.1");
    v1::RegisterResponse resp;
    grpc::Status s = workers_->Register(&ctx, req, &resp);
    if (s.ok() && c.worker_id == worker_id) c.credential = resp.worker_credential();
    return s;
  }
  grpc::Status Heartbeat(const CallerId& c, const std::string& worker_id, v1::HeartbeatResponse* out = nullptr) {
    grpc::ClientContext ctx;
    Prepare(ctx, c);
    v1::HeartbeatRequest req;
    req.set_worker_id(worker_id);
    v1::HeartbeatResponse resp;
    grpc::Status s = workers_->Heartbeat(&ctx, req, &resp);
    if (out) *out = resp;
    return s;
  }
  v1::Job Get(const std::string& job_id) {
    grpc::ClientContext ctx;
    Prepare(ctx, admin_);
    v1::GetJobRequest req;
    req.set_job_id(job_id);
    v1::Job j;
    EXPECT_TRUE(jobs_->GetJob(&ctx, req, &j).ok());
    return j;
  }
  // Reads a server stream to its end; its status.
  template <typename Resp, typename Req, typename Method>
  grpc::Status ReadStream(const CallerId& c, Method m, const Req& req, int max_messages = 1) {
    grpc::ClientContext ctx;
    Prepare(ctx, c);
    auto reader = ((*jobs_).*m)(&ctx, req);
    Resp msg;
    int n = 0;
    while (n < max_messages && reader->Read(&msg)) ++n;
    if (n >= max_messages) {
      ctx.TryCancel();
      while (reader->Read(&msg)) {
      }
      reader->Finish().ok();
      return grpc::Status::OK;  // it streamed
    }
    return reader->Finish();
  }

  std::string dir_;
  pid_t pid_ = -1;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::JobService::Stub> jobs_;
  std::unique_ptr<v1::WorkerService::Stub> workers_;
  CallerId none_{"no token", "", "", ""};
  CallerId wrong_{"wrong token", "not-a-token-0123456789abcdef", "worker-1", ""};
  CallerId alice_{"user alice (owner)", kAlice, "", ""};
  CallerId bob_{"user bob", kBob, "", ""};
  CallerId admin_{"admin", kAdmin, "", ""};
  CallerId worker1_{"worker-1 (holds the ranks)", kWorker1, "worker-1", ""};
  CallerId worker2_{"worker-2 (another worker)", kWorker2, "worker-2", ""};
};

TEST_F(AuthMatrixTest, EveryRpcByEveryKindOfCallerGetsTheExpectedCode) {
  // The scene: worker-1 (2 slots) holds both ranks of alice's job J; worker-2 is registered too.
  ASSERT_TRUE(Register(worker1_, "worker-1", 2).ok());
  v1::Job j = MustSubmit(alice_);
  EXPECT_EQ(j.owner(), "alice");  // not the spec's "mallory"
  std::string attempt;
  for (int i = 0; i < 100 && attempt.empty(); ++i) {
    v1::HeartbeatResponse hb;
    ASSERT_TRUE(Heartbeat(worker1_, "worker-1", &hb).ok());
    for (const auto& a : hb.assignments()) {
      attempt = a.attempt_id();
      EXPECT_EQ(a.rendezvous_secret().size(), 32u);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_FALSE(attempt.empty());
  ASSERT_TRUE(Register(worker2_, "worker-2", 1).ok());
  // One queued job of alice's per caller, for the cancel cells.
  std::vector<CallerId*> callers = {&none_, &wrong_, &alice_, &bob_, &admin_, &worker1_, &worker2_};
  std::map<std::string, std::string> cancel_target;
  for (CallerId* c : callers) cancel_target[c->name] = MustSubmit(alice_).job_id();

  using Call = std::function<grpc::Status(CallerId&)>;
  const std::vector<std::pair<std::string, Call>> rpcs = {
      {"SubmitJob", [&](CallerId& c) { v1::Job out; return Submit(c, &out); }},
      {"GetJob",
       [&](CallerId& c) {
         grpc::ClientContext ctx;
         Prepare(ctx, c);
         v1::GetJobRequest req;
         req.set_job_id(j.job_id());
         v1::Job out;
         return jobs_->GetJob(&ctx, req, &out);
       }},
      {"ListJobs",
       [&](CallerId& c) {
         grpc::ClientContext ctx;
         Prepare(ctx, c);
         v1::ListJobsResponse out;
         grpc::Status s = jobs_->ListJobs(&ctx, v1::ListJobsRequest(), &out);
         for (const auto& listed : out.jobs()) {  // a user sees only its own jobs
           if (c.token == kBob) {
             EXPECT_EQ(listed.owner(), "bob") << "bob's list shows " << listed.job_id();
           }
         }
         return s;
       }},
      {"WatchJob",
       [&](CallerId& c) {
         v1::WatchJobRequest req;
         req.set_job_id(j.job_id());
         return ReadStream<v1::JobEvent>(c, &v1::JobService::Stub::WatchJob, req);
       }},
      {"GetArtifact",
       [&](CallerId& c) {
         v1::GetArtifactRequest req;
         req.set_job_id(j.job_id());
         req.set_path("checkpoint/ckpt-00000001.pt");
         return ReadStream<v1::ArtifactChunk>(c, &v1::JobService::Stub::GetArtifact, req);
       }},
      {"CancelJob",
       [&](CallerId& c) {
         grpc::ClientContext ctx;
         Prepare(ctx, c);
         v1::CancelJobRequest req;
         req.set_job_id(cancel_target[c.name]);
         v1::Job out;
         return jobs_->CancelJob(&ctx, req, &out);
       }},
      {"ListWorkers",
       [&](CallerId& c) {
         grpc::ClientContext ctx;
         Prepare(ctx, c);
         v1::ListWorkersResponse out;
         return jobs_->ListWorkers(&ctx, v1::ListWorkersRequest(), &out);
       }},
      // Worker calls speak for worker-1's attempt: as the caller's own worker id (another
      // worker claiming a rank it does not hold), or as worker-1 (the holder).
      {"Register (worker-1's id)", [&](CallerId& c) { return Register(c, "worker-1", 2); }},
      {"Heartbeat (own id)", [&](CallerId& c) { return Heartbeat(c, c.worker_id.empty() ? "worker-1" : c.worker_id); }},
      {"Heartbeat (worker-1's id)", [&](CallerId& c) { return Heartbeat(c, "worker-1"); }},
      {"Report (J rank 0)",
       [&](CallerId& c) {
         grpc::ClientContext ctx;
         Prepare(ctx, c);
         v1::ReportRequest req;
         req.set_worker_id(c.worker_id.empty() ? "worker-1" : c.worker_id);
         req.set_attempt_id(attempt);
         req.set_rank(0);
         req.mutable_progress()->set_round(1);
         v1::ReportResponse out;
         return workers_->Report(&ctx, req, &out);
       }},
      {"UploadArtifact (J)",
       [&](CallerId& c) {
         grpc::ClientContext ctx;
         Prepare(ctx, c);
         v1::UploadArtifactRequest req;
         req.set_worker_id(c.worker_id.empty() ? "worker-1" : c.worker_id);
         req.set_attempt_id(attempt);
         req.set_path("checkpoint/ckpt-00000001.pt");
         req.set_data(R"({"by": ")" + c.name + "\"}\n");
         req.set_last(true);
         v1::UploadArtifactResponse out;
         return workers_->UploadArtifact(&ctx, req, &out);
       }},
      {"FetchCheckpoint (J)",
       [&](CallerId& c) {
         grpc::ClientContext ctx;
         Prepare(ctx, c);
         v1::FetchCheckpointRequest req;
         req.set_worker_id(c.worker_id.empty() ? "worker-1" : c.worker_id);
         req.set_attempt_id(attempt);
         v1::FetchCheckpointResponse out;
         return workers_->FetchCheckpoint(&ctx, req, &out);
       }},
      {"SubmitSweep",
       [&](CallerId& c) {
         grpc::ClientContext ctx;
         Prepare(ctx, c);
         v1::SubmitSweepRequest req;
         for (int i = 0; i < 2; ++i) {
           v1::SweepMember* m = req.add_members();
           m->mutable_spec()->set_name("sweep");
           m->mutable_spec()->mutable_train()->set_seed(i + 1);
           m->add_overrides(absl::StrCat("train.seed=", i + 1));
         }
         v1::SubmitSweepResponse out;
         grpc::Status s = jobs_->SubmitSweep(&ctx, req, &out);
         for (const auto& member : out.jobs())  // the owner is who called, as for SubmitJob
           if (c.token == kBob) {
             EXPECT_EQ(member.owner(), "bob");
           }
         return s;
       }},
      {"AppendLog (J rank 0)",
       [&](CallerId& c) {
         grpc::ClientContext ctx;
         Prepare(ctx, c);
         v1::AppendLogRequest req;
         req.set_worker_id(c.worker_id.empty() ? "worker-1" : c.worker_id);
         req.set_attempt_id(attempt);
         req.set_rank(0);
         req.set_offset(0);
         req.set_data("line of " + c.name + "\n");
         v1::AppendLogResponse out;
         return workers_->AppendLog(&ctx, req, &out);
       }},
      {"GetLogs (J)",
       [&](CallerId& c) {
         grpc::ClientContext ctx;
         Prepare(ctx, c);
         v1::GetLogsRequest req;
         req.set_job_id(j.job_id());
         v1::GetLogsResponse out;
         grpc::Status s = jobs_->GetLogs(&ctx, req, &out);
         if (s.ok()) {  // only worker-1's line was taken
           EXPECT_EQ(out.chunks_size(), 1);
           if (out.chunks_size() == 1) {
             EXPECT_EQ(out.chunks(0).data(), "line of " + worker1_.name + "\n");
           }
         }
         return s;
       }},
      {"Complete (J rank 1, exit 0)",
       [&](CallerId& c) {
         grpc::ClientContext ctx;
         Prepare(ctx, c);
         v1::CompleteRequest req;
         req.set_worker_id(c.worker_id.empty() ? "worker-1" : c.worker_id);
         req.set_attempt_id(attempt);
         req.set_rank(1);
         v1::CompleteResponse out;
         return workers_->Complete(&ctx, req, &out);
       }},
  };
  using C = StatusCode;
  const C OK = C::OK, UA = C::UNAUTHENTICATED, PD = C::PERMISSION_DENIED, NF = C::NOT_FOUND,
          FP = C::FAILED_PRECONDITION;
  // Columns: none, wrong, alice, bob, admin, worker-1, worker-2.
  const std::map<std::string, std::vector<C>> expected = {
      {"SubmitJob", {UA, UA, OK, OK, OK, PD, PD}},
      {"GetJob", {UA, UA, OK, NF, OK, PD, PD}},
      {"ListJobs", {UA, UA, OK, OK, OK, PD, PD}},
      {"WatchJob", {UA, UA, OK, NF, OK, PD, PD}},
      {"GetArtifact", {UA, UA, OK, NF, OK, PD, PD}},
      {"CancelJob", {UA, UA, OK, NF, OK, PD, PD}},
      {"ListWorkers", {UA, UA, PD, PD, OK, PD, PD}},
      {"Register (worker-1's id)", {UA, UA, PD, PD, PD, OK, PD}},
      {"Heartbeat (own id)", {UA, UA, PD, PD, PD, OK, OK}},
      {"Heartbeat (worker-1's id)", {UA, UA, PD, PD, PD, OK, PD}},
      {"Report (J rank 0)", {UA, UA, PD, PD, PD, OK, FP}},
      {"UploadArtifact (J)", {UA, UA, PD, PD, PD, OK, FP}},
      {"FetchCheckpoint (J)", {UA, UA, PD, PD, PD, OK, FP}},
      {"SubmitSweep", {UA, UA, OK, OK, OK, PD, PD}},
      {"AppendLog (J rank 0)", {UA, UA, PD, PD, PD, OK, FP}},
      {"GetLogs (J)", {UA, UA, OK, NF, OK, PD, PD}},
      {"Complete (J rank 1, exit 0)", {UA, UA, PD, PD, PD, OK, FP}},
  };
  // The upload goes first so GetArtifact has a file; Register re-issues worker-1's credential
  // (kept by Register()), so heartbeats after it use the new one.
  std::vector<std::string> order = {"UploadArtifact (J)", "SubmitJob", "GetJob", "ListJobs", "WatchJob",
                                    "GetArtifact", "CancelJob", "ListWorkers", "Register (worker-1's id)",
                                    "Heartbeat (own id)", "Heartbeat (worker-1's id)", "Report (J rank 0)",
                                    "FetchCheckpoint (J)", "SubmitSweep", "AppendLog (J rank 0)", "GetLogs (J)",
                                    "Complete (J rank 1, exit 0)"};
  std::map<std::string, std::vector<std::string>> got;
  for (const std::string& name : order) {
    auto it = std::find_if(rpcs.begin(), rpcs.end(), [&](const auto& p) { return p.first == name; });
    ASSERT_NE(it, rpcs.end()) << name;
    // worker-2 and the wrong caller go before worker-1, so a forgery meets the real state.
    std::vector<std::string> row(callers.size());
    for (size_t k : {0, 1, 2, 3, 4, 6, 5}) {
      grpc::Status s = it->second(*callers[k]);
      row[k] = CodeName(s.error_code());
      EXPECT_EQ(s.error_code(), expected.at(name)[k])
          << name << " by " << callers[k]->name << ": " << CodeName(s.error_code()) << " " << s.error_message();
    }
    got[name] = row;
  }
  // The table, for the issue note.
  std::cout << "\n| RPC |";
  for (CallerId* c : callers) std::cout << " " << c->name << " |";
  std::cout << "\n|---|";
  for (size_t k = 0; k < callers.size(); ++k) std::cout << "---|";
  std::cout << "\n";
  for (const std::string& name : order) {
    std::cout << "| " << name << " |";
    for (const std::string& cell : got[name]) std::cout << " " << cell << " |";
    std::cout << "\n";
  }
  // What the forgeries did not change: J still runs, its artifact is worker-1's.
  EXPECT_EQ(Get(j.job_id()).state(), v1::JOB_STATE_RUNNING);
  v1::GetArtifactRequest areq;
  areq.set_job_id(j.job_id());
  areq.set_path("checkpoint/ckpt-00000001.pt");
  grpc::ClientContext actx;
  Prepare(actx, alice_);
  auto reader = jobs_->GetArtifact(&actx, areq);
  std::string body;
  v1::ArtifactChunk chunk;
  while (reader->Read(&chunk)) body += chunk.data();
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_NE(body.find("worker-1"), std::string::npos) << body;
}

TEST_F(AuthMatrixTest, PriorityAboveTheCeilingNeedsAnAdminAndTheQueueQuotaIsPerOwner) {
  v1::Job out;
  grpc::Status s = Submit(alice_, &out, 500);
  EXPECT_EQ(s.error_code(), StatusCode::PERMISSION_DENIED);
  EXPECT_NE(s.error_message().find("priority"), std::string::npos) << s.error_message();
  EXPECT_TRUE(Submit(admin_, &out, 500).ok());
  EXPECT_TRUE(Submit(alice_, &out, 100).ok());
  for (int i = 1; i < 8; ++i) ASSERT_TRUE(Submit(alice_, &out).ok()) << i;
  s = Submit(alice_, &out);  // her 9th queued job
  EXPECT_EQ(s.error_code(), StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(s.error_message().find("max-queued-per-owner"), std::string::npos) << s.error_message();
  EXPECT_TRUE(Submit(bob_, &out).ok());  // bob's quota is his own
}

TEST_F(AuthMatrixTest, HealthIsOpenReflectionIsOffAndTheAuditLogHasALinePerMutatingCall) {
  auto health = grpc::health::v1::Health::NewStub(channel_);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckResponse hr;
  ASSERT_TRUE(health->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &hr).ok());
  EXPECT_EQ(hr.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  // Reflection: not served (gRPC's reflection service cannot check our tokens).
  grpc::GenericStub generic(channel_);
  grpc::ClientContext rctx;
  rctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::CompletionQueue cq;
  auto call = generic.PrepareUnaryCall(&rctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                       grpc::ByteBuffer(), &cq);
  call->StartCall();
  grpc::ByteBuffer reply;
  grpc::Status rs;
  call->Finish(&reply, &rs, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  ASSERT_TRUE(cq.Next(&tag, &ok));
  EXPECT_EQ(rs.error_code(), StatusCode::UNIMPLEMENTED) << rs.error_message();
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  v1::Job out;
  ASSERT_TRUE(Submit(alice_, &out).ok());
  EXPECT_EQ(Submit(bob_, &out, 900).error_code(), StatusCode::PERMISSION_DENIED);
  const std::string audit = ReadAll(dir_ + "/data/audit.log");
  EXPECT_NE(audit.find(R"("principal":"alice")"), std::string::npos) << audit;
  EXPECT_NE(audit.find(R"("code":"PERMISSION_DENIED")"), std::string::npos) << audit;
  EXPECT_NE(audit.find(R"("method":"SubmitJob")"), std::string::npos) << audit;
  EXPECT_NE(audit.find(R"("job":")" + out.job_id() + "\""), std::string::npos) << audit;
}

}  // namespace
}  // namespace vsdm

namespace vsdm {
namespace {

// The tokens file is re-read on SIGHUP; a file that does not parse keeps the previous tokens.
TEST_F(AuthMatrixTest, SighupReReadsTheTokensAndABadFileKeepsThePreviousOnes) {
  v1::Job out;
  ASSERT_TRUE(Submit(bob_, &out).ok());
  auto hup_and_wait = [&](const std::string& expect_in_log) {
    kill(pid_, SIGHUP);
    for (int i = 0; i < 100; ++i) {
      if (ReadAll(dir_ + "/coordinator.log").find(expect_in_log) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  };
  // A broken file (a role that does not exist): bob keeps working.
  std::ofstream(dir_ + "/tokens") << kAlice << " alice user\n" << kBob << " bob superuser\n";
  ASSERT_TRUE(hup_and_wait("keeping the previous tokens")) << ReadAll(dir_ + "/coordinator.log");
  EXPECT_TRUE(Submit(bob_, &out).ok());
  // bob's token revoked.
  std::ofstream(dir_ + "/tokens") << kAlice << " alice user\n" << kAdmin << " root admin\n";
  ASSERT_TRUE(hup_and_wait("tokens re-read")) << ReadAll(dir_ + "/coordinator.log");
  EXPECT_EQ(Submit(bob_, &out).error_code(), StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(Submit(alice_, &out).ok());
}

}  // namespace
}  // namespace vsdm
