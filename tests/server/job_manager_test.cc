// The coordinator's state machine with a FakeClock (no sleeps): submit, list, cancel, watch,
// worker leases, failures and restarts, and recovery from the store.
#include "server/job_manager.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <future>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "proto/job_spec_proto.h"
#include "server/attempt_id.h"
#include "tests/server/stalling_store.h"

namespace vsdm::server {
namespace {

v1::JobSpec Spec(int trainers = 1, int max_restarts = 1) {
  v1::JobSpec s;
  s.set_name("t");
  s.mutable_resources()->set_trainers(trainers);
  s.mutable_resources()->set_max_restarts(max_restarts);
  return s;
}

class JobManagerTest : public ::testing::Test {
 protected:
  JobManagerOptions Options() {
    JobManagerOptions o;
    o.lease = absl::Seconds(10);
    o.restart_backoff = absl::Seconds(5);
    o.store_ports = ports_;
    o.log = [this](const std::string& line) { logs_.push_back(line); };
    // The tests jump the clock between ticks; the lease guards have tests of their own.
    o.stall_threshold = absl::InfiniteDuration();
    o.max_expire_fraction = 1.0;
    return o;
  }
  // A heartbeat of `id` listing `running` (attempt id, rank) as the ranks it runs.
  v1::HeartbeatResponse Beat(const std::string& id, const std::vector<std::pair<std::string, int>>& running) {
    v1::HeartbeatRequest r;
    r.set_worker_id(id);
    for (const auto& [attempt, rank] : running) {
      auto* rr = r.add_running();
      rr->set_attempt_id(attempt);
      rr->set_rank(rank);
    }
    auto resp = mgr_->Heartbeat(r, creds_[id]);
    EXPECT_TRUE(resp.ok()) << resp.status();
    return resp.ok() ? *resp : v1::HeartbeatResponse();
  }
  // One tick a second for `seconds` s, `workers` beating before each (a live cluster).
  void BeatAndTick(int seconds, const std::vector<std::string>& workers) {
    for (int i = 0; i < seconds; ++i) {
      clock_.Advance(absl::Seconds(1));
      for (const std::string& w : workers) Heartbeat(w);
      mgr_->Tick();
    }
  }
  // Ticks through `d` one second at a time (a live coordinator ticks often).
  void TickThrough(absl::Duration d) {
    for (absl::Duration t = absl::ZeroDuration(); t < d; t += absl::Seconds(1)) {
      clock_.Advance(absl::Seconds(1));
      mgr_->Tick();
    }
  }
  void Register(const std::string& id, int slots) {
    v1::RegisterRequest r;
    r.set_worker_id(id);
    r.mutable_resources()->set_slots(slots);
    r.mutable_resources()->set_host("h-" + id);
    ASSERT_TRUE(RegisterOk(r));
  }
  // Registers `r`, keeping the worker's session credential for its later calls.
  bool RegisterOk(const v1::RegisterRequest& r) {
    auto resp = mgr_->Register(r);
    EXPECT_TRUE(resp.ok()) << resp.status();
    if (!resp.ok()) return false;
    creds_[r.worker_id()] = resp->worker_credential();
    return true;
  }
  // The worker that holds rank 0 of `attempt_id`.
  std::string WorkerOfRank0(const std::string& attempt_id) {
    const v1::ListWorkersResponse workers = mgr_->Workers();
    for (const auto& w : workers.workers())
      for (const auto& rr : w.ranks())
        if (rr.attempt_id() == attempt_id && rr.rank() == 0) return w.worker_id();
    return "";
  }
  v1::HeartbeatResponse Heartbeat(const std::string& id) {
    v1::HeartbeatRequest r;
    r.set_worker_id(id);
    auto resp = mgr_->Heartbeat(r, creds_[id]);
    EXPECT_TRUE(resp.ok()) << resp.status();
    return resp.ok() ? *resp : v1::HeartbeatResponse();
  }
  v1::Job Submit(const v1::JobSpec& spec = Spec(), const std::string& rid = "") {
    auto j = mgr_->Submit(spec, rid, "alice");
    EXPECT_TRUE(j.ok()) << j.status();
    return j.ok() ? *j : v1::Job();
  }
  v1::JobState State(const std::string& id) { return mgr_->Get(id)->state(); }
  void Complete(const std::string& worker, const std::string& attempt, int rank, int code) {
    v1::CompleteRequest c;
    c.set_worker_id(worker);
    c.set_attempt_id(attempt);
    c.set_rank(rank);
    c.set_exit_code(code);
    const absl::Status s = mgr_->Complete(c, creds_[worker]);
    // Late news from an attempt that has ended is refused and changes nothing.
    ASSERT_TRUE(s.ok() || s.code() == absl::StatusCode::kFailedPrecondition) << s;
  }

  // The store ports of the attempts `w`'s heartbeat assigns, by attempt id.
  std::map<std::string, std::string> StoreAddrs(const std::string& w) {
    std::map<std::string, std::string> out;
    const v1::HeartbeatResponse hb = Heartbeat(w);
    for (const auto& a : hb.assignments()) out[a.attempt_id()] = a.store_addr();
    return out;
  }

  FakeClock clock_;
  InMemoryJobStore store_;
  PortRange ports_;  // set before mgr_ is (re)built to change the range
  std::vector<std::string> logs_;
  std::map<std::string, std::string> creds_;  // worker id -> its session credential
  std::unique_ptr<JobManager> mgr_ = std::make_unique<JobManager>(store_, clock_, Options());
};

TEST_F(JobManagerTest, SubmitIsIdempotentPerOwnerAndRequestIdAndBoundToTheSpec) {
  v1::Job a = Submit(Spec(), "req-1");
  v1::Job b = Submit(Spec(), "req-1");
  EXPECT_EQ(a.job_id(), b.job_id());
  // The same key with another spec is refused (AIP-155), and changes nothing.
  auto other = mgr_->Submit(Spec(2), "req-1", "alice");
  EXPECT_EQ(other.status().code(), absl::StatusCode::kAlreadyExists) << other.status();
  EXPECT_NE(other.status().message().find("request_id"), std::string::npos);
  // Keys are per owner: bob's req-1 is a job of its own, and does not see alice's.
  auto bobs = mgr_->Submit(Spec(), "req-1", "bob");
  ASSERT_TRUE(bobs.ok()) << bobs.status();
  EXPECT_NE(bobs->job_id(), a.job_id());
  EXPECT_EQ(bobs->owner(), "bob");
  v1::Job c = Submit(Spec(), "req-2");
  EXPECT_NE(c.job_id(), a.job_id());
  v1::Job d = Submit(Spec());
  v1::Job e = Submit(Spec());  // no request id: two jobs
  EXPECT_NE(d.job_id(), e.job_id());
  EXPECT_EQ(mgr_->List({})->jobs_size(), 5);  // a, bob's, c, d, e
}

TEST_F(JobManagerTest, ABadSpecIsRefusedNamingTheFieldAndNothingIsStored) {
  v1::JobSpec s = Spec();
  s.mutable_train()->set_batch_points(0);
  auto r = mgr_->Submit(s, "x", "alice");
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("spec.train.batch_points"), std::string::npos) << r.status();
  v1::JobSpec m = Spec();
  m.set_method("gan");
  EXPECT_NE(mgr_->Submit(m, "", "alice").status().message().find("spec.method"), std::string::npos);
  EXPECT_EQ(store_.LoadJobs()->size(), 0u);
  // Unset fields take their defaults.
  v1::Job j = Submit(v1::JobSpec());
  EXPECT_EQ(j.spec().train().batch_points(), 1024);
  EXPECT_EQ(j.spec().problem().dataset(), "spiral");
}

TEST_F(JobManagerTest, AFailedStoreWriteAcknowledgesNothingAndChangesNothing) {
  store_.FailWrites(true);
  EXPECT_EQ(mgr_->Submit(Spec(), "r", "alice").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(mgr_->List({})->jobs_size(), 0);
  store_.FailWrites(false);
  v1::Job j = Submit(Spec(), "r");
  store_.FailWrites(true);
  EXPECT_FALSE(mgr_->Cancel(j.job_id()).ok());
  EXPECT_EQ(State(j.job_id()), v1::JOB_STATE_QUEUED);
}

TEST_F(JobManagerTest, GangStartsOnlyWhenAllRanksFitAndAssignmentsReachTheAgents) {
  v1::Job j = Submit(Spec(/*trainers=*/2));
  Register("w1", 2);
  mgr_->Tick();
  EXPECT_EQ(State(j.job_id()), v1::JOB_STATE_QUEUED);
  EXPECT_NE(mgr_->Get(j.job_id())->pending_reason().find("needs 3 slots"), std::string::npos)
      << mgr_->Get(j.job_id())->pending_reason();
  Register("w2", 1);
  mgr_->Tick();
  v1::Job running = *mgr_->Get(j.job_id());
  EXPECT_EQ(running.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(running.attempts(), 1);
  auto a1 = Heartbeat("w1"), a2 = Heartbeat("w2");
  ASSERT_EQ(a1.assignments_size() + a2.assignments_size(), 3);
  std::set<int> ranks;
  for (const auto* hb : {&a1, &a2})
    for (const auto& a : hb->assignments()) {
      ranks.insert(a.rank());
      EXPECT_EQ(a.attempt_id(), j.job_id() + "/1");
      EXPECT_EQ(a.trainers(), 2);
      EXPECT_EQ(a.store_addr(), "h-w1:29500");  // rank 0 is on w1 (most free slots)
    }
  EXPECT_EQ(ranks, (std::set<int>{0, 1, 2}));
  // Sent again until the worker reports the ranks running (a lost response loses nothing).
  EXPECT_EQ(Heartbeat("w1").assignments_size(), a1.assignments_size());
  v1::HeartbeatRequest hb;
  hb.set_worker_id("w1");
  for (const auto& a : a1.assignments()) {
    auto* rr = hb.add_running();
    rr->set_attempt_id(a.attempt_id());
    rr->set_rank(a.rank());
  }
  EXPECT_EQ(mgr_->Heartbeat(hb, creds_["w1"])->assignments_size(), 0);
}

TEST_F(JobManagerTest, ALostWorkerRequeuesItsJobWithBackoffThenFailsAfterMaxRestarts) {
  v1::Job j = Submit(Spec(/*trainers=*/1, /*max_restarts=*/1));
  Register("w1", 1);
  Register("w2", 1);
  mgr_->Tick();
  ASSERT_EQ(State(j.job_id()), v1::JOB_STATE_RUNNING);
  // w2 goes silent; w1 keeps beating.
  for (int i = 0; i < 2; ++i) {
    clock_.Advance(absl::Seconds(6));
    Heartbeat("w1");
    mgr_->Tick();
  }
  v1::Job q = *mgr_->Get(j.job_id());
  EXPECT_EQ(q.state(), v1::JOB_STATE_QUEUED);
  EXPECT_NE(q.message().find("worker w2"), std::string::npos) << q.message();
  // The other member of the gang is told to abort.
  v1::HeartbeatResponse hb = Heartbeat("w1");
  ASSERT_EQ(hb.abort_attempts_size(), 1);
  EXPECT_EQ(hb.abort_attempts(0), j.job_id() + "/1");
  // Back-off: not restarted before 5 s even with room.
  Register("w2", 1);
  mgr_->Tick();
  EXPECT_EQ(State(j.job_id()), v1::JOB_STATE_QUEUED);
  EXPECT_NE(mgr_->Get(j.job_id())->pending_reason().find("restart backoff"), std::string::npos);
  clock_.Advance(absl::Seconds(5));
  Heartbeat("w1");
  Heartbeat("w2");
  mgr_->Tick();
  v1::Job second = *mgr_->Get(j.job_id());
  ASSERT_EQ(second.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(second.attempts(), 2);
  // Recovery phases: w2 last beat at t = 0, lost at t = 12 (detect 12 s); requeued at 12, restarted
  // at 17 (reschedule 5 s); first progress of attempt 2 at t = 20 (resume 3 s).
  clock_.Advance(absl::Seconds(3));
  v1::ReportRequest rep;
  rep.set_attempt_id(j.job_id() + "/2");
  rep.set_worker_id(WorkerOfRank0(rep.attempt_id()));
  rep.mutable_progress()->set_round(1);
  ASSERT_TRUE(mgr_->Report(rep, creds_[rep.worker_id()]).ok());
  auto phases = mgr_->TakeStats().recovery;
  ASSERT_EQ(phases.size(), 3u);
  EXPECT_EQ(phases[0].first, "detect");
  EXPECT_DOUBLE_EQ(phases[0].second, 12.0);
  EXPECT_EQ(phases[1].first, "reschedule");
  EXPECT_DOUBLE_EQ(phases[1].second, 5.0);
  EXPECT_EQ(phases[2].first, "resume");
  EXPECT_DOUBLE_EQ(phases[2].second, 3.0);
  // The second attempt fails too (a rank exits non-zero): no restarts left.
  Complete("w2", j.job_id() + "/2", 1, 3);
  v1::Job failed = *mgr_->Get(j.job_id());
  EXPECT_EQ(failed.state(), v1::JOB_STATE_FAILED);
  EXPECT_NE(failed.message().find("no restarts left (max_restarts 1)"), std::string::npos) << failed.message();
  EXPECT_NE(failed.message().find("exited with code 3"), std::string::npos);
  auto stats = mgr_->TakeStats();
  EXPECT_EQ(stats.restarts, 1);
  EXPECT_EQ(stats.restarts_by_cause["lease_lost"], 1);
  ASSERT_EQ(stats.finished.size(), 1u);
  EXPECT_EQ(stats.finished[0].first, "failed");
}

TEST_F(JobManagerTest, RankZeroExitingCleanlySucceedsTheJobAndStaleReportsAreIgnored) {
  v1::Job j = Submit(Spec(1));
  Register("w", 2);
  mgr_->Tick();
  const std::string att = j.job_id() + "/1";
  Complete("w", att, 1, 0);
  EXPECT_EQ(State(j.job_id()), v1::JOB_STATE_RUNNING);
  v1::CompleteRequest c;
  c.set_worker_id("w");
  c.set_attempt_id(att);
  c.set_rank(0);
  (*c.mutable_metrics())["energy_distance"] = 0.04;
  ASSERT_TRUE(mgr_->Complete(c, creds_["w"]).ok());
  v1::Job done = *mgr_->Get(j.job_id());
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_DOUBLE_EQ(done.progress().metrics().at("energy_distance"), 0.04);
  Complete("w", att, 1, 9);  // late news from an ended attempt
  EXPECT_EQ(State(j.job_id()), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(mgr_->TakeStats().jobs_by_state[v1::JOB_STATE_SUCCEEDED], 1);
}

TEST_F(JobManagerTest, CancelInEveryState) {
  Register("w", 2);
  v1::Job queued = Submit(Spec(3));  // needs 4 slots: stays queued
  v1::Job running = Submit(Spec(1));
  mgr_->Tick();
  ASSERT_EQ(State(running.job_id()), v1::JOB_STATE_RUNNING);
  ASSERT_EQ(State(queued.job_id()), v1::JOB_STATE_QUEUED);
  Heartbeat("w");  // takes the assignments
  EXPECT_EQ(mgr_->Cancel(queued.job_id())->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(mgr_->Cancel(running.job_id())->state(), v1::JOB_STATE_CANCELLED);
  auto hb = Heartbeat("w");
  ASSERT_EQ(hb.abort_attempts_size(), 1);
  EXPECT_EQ(hb.abort_attempts(0), running.job_id() + "/1");
  EXPECT_EQ(mgr_->Cancel(running.job_id()).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(mgr_->Cancel(running.job_id()).status().message().find("already CANCELLED"), std::string::npos);
  // Succeeded and failed jobs cannot be cancelled either.
  v1::Job s = Submit(Spec(1, 0));
  mgr_->Tick();
  Complete("w", s.job_id() + "/1", 0, 0);
  EXPECT_EQ(mgr_->Cancel(s.job_id()).status().code(), absl::StatusCode::kFailedPrecondition);
  v1::Job f = Submit(Spec(1, 0));
  mgr_->Tick();
  Complete("w", f.job_id() + "/1", 1, 1);
  ASSERT_EQ(State(f.job_id()), v1::JOB_STATE_FAILED);
  EXPECT_EQ(mgr_->Cancel(f.job_id()).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(mgr_->Cancel("job-nope").status().code(), absl::StatusCode::kNotFound);
  // The freed slots go to the next job.
  EXPECT_EQ(mgr_->TakeStats().jobs_by_state[v1::JOB_STATE_CANCELLED], 2);
}

TEST_F(JobManagerTest, PaginationEdges) {
  std::vector<std::string> ids;
  for (int i = 0; i < 7; ++i) {
    ids.push_back(Submit().job_id());
    clock_.Advance(absl::Milliseconds(1));
  }
  v1::ListJobsRequest req;
  req.set_page_size(3);
  std::vector<std::string> seen;
  for (int page = 0; page < 5; ++page) {
    auto resp = mgr_->List(req);
    ASSERT_TRUE(resp.ok()) << resp.status();
    for (const auto& j : resp->jobs()) seen.push_back(j.job_id());
    if (resp->next_page_token().empty()) break;
    req.set_page_token(resp->next_page_token());
  }
  std::vector<std::string> newest_first(ids.rbegin(), ids.rend());
  EXPECT_EQ(seen, newest_first);
  // page_size 0 = the default (50 > 7: one page, no token); over the max is capped.
  v1::ListJobsRequest zero;
  EXPECT_EQ(mgr_->List(zero)->jobs_size(), 7);
  EXPECT_TRUE(mgr_->List(zero)->next_page_token().empty());
  v1::ListJobsRequest huge;
  huge.set_page_size(1 << 30);
  EXPECT_EQ(mgr_->List(huge)->jobs_size(), 7);
  v1::ListJobsRequest neg;
  neg.set_page_size(-1);
  EXPECT_NE(mgr_->List(neg).status().message().find("page_size"), std::string::npos);
  v1::ListJobsRequest bad;
  bad.set_page_token("not-a-token");
  EXPECT_EQ(mgr_->List(bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(mgr_->List(bad).status().message().find("page_token"), std::string::npos);
  // A token from before new submits still continues where it was (new jobs are newer).
  v1::ListJobsRequest first;
  first.set_page_size(2);
  std::string token = mgr_->List(first)->next_page_token();
  Submit();
  v1::ListJobsRequest next;
  next.set_page_size(2);
  next.set_page_token(token);
  auto resp = mgr_->List(next);
  ASSERT_EQ(resp->jobs_size(), 2);
  EXPECT_EQ(resp->jobs(0).job_id(), newest_first[2]);
  // Filters.
  v1::ListJobsRequest by_state;
  by_state.set_state(v1::JOB_STATE_RUNNING);
  EXPECT_EQ(mgr_->List(by_state)->jobs_size(), 0);
  v1::ListJobsRequest by_owner;
  by_owner.set_owner("bob");
  EXPECT_EQ(mgr_->List(by_owner)->jobs_size(), 0);
}

TEST_F(JobManagerTest, WatchReplaysThenStreamsEveryEventOnce) {
  v1::Job j = Submit(Spec(1));
  std::vector<v1::JobEvent> got, replay;
  auto sub = mgr_->Watch(
      j.job_id(), 0, [&](const v1::JobEvent& e) { got.push_back(e); }, &replay);
  ASSERT_TRUE(sub.ok());
  ASSERT_EQ(replay.size(), 1u);
  EXPECT_EQ(replay[0].kind(), "submitted");
  Register("w", 2);
  mgr_->Tick();
  // 3 rounds of 100 steps at 50 steps/s = 6 s of useful training in 12 s since submit.
  clock_.Advance(absl::Seconds(12));
  v1::ReportRequest rep;
  rep.set_attempt_id(j.job_id() + "/1");
  rep.mutable_progress()->set_round(3);
  rep.mutable_progress()->set_steps_per_second(50);
  rep.set_worker_id("w");
  ASSERT_TRUE(mgr_->Report(rep, creds_["w"]).ok());
  EXPECT_NEAR(mgr_->Get(j.job_id())->progress().goodput_ratio(), 0.5, 1e-9);
  EXPECT_NEAR(mgr_->TakeStats().goodput[j.job_id()], 0.5, 1e-9);
  Complete("w", j.job_id() + "/1", 0, 0);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].kind(), "scheduled");
  EXPECT_EQ(got[0].sequence(), 2);
  EXPECT_EQ(got[1].kind(), "progress");
  EXPECT_EQ(got[1].progress().round(), 3);
  EXPECT_EQ(got[2].kind(), "succeeded");
  EXPECT_EQ(got[2].state(), v1::JOB_STATE_SUCCEEDED);
  mgr_->Unwatch(*sub);
  std::vector<v1::JobEvent> replay2;
  ASSERT_TRUE(mgr_->Watch(
                      j.job_id(), 1, [](const v1::JobEvent&) {}, &replay2)
                  .ok());
  ASSERT_EQ(replay2.size(), 2u);  // stored events after 1: scheduled, succeeded
  EXPECT_EQ(mgr_->Watch(
                    "job-x", 0, [](const v1::JobEvent&) {}, &replay2)
                .status()
                .code(),
            absl::StatusCode::kNotFound);
}

TEST_F(JobManagerTest, ARestartedManagerReloadsJobsAndRunningAttemptsWaitForTheirAgents) {
  v1::Job q = Submit(Spec(4), "keep-me");
  v1::Job r = Submit(Spec(1));
  v1::Job gone = Submit(Spec(1));
  Register("w1", 2);
  Register("w2", 2);
  mgr_->Tick();
  ASSERT_EQ(State(r.job_id()), v1::JOB_STATE_RUNNING);
  ASSERT_EQ(State(gone.job_id()), v1::JOB_STATE_RUNNING);
  // The coordinator restarts on the same store.
  mgr_ = std::make_unique<JobManager>(store_, clock_, Options());
  ASSERT_TRUE(mgr_->Recover().ok());
  EXPECT_EQ(State(q.job_id()), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(Submit(Spec(4), "keep-me").job_id(), q.job_id());  // idempotency survives
  EXPECT_NE(Submit().job_id(), gone.job_id());                // ids are not reused
  // w1 re-registers with the ranks of r it still runs; nobody reports `gone`'s ranks.
  v1::RegisterRequest reg;
  reg.set_worker_id("w1");
  reg.mutable_resources()->set_slots(2);
  for (int rank : {0, 1}) {
    auto* rr = reg.add_running();
    rr->set_attempt_id(r.job_id() + "/1");
    rr->set_rank(rank);
  }
  ASSERT_TRUE(RegisterOk(reg));
  Register("w2", 2);
  mgr_->Tick();
  EXPECT_EQ(State(r.job_id()), v1::JOB_STATE_RUNNING);
  clock_.Advance(Options().recovery_grace);
  Beat("w1", {{r.job_id() + "/1", 0}, {r.job_id() + "/1", 1}});  // a heartbeat lists what it runs
  Heartbeat("w2");
  mgr_->Tick();
  EXPECT_EQ(State(r.job_id()), v1::JOB_STATE_RUNNING);
  v1::Job requeued = *mgr_->Get(gone.job_id());
  EXPECT_EQ(requeued.state(), v1::JOB_STATE_QUEUED);
  EXPECT_NE(requeued.message().find("coordinator restart"), std::string::npos) << requeued.message();
}

TEST_F(JobManagerTest, LiveAttemptsGetDistinctStorePortsEvenOnOneHostAndEndingOneFreesItsPort) {
  ports_ = {41000, 41001};
  mgr_ = std::make_unique<JobManager>(store_, clock_, Options());
  // Two workers on the same host (a local cluster): their stores must not share a port.
  for (const char* w : {"w1", "w2"}) {
    v1::RegisterRequest r;
    r.set_worker_id(w);
    r.mutable_resources()->set_slots(2);
    r.mutable_resources()->set_host("127.0.0.1");
    ASSERT_TRUE(RegisterOk(r));
  }
  v1::Job a = Submit(Spec(1)), b = Submit(Spec(1));
  mgr_->Tick();
  ASSERT_EQ(State(a.job_id()), v1::JOB_STATE_RUNNING);
  ASSERT_EQ(State(b.job_id()), v1::JOB_STATE_RUNNING);
  std::map<std::string, std::string> addrs = StoreAddrs("w1");
  for (const auto& [id, addr] : StoreAddrs("w2")) addrs[id] = addr;
  ASSERT_EQ(addrs.size(), 2u);
  EXPECT_EQ(addrs[a.job_id() + "/1"], "127.0.0.1:41000");
  EXPECT_EQ(addrs[b.job_id() + "/1"], "127.0.0.1:41001");
  // a ends; the next job gets its port (the only free one), not a held one.
  ASSERT_TRUE(mgr_->Cancel(a.job_id()).ok());
  v1::Job c = Submit(Spec(1));
  mgr_->Tick();
  ASSERT_EQ(State(c.job_id()), v1::JOB_STATE_RUNNING);
  addrs = StoreAddrs("w1");
  for (const auto& [id, addr] : StoreAddrs("w2")) addrs[id] = addr;
  EXPECT_EQ(addrs[c.job_id() + "/1"], "127.0.0.1:41000");
  EXPECT_TRUE(logs_.empty());
}

TEST_F(JobManagerTest, WhenEveryStorePortIsHeldTheStartWaitsWithAReasonAndALogLine) {
  ports_ = {41000, 41000};
  mgr_ = std::make_unique<JobManager>(store_, clock_, Options());
  Register("w", 8);
  v1::Job a = Submit(Spec(1)), b = Submit(Spec(1));
  mgr_->Tick();
  mgr_->Tick();  // logged once, not every pass
  ASSERT_EQ(State(a.job_id()), v1::JOB_STATE_RUNNING);
  v1::Job waiting = *mgr_->Get(b.job_id());
  EXPECT_EQ(waiting.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(waiting.attempts(), 0);
  EXPECT_NE(waiting.pending_reason().find("--store-port-range 41000-41000"), std::string::npos)
      << waiting.pending_reason();
  EXPECT_EQ(mgr_->TakeStats().pending_by_kind[PendingKind::kNoStorePort], 1);
  ASSERT_EQ(logs_.size(), 1u);
  EXPECT_NE(logs_[0].find(b.job_id()), std::string::npos) << logs_[0];
  // Nothing of it was booked: the worker holds a's two ranks only.
  EXPECT_EQ(mgr_->Workers().workers(0).ranks_size(), 2);
  // a succeeds: its port goes to b.
  Complete("w", a.job_id() + "/1", 0, 0);
  mgr_->Tick();
  ASSERT_EQ(State(b.job_id()), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(StoreAddrs("w")[b.job_id() + "/1"], "h-w:41000");
}

TEST_F(JobManagerTest, AFailedStartWriteReleasesTheStorePortAndTheSlots) {
  ports_ = {41000, 41000};
  mgr_ = std::make_unique<JobManager>(store_, clock_, Options());
  Register("w", 2);
  v1::Job j = Submit(Spec(1));
  store_.FailWrites(true);
  mgr_->Tick();
  EXPECT_EQ(State(j.job_id()), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(mgr_->Workers().workers(0).ranks_size(), 0);
  store_.FailWrites(false);
  mgr_->Tick();
  EXPECT_EQ(State(j.job_id()), v1::JOB_STATE_RUNNING);  // the one port was not left held
  EXPECT_EQ(mgr_->Workers().workers(0).ranks_size(), 2);
}

TEST_F(JobManagerTest, ARestartedManagerKeepsTheStorePortOfARecoveredAttempt) {
  ports_ = {41000, 41001};
  mgr_ = std::make_unique<JobManager>(store_, clock_, Options());
  Register("w1", 2);
  v1::Job old = Submit(Spec(1));
  mgr_->Tick();
  ASSERT_EQ(StoreAddrs("w1")[old.job_id() + "/1"], "h-w1:41000");
  mgr_ = std::make_unique<JobManager>(store_, clock_, Options());
  ASSERT_TRUE(mgr_->Recover().ok());
  Register("w2", 2);
  v1::Job fresh = Submit(Spec(1));
  mgr_->Tick();
  ASSERT_EQ(State(fresh.job_id()), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(StoreAddrs("w2")[fresh.job_id() + "/1"], "h-w2:41001") << "41000 is still old's";
}

// A worker that re-registers after a coordinator restart reporting more ranks than it has
// slots: the rank that cannot be booked is not taken back (before, the failed Assign was
// ignored, the rank counted as placed and the job stayed RUNNING with it booked nowhere).
TEST_F(JobManagerTest, ARankThatCannotBeBookedOnReRegisterIsAbortedAndTheAttemptFailsItsRecovery) {
  v1::Job j = Submit(Spec(1));
  Register("w1", 2);
  mgr_->Tick();
  ASSERT_EQ(State(j.job_id()), v1::JOB_STATE_RUNNING);
  mgr_ = std::make_unique<JobManager>(store_, clock_, Options());
  ASSERT_TRUE(mgr_->Recover().ok());
  v1::RegisterRequest reg;
  reg.set_worker_id("w1");
  reg.mutable_resources()->set_slots(1);  // restarted with fewer slots, still running both ranks
  for (int rank : {0, 1}) {
    auto* rr = reg.add_running();
    rr->set_attempt_id(j.job_id() + "/1");
    rr->set_rank(rank);
  }
  ASSERT_TRUE(RegisterOk(reg));
  ASSERT_EQ(logs_.size(), 1u);
  EXPECT_NE(logs_[0].find("rank 1 of " + j.job_id() + "/1"), std::string::npos) << logs_[0];
  v1::ListWorkersResponse workers = mgr_->Workers();
  ASSERT_EQ(workers.workers(0).ranks_size(), 1);
  EXPECT_EQ(workers.workers(0).ranks(0).rank(), 0);
  v1::HeartbeatResponse hb = Beat("w1", {{j.job_id() + "/1", 0}, {j.job_id() + "/1", 1}});
  ASSERT_EQ(hb.abort_attempts_size(), 1);
  EXPECT_EQ(hb.abort_attempts(0), j.job_id() + "/1");
  clock_.Advance(Options().recovery_grace);
  Beat("w1", {{j.job_id() + "/1", 0}});  // rank 1 stopped
  mgr_->Tick();
  v1::Job requeued = *mgr_->Get(j.job_id());
  EXPECT_EQ(requeued.state(), v1::JOB_STATE_QUEUED);
  EXPECT_NE(requeued.message().find("coordinator restart"), std::string::npos) << requeued.message();
}

TEST_F(JobManagerTest, AssignmentsCarryTheAttemptIdThatParsesBackToTheJob) {
  v1::Job j = Submit(Spec(1));
  Register("w", 2);
  mgr_->Tick();
  v1::HeartbeatResponse hb = Heartbeat("w");
  ASSERT_EQ(hb.assignments_size(), 2);
  std::optional<AttemptRef> ref = ParseAttemptId(hb.assignments(0).attempt_id());
  ASSERT_TRUE(ref.has_value());
  EXPECT_EQ(ref->job_id, j.job_id());
  EXPECT_EQ(ref->attempt, 1);
  v1::UploadArtifactRequest up;
  up.set_worker_id("w");
  up.set_attempt_id(hb.assignments(0).attempt_id());
  EXPECT_EQ(*mgr_->UploadTarget(up, creds_["w"]), j.job_id());
  up.set_attempt_id(j.job_id() + "/01");
  EXPECT_EQ(mgr_->UploadTarget(up, creds_["w"]).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(AttemptIdTest, MakeAndParseRoundTrip) {
  EXPECT_EQ(MakeAttemptId("job-00000007", 2), "job-00000007/2");
  for (const auto& [job, n] : std::vector<std::pair<std::string, int>>{{"job-00000007", 2}, {"a/b", 11}, {"x", 1}}) {
    std::optional<AttemptRef> ref = ParseAttemptId(MakeAttemptId(job, n));
    ASSERT_TRUE(ref.has_value()) << job;
    EXPECT_EQ(ref->job_id, job);
    EXPECT_EQ(ref->attempt, n);
  }
}

TEST(AttemptIdTest, ParseRefusesWhatMakeCannotBuild) {
  for (const char* bad : {"", "job-1", "job-1/", "/3", "job-1/0", "job-1/-2", "job-1/+2", "job-1/02", "job-1/2x",
                          "job-1/ 2", "job-1/99999999999"}) {
    EXPECT_FALSE(ParseAttemptId(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace vsdm::server

namespace vsdm::server {
namespace {

// Review finding C3: what a Register may claim.
TEST_F(JobManagerTest, RegisterRefusesOutOfBoundResourcesAndHostsThatAreNotAddresses) {
  auto refused = [&](const std::function<void(v1::RegisterRequest&)>& edit, const std::string& field) {
    v1::RegisterRequest r;
    r.set_worker_id("w");
    r.mutable_resources()->set_slots(1);
    r.mutable_resources()->set_host("10.0.0.1");
    edit(r);
    auto resp = mgr_->Register(r);
    EXPECT_EQ(resp.status().code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_NE(resp.status().message().find(field), std::string::npos) << resp.status();
  };
  refused([](auto& r) { r.mutable_resources()->set_slots(2147483647); }, "resources.slots");
  refused([](auto& r) { r.mutable_resources()->set_slots(0); }, "resources.slots");
  refused([](auto& r) { r.mutable_resources()->set_memory_bytes(-1); }, "resources.memory_bytes");
  refused([](auto& r) { r.mutable_resources()->set_devices(-3); }, "resources.devices");
  refused([](auto& r) { r.mutable_resources()->set_host("--store=evil:1"); }, "resources.host");
  refused([](auto& r) { r.mutable_resources()->set_host("a b"); }, "resources.host");
  refused([](auto& r) { r.mutable_resources()->set_host("10.0.0.1:29500"); }, "resources.host");
  refused([](auto& r) { r.set_worker_id(std::string(100000, 'x')); }, "worker_id");
  refused([](auto& r) { r.set_worker_id("../etc"); }, "worker_id");
  EXPECT_TRUE(mgr_->Workers().workers().empty());
  for (const char* host : {"node-7.cluster.local", "192.168.1.20", "[fe80::1]", ""}) {
    v1::RegisterRequest r;
    r.set_worker_id("ok");
    r.mutable_resources()->set_slots(1);
    r.mutable_resources()->set_host(host);
    EXPECT_TRUE(mgr_->Register(r).ok()) << host;
  }
}

// C3: an id is bound to who registered it; an impostor can neither re-register it nor beat for it.
TEST_F(JobManagerTest, AWorkerIdIsBoundToItsPrincipalAndOnlyItsCurrentCredentialSpeaksForIt) {
  v1::Job j = Submit(Spec(1));
  v1::RegisterRequest r;
  r.set_worker_id("w");
  r.mutable_resources()->set_slots(2);
  auto first = mgr_->Register(r, "node-a");
  ASSERT_TRUE(first.ok());
  mgr_->Tick();
  ASSERT_EQ(State(j.job_id()), v1::JOB_STATE_RUNNING);
  // Another principal may not take the id over, even with more slots.
  r.mutable_resources()->set_slots(4096);
  EXPECT_EQ(mgr_->Register(r, "node-b").status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(mgr_->Workers().workers(0).resources().slots(), 2);
  // A heartbeat without the credential (or with another) is refused and drains nothing.
  v1::HeartbeatRequest hb;
  hb.set_worker_id("w");
  EXPECT_EQ(mgr_->Heartbeat(hb, "").status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(mgr_->Heartbeat(hb, "0123456789abcdef0123456789abcdef").status().code(),
            absl::StatusCode::kPermissionDenied);
  auto real = mgr_->Heartbeat(hb, first->worker_credential());
  ASSERT_TRUE(real.ok());
  EXPECT_EQ(real->assignments_size(), 2);  // still there for the real worker
  // Re-registering (same principal: an agent restart) issues a new credential, revoking the old.
  r.mutable_resources()->set_slots(2);
  auto again = mgr_->Register(r, "node-a");
  ASSERT_TRUE(again.ok());
  EXPECT_NE(again->worker_credential(), first->worker_credential());
  EXPECT_EQ(mgr_->Heartbeat(hb, first->worker_credential()).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(mgr_->Heartbeat(hb, again->worker_credential()).ok());
}

// C2: Complete and UploadArtifact only from the worker holding the rank; ranks range-checked.
TEST_F(JobManagerTest, ForgedCompletesAndUploadsAreRefusedAndChangeNothing) {
  v1::Job j = Submit(Spec(1));
  Register("w1", 2);  // both ranks land here
  mgr_->Tick();
  Register("w2", 2);
  const std::string attempt = j.job_id() + "/1";
  ASSERT_EQ(WorkerOfRank0(attempt), "w1");
  auto complete = [&](const std::string& as_worker, const std::string& cred, int rank, int code) {
    v1::CompleteRequest c;
    c.set_worker_id(as_worker);
    c.set_attempt_id(attempt);
    c.set_rank(rank);
    c.set_exit_code(code);
    (*c.mutable_metrics())["energy_distance"] = 0.0;
    return mgr_->Complete(c, cred).code();
  };
  // w2 forges success and failure for ranks it does not hold; ranks out of range; w1's id with
  // w2's credential.
  EXPECT_EQ(complete("w2", creds_["w2"], 0, 0), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(complete("w2", creds_["w2"], 1, 3), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(complete("w1", creds_["w2"], 0, 0), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(complete("w1", creds_["w1"], 7, 0), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(complete("w1", creds_["w1"], -1, 1), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(State(j.job_id()), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(mgr_->Get(j.job_id())->attempts(), 1);
  v1::UploadArtifactRequest up;
  up.set_worker_id("w2");
  up.set_attempt_id(attempt);
  EXPECT_EQ(mgr_->UploadTarget(up, creds_["w2"]).status().code(), absl::StatusCode::kFailedPrecondition);
  up.set_worker_id("w1");
  EXPECT_EQ(mgr_->UploadTarget(up, creds_["w2"]).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(mgr_->UploadTarget(up, creds_["w1"]).ok());
  // The real rank 0 succeeds.
  EXPECT_EQ(complete("w1", creds_["w1"], 0, 0), absl::StatusCode::kOk);
  EXPECT_EQ(State(j.job_id()), v1::JOB_STATE_SUCCEEDED);
}

// L3 / C2: progress is validated, monotonic within an attempt, and only from rank 0's worker.
TEST_F(JobManagerTest, ProgressMustComeFromRankZerosWorkerBeInRangeAndNeverGoBack) {
  v1::JobSpec spec = Spec(1);
  spec.mutable_train()->set_rounds(10);
  v1::Job j = Submit(spec);
  Register("w1", 2);
  mgr_->Tick();
  Register("w2", 2);
  auto report = [&](const std::string& w, int64_t round, double loss = 1.0) {
    v1::ReportRequest rep;
    rep.set_worker_id(w);
    rep.set_attempt_id(j.job_id() + "/1");
    rep.set_rank(0);
    rep.mutable_progress()->set_round(round);
    rep.mutable_progress()->set_loss(loss);
    return mgr_->Report(rep, creds_[w]).code();
  };
  EXPECT_EQ(report("w1", 4), absl::StatusCode::kOk);
  EXPECT_EQ(report("w2", 9), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(report("w1", 3), absl::StatusCode::kInvalidArgument);   // regression
  EXPECT_EQ(report("w1", 11), absl::StatusCode::kInvalidArgument);  // past rounds
  EXPECT_EQ(report("w1", 5, std::nan("")), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(mgr_->Get(j.job_id())->progress().round(), 4);
}

// M1: a rank's exit message is kept to its last 4 KiB.
TEST_F(JobManagerTest, AHugeExitMessageIsStoredAsItsLastFourKibibytes) {
  v1::Job j = Submit(Spec(1, /*max_restarts=*/0));
  Register("w", 2);
  mgr_->Tick();
  v1::CompleteRequest c;
  c.set_worker_id("w");
  c.set_attempt_id(j.job_id() + "/1");
  c.set_rank(1);
  c.set_exit_code(1);
  c.set_message(std::string(4 << 20, 'x') + "\x1b[2Jthe end");
  ASSERT_TRUE(mgr_->Complete(c, creds_["w"]).ok());
  v1::Job failed = *mgr_->Get(j.job_id());
  EXPECT_EQ(failed.state(), v1::JOB_STATE_FAILED);
  EXPECT_LT(failed.message().size(), 4400u);
  EXPECT_NE(failed.message().find("the end"), std::string::npos);
  EXPECT_EQ(failed.message().find('\x1b'), std::string::npos);  // no terminal escapes
}

// H1: every attempt's ranks get one random rendezvous secret, a new one per attempt.
TEST_F(JobManagerTest, EachAttemptsAssignmentsCarryItsOwnRandomRendezvousSecret) {
  v1::Job j = Submit(Spec(1));
  Register("w", 2);
  mgr_->Tick();
  v1::HeartbeatResponse hb = Heartbeat("w");
  ASSERT_EQ(hb.assignments_size(), 2);
  const std::string secret = hb.assignments(0).rendezvous_secret();
  EXPECT_EQ(secret.size(), 32u);
  EXPECT_EQ(hb.assignments(1).rendezvous_secret(), secret);
  Complete("w", j.job_id() + "/1", 1, 1);  // attempt 1 fails; attempt 2 after the backoff
  clock_.Advance(absl::Seconds(6));
  Heartbeat("w");
  mgr_->Tick();
  hb = Heartbeat("w");
  ASSERT_GE(hb.assignments_size(), 1);
  EXPECT_EQ(hb.assignments(0).attempt_id(), j.job_id() + "/2");
  EXPECT_EQ(hb.assignments(0).rendezvous_secret().size(), 32u);
  EXPECT_NE(hb.assignments(0).rendezvous_secret(), secret);
}

// M1 / C1: the per-owner queue quota.
TEST_F(JobManagerTest, TheQueueQuotaIsPerOwnerAndNamesItself) {
  JobManagerOptions o = Options();
  o.max_queued_per_owner = 2;
  mgr_ = std::make_unique<JobManager>(store_, clock_, o);
  ASSERT_TRUE(mgr_->Submit(Spec(), "", "alice").ok());
  ASSERT_TRUE(mgr_->Submit(Spec(), "", "alice").ok());
  auto third = mgr_->Submit(Spec(), "", "alice");
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(third.status().message().find("max-queued-per-owner"), std::string::npos);
  EXPECT_TRUE(mgr_->Submit(Spec(), "", "bob").ok());
}

// C1: a scope hides other owners' jobs as NOT_FOUND, with the message of a missing job.
TEST_F(JobManagerTest, AScopedCallerSeesOnlyItsOwnJobsAndOthersAreNotFound) {
  v1::Job a = *mgr_->Submit(Spec(), "", "alice");
  v1::Job b = *mgr_->Submit(Spec(), "", "bob");
  const JobScope bob{std::string("bob")};
  EXPECT_EQ(mgr_->Get(a.job_id(), bob).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(mgr_->Get(a.job_id(), bob).status().message(), "job " + a.job_id() + " not found");
  EXPECT_EQ(mgr_->Cancel(a.job_id(), bob).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(State(a.job_id()), v1::JOB_STATE_QUEUED);
  v1::ListJobsRequest all;
  all.set_owner("alice");  // a filter cannot widen the scope
  EXPECT_EQ(mgr_->List(all, bob)->jobs_size(), 0);
  EXPECT_EQ(mgr_->List({}, bob)->jobs_size(), 1);
  EXPECT_TRUE(mgr_->Cancel(b.job_id(), bob).ok());
  // M2: a 4 MiB id is not echoed back (a few dozen characters, no control characters).
  const std::string huge(4 << 20, '\x1b');
  const absl::Status nf = mgr_->Get(huge).status();
  EXPECT_EQ(nf.code(), absl::StatusCode::kNotFound);
  EXPECT_LT(nf.message().size(), 160u) << nf.message().size();
  EXPECT_EQ(nf.message().find('\x1b'), std::string::npos);
}

}  // namespace
}  // namespace vsdm::server

namespace vsdm::server {
namespace {

// M1: finished jobs are kept up to a limit; the oldest go, with their events, from the store too.
TEST_F(JobManagerTest, RetentionDeletesTheOldestFinishedJobsBeyondTheLimitAndNeverAQueuedOne) {
  JobManagerOptions o = Options();
  o.retain_finished = 2;
  mgr_ = std::make_unique<JobManager>(store_, clock_, o);
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    ids.push_back(mgr_->Submit(Spec(), "r" + std::to_string(i), "alice")->job_id());
    clock_.Advance(absl::Seconds(1));
    ASSERT_TRUE(mgr_->Cancel(ids.back()).ok());
  }
  const std::string queued = mgr_->Submit(Spec(), "", "alice")->job_id();
  mgr_->Tick();
  EXPECT_EQ(mgr_->Get(ids[0]).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(mgr_->Get(ids[1]).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(mgr_->Get(ids[2]).ok());
  EXPECT_TRUE(mgr_->Get(ids[3]).ok());
  EXPECT_EQ(State(queued), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(store_.LoadJobs()->size(), 3u);
  EXPECT_TRUE(store_.LoadEvents(ids[0], 0)->empty());
  // A pruned job's idempotency key is free again; a kept one's still returns its job.
  EXPECT_NE(mgr_->Submit(Spec(), "r0", "alice")->job_id(), ids[0]);
  EXPECT_EQ(mgr_->Submit(Spec(), "r3", "alice")->job_id(), ids[3]);
}

}  // namespace
}  // namespace vsdm::server

namespace vsdm::server {
namespace {

// M4: Recover validates stored specs again; one that does not pass fails its job, no crash.
TEST_F(JobManagerTest, RecoverFailsAJobWhoseStoredSpecNoLongerValidates) {
  v1::Job ok = Submit(Spec(1));
  StoredJob bad;
  bad.job.set_job_id("job-00000077");
  bad.job.set_state(v1::JOB_STATE_RUNNING);
  bad.job.set_attempts(1);
  *bad.job.mutable_spec() = Spec(1);
  bad.job.mutable_spec()->mutable_resources()->set_trainers(2000000000);  // a bit flip
  ASSERT_TRUE(store_.Write({{bad}, {}, {}}).ok());
  mgr_ = std::make_unique<JobManager>(store_, clock_, Options());
  ASSERT_TRUE(mgr_->Recover().ok());
  v1::Job j = *mgr_->Get("job-00000077");
  EXPECT_EQ(j.state(), v1::JOB_STATE_FAILED);
  EXPECT_NE(j.message().find("resources.trainers"), std::string::npos) << j.message();
  EXPECT_EQ(State(ok.job_id()), v1::JOB_STATE_QUEUED);
  Register("w", 2);
  mgr_->Tick();
  EXPECT_EQ(State(ok.job_id()), v1::JOB_STATE_RUNNING);
}

}  // namespace
}  // namespace vsdm::server

namespace vsdm::server {
namespace {

// H2: the coordinator applies its configured per-rank memory bound to what is submitted.
TEST_F(JobManagerTest, TheConfiguredRankMemoryLimitRefusesASpecNamingTheFieldsThatDriveIt) {
  JobManagerOptions o = Options();
  o.spec_limits.max_rank_memory_bytes = int64_t{1} << 30;  // 1 GiB
  mgr_ = std::make_unique<JobManager>(store_, clock_, o);
  EXPECT_TRUE(mgr_->Submit(Spec(), "", "alice").ok());
  v1::JobSpec big = Spec();
  big.mutable_variational()->set_trajectories(200000);
  big.mutable_variational()->set_adam_batch(10);
  auto r = mgr_->Submit(big, "", "alice");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("variational.trajectories"), std::string::npos) << r.status();
  EXPECT_EQ(mgr_->List({})->jobs_size(), 1);
}

}  // namespace
}  // namespace vsdm::server

namespace vsdm::server {
namespace {

// Issue 18's hang: the agent hosting rank 0 was killed during the final evaluation and restarted
// under the same id, knowing nothing of the rank; the job sat RUNNING at 100/100 for minutes.
// Now a worker that stops listing a rank it acknowledged fails that attempt at once.
TEST_F(JobManagerTest, AnAgentThatReRegistersWithoutARankItRanFailsTheAttemptAtOnce) {
  Register("w1", 2);
  v1::Job j = Submit(Spec(1, 3));
  mgr_->Tick();
  const std::string att = j.job_id() + "/1";
  Beat("w1", {{att, 0}, {att, 1}});  // both acknowledged
  Complete("w1", att, 1, 0);         // the variational rank is done
  v1::RegisterRequest again;         // the restarted agent runs nothing
  again.set_worker_id("w1");
  again.mutable_resources()->set_slots(2);
  again.set_instance_id("new");
  ASSERT_TRUE(RegisterOk(again));
  v1::Job now = *mgr_->Get(j.job_id());
  EXPECT_EQ(now.state(), v1::JOB_STATE_QUEUED) << "old: RUNNING until someone notices";
  EXPECT_NE(now.message().find("rank 0 is no longer running on worker w1"), std::string::npos) << now.message();
  EXPECT_EQ(mgr_->TakeStats().restarts_by_cause["rank_gone"], 1);
}

TEST_F(JobManagerTest, AHeartbeatThatStopsListingARankFailsItsAttemptButCompletedRanksMayGo) {
  Register("w1", 2);
  v1::Job j = Submit(Spec(1, 3));
  mgr_->Tick();
  const std::string att = j.job_id() + "/1";
  Beat("w1", {});  // assignments not yet started: nothing is missing
  EXPECT_EQ(State(j.job_id()), v1::JOB_STATE_RUNNING);
  Beat("w1", {{att, 0}, {att, 1}});
  Complete("w1", att, 1, 0);
  Beat("w1", {{att, 0}});  // rank 1 completed: fine
  EXPECT_EQ(State(j.job_id()), v1::JOB_STATE_RUNNING);
  Beat("w1", {});  // rank 0 vanished without a Complete
  EXPECT_EQ(State(j.job_id()), v1::JOB_STATE_QUEUED);
}

TEST_F(JobManagerTest, AnAttemptWithNoProgressPastItsDeadlineIsRequeuedWithTheReason) {
  JobManagerOptions o = Options();
  o.startup_deadline = absl::Seconds(30);
  o.progress_deadline_factor = 10;
  o.progress_deadline_min = absl::Seconds(5);
  mgr_ = std::make_unique<JobManager>(store_, clock_, o);
  Register("w1", 2);
  v1::JobSpec spec = Spec(1, 3);
  spec.mutable_train()->set_rounds(10);
  spec.mutable_train()->set_steps_per_round(100);
  v1::Job j = Submit(spec);
  mgr_->Tick();
  // Start-up: 30 s to the first report.
  BeatAndTick(29, {"w1"});
  ASSERT_EQ(State(j.job_id()), v1::JOB_STATE_RUNNING);
  v1::ReportRequest rep;
  rep.set_worker_id("w1");
  rep.set_attempt_id(j.job_id() + "/1");
  rep.mutable_progress()->set_round(1);
  rep.mutable_progress()->set_steps_per_second(50);  // 2 s a round: the deadline is 20 s
  ASSERT_TRUE(mgr_->Report(rep, creds_["w1"]).ok());
  BeatAndTick(19, {"w1"});
  ASSERT_EQ(State(j.job_id()), v1::JOB_STATE_RUNNING) << "heartbeats alone are not progress, but 19 s < 20 s";
  clock_.Advance(absl::Seconds(1));
  Heartbeat("w1");
  mgr_->Tick();
  v1::Job now = *mgr_->Get(j.job_id());
  EXPECT_EQ(now.state(), v1::JOB_STATE_QUEUED);
  EXPECT_NE(now.message().find("no progress report for 20s"), std::string::npos) << now.message();
  EXPECT_NE(now.message().find("10 x its round time of 2s"), std::string::npos) << now.message();
  // The next attempt that never reports is failed at the start-up deadline.
  TickThrough(absl::Seconds(5));  // backoff
  ASSERT_EQ(State(j.job_id()), v1::JOB_STATE_RUNNING);
  BeatAndTick(31, {"w1"});
  now = *mgr_->Get(j.job_id());
  EXPECT_NE(now.message().find("to its first report"), std::string::npos) << now.message();
}

// Review H7: the ranks that exited before a coordinator restart are durable.
TEST_F(JobManagerTest, ARestartDuringTheFinalEvaluationDoesNotFailTheAttempt) {
  Register("w1", 2);
  v1::Job j = Submit(Spec(1, 0));  // no restarts: a failed attempt fails the job
  mgr_->Tick();
  const std::string att = j.job_id() + "/1";
  Beat("w1", {{att, 0}, {att, 1}});
  Complete("w1", att, 1, 0);  // only trainer 0 (final evaluation) is left
  mgr_ = std::make_unique<JobManager>(store_, clock_, Options());
  ASSERT_TRUE(mgr_->Recover().ok());
  v1::RegisterRequest reg;
  reg.set_worker_id("w1");
  reg.mutable_resources()->set_slots(2);
  auto* rr = reg.add_running();
  rr->set_attempt_id(att);
  rr->set_rank(0);
  ASSERT_TRUE(RegisterOk(reg));
  clock_.Advance(Options().recovery_grace);
  Beat("w1", {{att, 0}});
  mgr_->Tick();
  ASSERT_EQ(State(j.job_id()), v1::JOB_STATE_RUNNING) << mgr_->Get(j.job_id())->message();
  Complete("w1", att, 0, 0);
  EXPECT_EQ(State(j.job_id()), v1::JOB_STATE_SUCCEEDED) << "old: FAILED, rank 1 'not reported back'";
}

// Review M6: slots are freed when the worker confirms its ranks are gone, not at cancel time.
TEST_F(JobManagerTest, ACancelledAttemptsSlotsAreFreedOnlyWhenItsWorkerStopsListingThem) {
  Register("w1", 2);
  v1::Job a = Submit(Spec(1));
  mgr_->Tick();
  const std::string att = a.job_id() + "/1";
  Beat("w1", {{att, 0}, {att, 1}});
  ASSERT_TRUE(mgr_->Cancel(a.job_id()).ok());
  v1::Job b = Submit(Spec(1));
  v1::HeartbeatResponse hb = Beat("w1", {{att, 0}, {att, 1}});  // still inside their SIGTERM grace
  ASSERT_EQ(hb.abort_attempts_size(), 1);
  mgr_->Tick();
  EXPECT_EQ(State(b.job_id()), v1::JOB_STATE_QUEUED) << "old: started on slots the dying ranks still hold";
  hb = Beat("w1", {{att, 0}});  // the abort order is sent again while a rank is still listed
  EXPECT_EQ(hb.abort_attempts_size(), 1);
  mgr_->Tick();
  EXPECT_EQ(State(b.job_id()), v1::JOB_STATE_QUEUED);
  Beat("w1", {});
  mgr_->Tick();
  EXPECT_EQ(State(b.job_id()), v1::JOB_STATE_RUNNING);
}

// Review H6: leases are on the monotonic clock, and the coordinator's own stall extends them.
TEST_F(JobManagerTest, AWallClockStepExpiresNoLeaseAndAStallExtendsThemAll) {
  JobManagerOptions o = Options();
  o.stall_threshold = absl::Seconds(5);
  mgr_ = std::make_unique<JobManager>(store_, clock_, o);
  Register("w1", 1);
  Register("w2", 1);
  mgr_->Tick();
  clock_.StepWall(absl::Hours(1));  // NTP step: old code expired every lease here
  mgr_->Tick();
  EXPECT_EQ(mgr_->TakeStats().workers_alive, 2);
  clock_.Advance(absl::Seconds(30));  // the coordinator itself stalled 30 s (no tick, no heartbeat)
  mgr_->Tick();
  EXPECT_EQ(mgr_->TakeStats().workers_alive, 2);
  ASSERT_FALSE(logs_.empty());
  EXPECT_NE(logs_.back().find("stalled for 30s"), std::string::npos) << logs_.back();
  TickThrough(absl::Seconds(10));  // then silence for a lease, with the ticker running: lost
  EXPECT_EQ(mgr_->TakeStats().workers_alive, 0);
}

TEST_F(JobManagerTest, WhenMostLeasesRunOutInOneTickTheyGetOneMoreLeaseFirst) {
  JobManagerOptions o = Options();
  o.max_expire_fraction = 0.5;
  mgr_ = std::make_unique<JobManager>(store_, clock_, o);
  for (const char* w : {"w1", "w2", "w3", "w4"}) Register(w, 1);
  BeatAndTick(10, {"w1"});  // only w1 keeps beating
  EXPECT_EQ(mgr_->TakeStats().workers_alive, 4) << "3 of 4 at once: one lease of grace";
  EXPECT_NE(logs_.back().find("3 of 4 workers' leases ran out in the same tick"), std::string::npos) << logs_.back();
  BeatAndTick(10, {"w1"});
  EXPECT_EQ(mgr_->TakeStats().workers_alive, 1);
}

TEST_F(JobManagerTest, APreemptionRequeuesAtOnceWithoutSpendingARestart) {
  Register("w1", 2);
  v1::Job j = Submit(Spec(1, 0));
  mgr_->Tick();
  Complete("w1", j.job_id() + "/1", 0, 75);
  v1::Job now = *mgr_->Get(j.job_id());
  EXPECT_EQ(now.state(), v1::JOB_STATE_QUEUED) << now.message();
  EXPECT_EQ(now.preemptions(), 1);
  mgr_->Tick();  // no backoff
  ASSERT_EQ(State(j.job_id()), v1::JOB_STATE_RUNNING);
  Complete("w1", j.job_id() + "/2", 0, 1);  // a real failure: max_restarts 0
  EXPECT_EQ(State(j.job_id()), v1::JOB_STATE_FAILED);
  EXPECT_EQ(mgr_->TakeStats().restarts_by_cause["preempted"], 1);
}

TEST_F(JobManagerTest, TheSameStartUpFailureTwiceEndsTheJobInsteadOfSpendingEveryRestart) {
  Register("w1", 2);
  v1::Job j = Submit(Spec(1, 5));
  mgr_->Tick();
  auto fail = [&](int attempt, const std::string& log) {
    v1::CompleteRequest c;
    c.set_worker_id("w1");
    c.set_attempt_id(absl::StrCat(j.job_id(), "/", attempt));
    c.set_rank(0);
    c.set_exit_code(2);
    c.set_message("last lines:\n" + log + "\n");
    ASSERT_TRUE(mgr_->Complete(c, creds_["w1"]).ok());
  };
  fail(1, "vsdm-train[4242]: problem.dataset: images:/nope: no such file");
  ASSERT_EQ(State(j.job_id()), v1::JOB_STATE_QUEUED);
  TickThrough(absl::Seconds(6));
  ASSERT_EQ(State(j.job_id()), v1::JOB_STATE_RUNNING);
  fail(2, "vsdm-train[977]: problem.dataset: images:/nope: no such file");
  v1::Job now = *mgr_->Get(j.job_id());
  EXPECT_EQ(now.state(), v1::JOB_STATE_FAILED) << "old: 4 more restarts of the same error";
  EXPECT_NE(now.message().find("fail fast"), std::string::npos) << now.message();
  EXPECT_NE(now.message().find("images:/nope: no such file"), std::string::npos) << now.message();
}

TEST_F(JobManagerTest, EveryJobHasAUniqueIdAndSpecHashThatItsAssignmentsCarry) {
  Register("w1", 4);
  v1::Job a = Submit(Spec(1));
  v1::Job b = Submit(Spec(1));
  EXPECT_EQ(a.uid().size(), 32u);
  EXPECT_NE(a.uid(), b.uid());
  EXPECT_EQ(a.spec_hash(), b.spec_hash());
  EXPECT_EQ(a.spec_hash().size(), 16u);
  EXPECT_NE(Submit(Spec(2)).spec_hash(), a.spec_hash());
  mgr_->Tick();
  const v1::HeartbeatResponse hb = Heartbeat("w1");
  ASSERT_EQ(hb.assignments_size(), 4);
  for (const auto& as : hb.assignments()) {
    EXPECT_EQ(as.job_uid(), as.job_id() == a.job_id() ? a.uid() : b.uid());
    EXPECT_EQ(as.spec_hash(), a.spec_hash());
  }
}

}  // namespace
}  // namespace vsdm::server

namespace vsdm::server {
namespace {

// Note [Elastic restarts]: 3 trainers, a worker removed, the restart runs with 2.
TEST_F(JobManagerTest, ARestartShrinksToTheTrainersTheClusterStillHoldsButNotBelowTheMinimum) {
  for (const char* w : {"w1", "w2", "w3", "w4"}) Register(w, 1);
  v1::JobSpec spec = Spec(3, 5);
  spec.mutable_resources()->set_min_trainers(2);
  v1::Job j = Submit(spec);
  mgr_->Tick();
  ASSERT_EQ(State(j.job_id()), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(mgr_->Get(j.job_id())->trainers(), 3);
  // w4 goes away for good: its lease runs out while the others beat.
  BeatAndTick(11, {"w1", "w2", "w3"});
  ASSERT_EQ(State(j.job_id()), v1::JOB_STATE_QUEUED);
  BeatAndTick(6, {"w1", "w2", "w3"});  // the backoff
  v1::Job now = *mgr_->Get(j.job_id());
  ASSERT_EQ(now.state(), v1::JOB_STATE_RUNNING) << now.pending_reason();
  EXPECT_EQ(now.trainers(), 2);
  int assigned = 0;
  for (const char* w : {"w1", "w2", "w3"}) {
    const v1::HeartbeatResponse hb = Heartbeat(w);
    for (const auto& a : hb.assignments()) {
      EXPECT_EQ(a.trainers(), 2);
      EXPECT_EQ(a.spec().resources().trainers(), 2) << "the ranks run the attempt's W";
      EXPECT_EQ(a.spec_hash(), j.spec_hash()) << "still the job's own spec";
      ++assigned;
    }
  }
  EXPECT_EQ(assigned, 3);
  std::vector<v1::JobEvent> events;
  ASSERT_TRUE(mgr_->Watch(j.job_id(), 0, [](const v1::JobEvent&) {}, &events).ok());
  EXPECT_NE(events.back().message().find("elastic: 2 of 3 trainers"), std::string::npos) << events.back().message();
}

TEST_F(JobManagerTest, BelowMinTrainersARestartWaitsForTheFullGang) {
  for (const char* w : {"w1", "w2", "w3", "w4"}) Register(w, 1);
  v1::JobSpec spec = Spec(3, 5);
  spec.mutable_resources()->set_min_trainers(3);
  v1::Job j = Submit(spec);
  mgr_->Tick();
  BeatAndTick(30, {"w1", "w2", "w3"});  // w4 is lost, then the backoff passes
  v1::Job now = *mgr_->Get(j.job_id());
  EXPECT_EQ(now.state(), v1::JOB_STATE_QUEUED);
  EXPECT_NE(now.pending_reason().find("4 slots"), std::string::npos) << now.pending_reason();
}

TEST_F(JobManagerTest, MinTrainersAboveTrainersIsRefusedNamingTheField) {
  v1::JobSpec spec = Spec(2);
  spec.mutable_resources()->set_min_trainers(3);
  auto j = mgr_->Submit(spec, "", "alice");
  ASSERT_EQ(j.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(j.status().message().find("resources.min_trainers"), std::string::npos) << j.status();
}

}  // namespace
}  // namespace vsdm::server

namespace vsdm::server {
namespace {

// The chaos test's finding: a long job hit by many unrelated faults waited 2 min for its 8th
// restart. The backoff doubles only over attempts in a row that failed before any progress.
TEST_F(JobManagerTest, TheRestartBackoffDoublesOnlyOverAttemptsThatMadeNoProgress) {
  Register("w1", 2);
  v1::Job j = Submit(Spec(1, 10));
  mgr_->Tick();
  auto backoff_of_last_requeue = [&] {
    std::vector<v1::JobEvent> events;
    EXPECT_TRUE(mgr_->Watch(j.job_id(), 0, [](const v1::JobEvent&) {}, &events).ok());
    const std::string& m = events.back().message();
    return m.substr(m.rfind(" after ") + 7);
  };
  auto fail = [&](int attempt, bool after_progress, const std::string& why) {
    const std::string att = absl::StrCat(j.job_id(), "/", attempt);
    ASSERT_EQ(State(j.job_id()), v1::JOB_STATE_RUNNING);
    if (after_progress) {
      v1::ReportRequest rep;
      rep.set_worker_id("w1");
      rep.set_attempt_id(att);
      rep.mutable_progress()->set_round(attempt);
      ASSERT_TRUE(mgr_->Report(rep, creds_["w1"]).ok());
    }
    v1::CompleteRequest c;
    c.set_worker_id("w1");
    c.set_attempt_id(att);
    c.set_rank(1);
    c.set_exit_code(1);
    c.set_message("last lines:\n" + why);
    ASSERT_TRUE(mgr_->Complete(c, creds_["w1"]).ok());
  };
  auto wait = [&](int seconds) {  // the backoff passes; w1 keeps beating
    for (int i = 0; i < seconds; ++i) {
      clock_.Advance(absl::Seconds(1));
      Heartbeat("w1");
      mgr_->Tick();
    }
  };
  fail(1, true, "a");
  EXPECT_EQ(backoff_of_last_requeue(), "5s");
  wait(5);
  fail(2, true, "b");
  EXPECT_EQ(backoff_of_last_requeue(), "5s") << "old: 10s, 20s, ... over the job's whole life";
  wait(5);
  fail(3, false, "c");  // fails in start-up: the streak grows
  EXPECT_EQ(backoff_of_last_requeue(), "5s");
  wait(5);
  fail(4, false, "d");
  EXPECT_EQ(backoff_of_last_requeue(), "10s");
  wait(10);
  fail(5, true, "e");  // trained: back to the first backoff
  EXPECT_EQ(backoff_of_last_requeue(), "5s");
}


// Note [Checkpoint fallback events]: rank 0's reports that its resume refused the newest
// checkpoints become one durable event of the attempt, naming the round it resumed from.
TEST_F(JobManagerTest, AResumeFromAnOlderCheckpointIsOneDurableEventOfItsAttempt) {
  Register("w1", 2);
  const v1::Job j = Submit();
  mgr_->Tick();
  ASSERT_EQ(State(j.job_id()), v1::JOB_STATE_RUNNING);
  auto report = [&](int round, int skipped) {
    v1::ReportRequest rep;
    rep.set_attempt_id(j.job_id() + "/1");
    rep.set_worker_id("w1");
    rep.mutable_progress()->set_round(round);
    if (skipped > 0) {
      (*rep.mutable_progress()->mutable_metrics())["checkpoints_skipped"] = skipped;
      (*rep.mutable_progress()->mutable_metrics())["resumed_from_round"] = 1;
    }
    const absl::Status s = mgr_->Report(rep, creds_["w1"]);
    EXPECT_TRUE(s.ok()) << s;
  };
  report(1, 0);
  report(2, 2);
  report(3, 2);  // the same attempt says it again: no second event
  auto stored = store_.LoadEvents(j.job_id(), 0);
  ASSERT_TRUE(stored.ok()) << stored.status();
  std::vector<std::string> messages;
  for (const auto& e : *stored)
    if (e.kind() == "checkpoint_fallback") messages.push_back(e.message());
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_NE(messages[0].find("attempt 1 resumed from round 1: its 2 newest checkpoint(s) were refused"),
            std::string::npos)
      << messages[0];
  EXPECT_EQ(State(j.job_id()), v1::JOB_STATE_RUNNING);
}

// Note [Heartbeats beside the lock] (review M7): a commit that waits on a stalled disk holds the
// manager's mutex; a heartbeat meanwhile answers within its wait, renewing the lease, and what it
// did not carry comes with the next one. Before, it waited for the disk, and the worker's lease
// ran out behind it.
TEST(JobManagerStallTest, AHeartbeatRenewsItsLeaseWhileACommitWaitsOnAStalledDisk) {
  FakeClock clock;
  StallingStore store;
  JobManagerOptions o;
  o.lease = absl::Seconds(10);
  o.heartbeat_lock_wait = absl::Milliseconds(20);
  o.stall_threshold = absl::InfiniteDuration();
  o.log = [](const std::string&) {};
  JobManager mgr(store, clock, o);
  v1::RegisterRequest reg;
  reg.set_worker_id("w1");
  reg.mutable_resources()->set_slots(2);
  reg.mutable_resources()->set_host("h-w1");
  auto registered = mgr.Register(reg);
  ASSERT_TRUE(registered.ok()) << registered.status();
  v1::HeartbeatRequest beat;
  beat.set_worker_id("w1");
  const std::string credential = registered->worker_credential();
  auto started = mgr.Submit(Spec(), "", "alice");  // its 2 ranks fill w1
  auto queued = mgr.Submit(Spec(), "", "alice");
  ASSERT_TRUE(started.ok() && queued.ok());
  mgr.Tick();
  ASSERT_EQ(mgr.Get(started->job_id())->state(), v1::JOB_STATE_RUNNING);

  store.Stall(true);
  std::thread cancel([&] { EXPECT_TRUE(mgr.Cancel(queued->job_id()).ok()); });  // commits under the lock
  store.AwaitBlockedWrites(1);
  clock.Advance(absl::Seconds(8));
  auto during = std::async(std::launch::async, [&] { return mgr.Heartbeat(beat, credential); });
  const bool answered = during.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
  clock.Advance(absl::Seconds(8));  // 16 s after Register, 8 s after that heartbeat
  store.Stall(false);
  cancel.join();
  ASSERT_TRUE(answered) << "the heartbeat waited for the stalled disk";
  const absl::StatusOr<v1::HeartbeatResponse> deferred = during.get();
  ASSERT_TRUE(deferred.ok()) << deferred.status();
  EXPECT_EQ(deferred->lease_seconds(), 10);
  EXPECT_EQ(deferred->assignments_size(), 0) << "it carried nothing: the lock was not taken";

  mgr.Tick();
  const v1::ListWorkersResponse workers = mgr.Workers();
  ASSERT_EQ(workers.workers_size(), 1);
  EXPECT_EQ(workers.workers(0).state(), "alive") << "old: lost, its lease counted from Register";
  EXPECT_NEAR(workers.workers(0).lease_remaining_seconds(), 2, 1e-6);
  EXPECT_EQ(mgr.Get(started->job_id())->state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(mgr.TakeStats().heartbeats_deferred, 1);
  // With the lock free the next heartbeat is a full one: the two assignments come now.
  auto next = mgr.Heartbeat(beat, credential);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->assignments_size(), 2);
  EXPECT_EQ(mgr.TakeStats().heartbeats_deferred, 1);
  // A credential that is not the current one still goes the full way and is refused.
  EXPECT_EQ(mgr.Heartbeat(beat, "not-the-credential").status().code(), absl::StatusCode::kPermissionDenied);
}

// Note [Sweeps]: a sweep of `lrs` (one member each) with request id `rid`.
v1::SubmitSweepRequest Sweep(const std::vector<double>& lrs, const std::string& rid = "") {
  v1::SubmitSweepRequest req;
  req.set_request_id(rid);
  for (double lr : lrs) {
    v1::SweepMember* m = req.add_members();
    *m->mutable_spec() = Spec();
    m->mutable_spec()->mutable_train()->set_lr(lr);
    m->add_overrides(absl::StrCat("train.lr=", lr));
  }
  return req;
}

TEST_F(JobManagerTest, ASweepIsSubmittedWholeAsOneGroupWithEachMembersOverrides) {
  Submit();  // job-00000001, no group
  auto r = mgr_->SubmitSweep(Sweep({1e-3, 3e-4, 1e-4}), "alice");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->group_id(), "sweep-00000002");
  ASSERT_EQ(r->jobs_size(), 3);
  for (int i = 0; i < 3; ++i) {
    const v1::Job& j = r->jobs(i);
    EXPECT_EQ(j.job_id(), absl::StrFormat("job-%08d", i + 2));
    EXPECT_EQ(j.group_id(), "sweep-00000002");
    EXPECT_EQ(j.owner(), "alice");
    EXPECT_EQ(j.state(), v1::JOB_STATE_QUEUED);
    ASSERT_EQ(j.overrides_size(), 1);
    EXPECT_EQ(j.spec().train().lr(), std::vector<double>({1e-3, 3e-4, 1e-4})[static_cast<size_t>(i)]);
  }
  EXPECT_EQ(store_.LoadJobs()->size(), 4u);
  v1::ListJobsRequest list;
  list.set_group_id("sweep-00000002");
  EXPECT_EQ(mgr_->List(list)->jobs_size(), 3);
  EXPECT_EQ(mgr_->List({})->jobs_size(), 4);
  // The group and the overrides are durable: a restarted coordinator lists the same members.
  mgr_ = std::make_unique<JobManager>(store_, clock_, Options());
  ASSERT_TRUE(mgr_->Recover().ok());
  auto again = mgr_->List(list);
  ASSERT_EQ(again->jobs_size(), 3);
  EXPECT_EQ(again->jobs(0).overrides(0), absl::StrCat("train.lr=", 1e-4));
}

TEST_F(JobManagerTest, ASweepWithABadMemberIsRefusedNamingItAndNothingIsStored) {
  v1::SubmitSweepRequest req = Sweep({1e-3, -1, 1e-4});
  auto r = mgr_->SubmitSweep(req, "alice");
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(r.status().message(), "members[1].spec.train.lr")) << r.status();
  EXPECT_EQ(store_.LoadJobs()->size(), 0u);
  EXPECT_EQ(mgr_->SubmitSweep(v1::SubmitSweepRequest(), "alice").status().code(),
            absl::StatusCode::kInvalidArgument);  // no members
  req = Sweep({1e-3});
  req.mutable_members(0)->add_overrides("no equals sign");
  r = mgr_->SubmitSweep(req, "alice");
  EXPECT_TRUE(absl::StartsWith(r.status().message(), "members[0].overrides")) << r.status();
  // Auth off (no caller owner): the members' owners must agree (one owner keys the group).
  req = Sweep({1e-3, 1e-4});
  req.mutable_members(1)->mutable_spec()->set_owner("bob");
  r = mgr_->SubmitSweep(req, "");
  EXPECT_TRUE(absl::StartsWith(r.status().message(), "members[1].spec.owner")) << r.status();
  // A store that fails the write: no member is acknowledged or listed.
  store_.FailWrites(true);
  EXPECT_EQ(mgr_->SubmitSweep(Sweep({1e-3, 1e-4}), "alice").status().code(), absl::StatusCode::kUnavailable);
  store_.FailWrites(false);
  EXPECT_EQ(mgr_->List({})->jobs_size(), 0);
}

TEST_F(JobManagerTest, ASweepIsIdempotentPerRequestIdAndBoundToItsMembers) {
  auto a = mgr_->SubmitSweep(Sweep({1e-3, 1e-4}, "grid-1"), "alice");
  auto b = mgr_->SubmitSweep(Sweep({1e-3, 1e-4}, "grid-1"), "alice");
  ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
  EXPECT_EQ(a->group_id(), b->group_id());
  ASSERT_EQ(b->jobs_size(), 2);
  EXPECT_EQ(a->jobs(1).job_id(), b->jobs(1).job_id());
  EXPECT_EQ(mgr_->List({})->jobs_size(), 2);
  auto other = mgr_->SubmitSweep(Sweep({1e-3, 3e-4}, "grid-1"), "alice");
  EXPECT_EQ(other.status().code(), absl::StatusCode::kAlreadyExists) << other.status();
  // After a restart too.
  mgr_ = std::make_unique<JobManager>(store_, clock_, Options());
  ASSERT_TRUE(mgr_->Recover().ok());
  auto c = mgr_->SubmitSweep(Sweep({1e-3, 1e-4}, "grid-1"), "alice");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->group_id(), a->group_id());
  // Retention removed a finished member: a retry still returns the group (the members kept).
  ASSERT_TRUE(mgr_->Cancel(a->jobs(1).job_id()).ok());
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(mgr_->Cancel(Submit().job_id()).ok());  // a newer finished job
  JobManagerOptions keep_one = Options();
  keep_one.retain_finished = 1;
  mgr_ = std::make_unique<JobManager>(store_, clock_, keep_one);
  ASSERT_TRUE(mgr_->Recover().ok());
  mgr_->Tick();
  ASSERT_EQ(mgr_->List({})->jobs_size(), 2);  // member 0 and the newer job; member 1 is gone
  auto d = mgr_->SubmitSweep(Sweep({1e-3, 1e-4}, "grid-1"), "alice");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->group_id(), a->group_id());
  EXPECT_EQ(d->jobs_size(), 1);
  EXPECT_EQ(mgr_->SubmitSweep(Sweep({3e-4, 1e-4}, "grid-1"), "alice").status().code(),
            absl::StatusCode::kAlreadyExists);
  // A job's request id cannot take a sweep's key.
  EXPECT_EQ(mgr_->Submit(Spec(), "sweep:grid-1", "alice").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(JobManagerTest, ASweepCountsEveryMemberAgainstTheQueueQuota) {
  JobManagerOptions o = Options();
  o.max_queued_per_owner = 3;
  mgr_ = std::make_unique<JobManager>(store_, clock_, o);
  Submit();
  EXPECT_EQ(mgr_->SubmitSweep(Sweep({1e-3, 1e-4, 3e-4}), "alice").status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(mgr_->SubmitSweep(Sweep({1e-3, 1e-4}), "alice").ok());
  EXPECT_EQ(mgr_->List({})->jobs_size(), 3);
}

TEST_F(JobManagerTest, LogsAreTakenOnlyFromTheWorkerARankIsPlacedOn) {
  Register("w1", 2);
  Register("w2", 2);
  const v1::Job j = Submit();
  mgr_->Tick();
  const std::string attempt = MakeAttemptId(j.job_id(), 1);
  const std::string w0 = WorkerOfRank0(attempt);
  ASSERT_FALSE(w0.empty());
  v1::AppendLogRequest req;
  req.set_worker_id(w0);
  req.set_attempt_id(attempt);
  req.set_rank(0);
  auto target = mgr_->LogTarget(req, creds_[w0]);
  ASSERT_TRUE(target.ok()) << target.status();
  EXPECT_EQ(*target, j.job_id());
  EXPECT_EQ(mgr_->LogTarget(req, "forged").status().code(), absl::StatusCode::kPermissionDenied);
  req.set_rank(7);
  EXPECT_EQ(mgr_->LogTarget(req, creds_[w0]).status().code(), absl::StatusCode::kFailedPrecondition);
  req.set_rank(0);
  req.set_attempt_id(MakeAttemptId(j.job_id(), 2));
  EXPECT_EQ(mgr_->LogTarget(req, creds_[w0]).status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace vsdm::server
