#include "worker/agent/agent_metrics.h"

#include "absl/time/clock.h"

namespace vsdm::worker {
namespace {

prometheus::Family<prometheus::Gauge>& G(prometheus::Registry& r, const char* name, const char* help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r);
}
prometheus::Family<prometheus::Counter>& C(prometheus::Registry& r, const char* name, const char* help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r);
}

}  // namespace

AgentMetrics::AgentMetrics(std::shared_ptr<prometheus::Registry> registry, const std::string& version)
    : registry_(std::move(registry)),
      progress_(G(*registry_, "vsdm_job_progress_ratio", "Rounds done / rounds of a running job")),
      eta_(G(*registry_, "vsdm_job_eta_seconds", "Estimated time to the end of a running job's training")),
      round_(G(*registry_, "vsdm_train_round", "Rounds completed by a running job")),
      loss_(G(*registry_, "vsdm_train_loss", "Mean DSM loss of the last round")),
      a_norm_(G(*registry_, "vsdm_variational_a_norm", "Frobenius norm of the variational score A in use")),
      step_seconds_(G(*registry_, "vsdm_train_step_duration_seconds", "Mean wall time per training step, last round")),
      round_seconds_(G(*registry_, "vsdm_train_round_duration_seconds", "Wall time of the last round (trainer 0)")),
      phase_seconds_(G(*registry_, "vsdm_train_round_phase_seconds",
                       "Where the last round's time went on trainer 0: compute, allreduce, broadcast, wait_for_a")),
      ckpt_round_(G(*registry_, "vsdm_checkpoint_last_round", "Round of the newest checkpoint of a running job")),
      ckpt_seconds_(G(*registry_, "vsdm_checkpoint_duration_seconds", "Write time of the newest checkpoint")),
      ckpt_time_(G(*registry_, "vsdm_checkpoint_last_success_timestamp_seconds",
                   "Unix time the newest checkpoint of a running job was written (0: none yet)")),
      var_update_(G(*registry_, "vsdm_variational_update_duration_seconds",
                    "Variational rank: trajectories + statistics + update of A, last round")),
      var_staleness_(G(*registry_, "vsdm_variational_a_staleness_rounds",
                       "Rounds between the net an A update is computed from and the round that uses it, minus one")),
      steps_(C(*registry_, "vsdm_train_steps_total", "Training steps completed (data-parallel steps)")),
      samples_(C(*registry_, "vsdm_train_samples_total", "Data points trained on")),
      allreduce_bytes_(C(*registry_, "vsdm_train_allreduce_bytes_total", "Gradient bytes all-reduced per trainer")),
      broadcast_bytes_(C(*registry_, "vsdm_train_broadcast_bytes_total",
                         "Bytes trainer 0 received or sent in broadcasts (A, EMA net, checkpoint state)")),
      straightness_(G(*registry_, "vsdm_job_ode_straightness",
                      "Straightness of the EMA model's ODE paths at the newest checkpoint (1 = straight)")),
      startup_seconds_(G(*registry_, "vsdm_attempt_startup_seconds",
                         "The running attempt's start-up on trainer 0, by phase: rendezvous, restore")),
      device_memory_(G(*registry_, "vsdm_device_memory_used_bytes",
                       "CUDA device memory in use on trainer 0's device (CUDA jobs only)")),
      ranks_running_(G(*registry_, "vsdm_agent_ranks_running", "Training processes this agent runs").Add({})),
      rank_exits_(C(*registry_, "vsdm_agent_rank_exits_total", "Training processes that ended, by outcome")),
      last_heartbeat_(G(*registry_, "vsdm_agent_last_heartbeat_timestamp_seconds",
                        "Unix time of the last heartbeat the coordinator answered")
                          .Add({})),
      ckpt_transfers_(C(*registry_, "vsdm_agent_checkpoint_transfers_total",
                        "Checkpoints moved through the coordinator, by direction: upload, fetch")),
      ckpt_transfer_bytes_(C(*registry_, "vsdm_agent_checkpoint_transfer_bytes_total",
                             "Bytes of checkpoints moved through the coordinator, by direction")) {
  G(*registry_, "vsdm_build_info", "Build of this process").Add({{"version", version}, {"component", "worker"}}).Set(1);
}

void AgentMetrics::UpdateJob(const std::string& job, const train_protocol::TrainerProgress& p) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job);
  if (it == jobs_.end()) {
    const prometheus::Labels l = {{"job_id", job}};
    JobSeries s;
    s.progress = &progress_.Add(l);
    s.eta = &eta_.Add(l);
    s.round = &round_.Add(l);
    s.loss = &loss_.Add(l);
    s.a_norm = &a_norm_.Add(l);
    s.step_seconds = &step_seconds_.Add(l);
    s.round_seconds = &round_seconds_.Add(l);
    s.ckpt_round = &ckpt_round_.Add(l);
    s.ckpt_seconds = &ckpt_seconds_.Add(l);
    s.ckpt_time = &ckpt_time_.Add(l);
    s.straightness = &straightness_.Add(l);
    s.startup_rendezvous = &startup_seconds_.Add({{"job_id", job}, {"phase", "rendezvous"}});
    s.startup_restore = &startup_seconds_.Add({{"job_id", job}, {"phase", "restore"}});
    s.steps = &steps_.Add(l);
    s.samples = &samples_.Add(l);
    s.allreduce_bytes = &allreduce_bytes_.Add(l);
    s.broadcast_bytes = &broadcast_bytes_.Add(l);
    for (const char* ph : {"compute", "allreduce", "broadcast", "wait_for_a"})
      s.phase[ph] = &phase_seconds_.Add({{"job_id", job}, {"phase", ph}});
    it = jobs_.emplace(job, std::move(s)).first;
  }
  JobSeries& s = it->second;
  const double rounds = static_cast<double>(p.rounds), round = static_cast<double>(p.round);
  s.progress->Set(rounds > 0 ? round / rounds : 0.0);
  s.eta->Set(p.eta_seconds);
  s.round->Set(round);
  s.loss->Set(p.loss);
  s.a_norm->Set(p.a_norm);
  s.step_seconds->Set(p.steps_per_second > 0 ? 1.0 / p.steps_per_second : 0.0);
  s.round_seconds->Set(p.round_seconds);
  s.ckpt_round->Set(static_cast<double>(p.checkpoint_round));
  s.ckpt_seconds->Set(p.checkpoint_seconds);
  s.ckpt_time->Set(p.checkpoint_unix_seconds);
  s.phase["compute"]->Set(p.compute_seconds);
  s.phase["allreduce"]->Set(p.allreduce_seconds);
  s.phase["broadcast"]->Set(p.broadcast_seconds);
  s.phase["wait_for_a"]->Set(p.wait_for_a_seconds);
  // Since the job began: a resumed attempt redoes rounds after its checkpoint; count each once.
  auto bump_max = [](prometheus::Counter* c, double& seen, double now) {
    if (now > seen) c->Increment(now - seen);
    seen = std::max(seen, now);
  };
  // Since this attempt began: a smaller total is a new attempt.
  auto bump_total = [](prometheus::Counter* c, double& seen, double now) {
    if (now < seen) seen = 0;
    c->Increment(now - seen);
    seen = now;
  };
  bump_max(s.steps, s.steps_seen, static_cast<double>(p.steps));
  bump_max(s.samples, s.samples_seen, static_cast<double>(p.samples));
  bump_total(s.allreduce_bytes, s.allreduce_bytes_seen, static_cast<double>(p.allreduce_bytes_total));
  bump_total(s.broadcast_bytes, s.broadcast_bytes_seen, static_cast<double>(p.broadcast_bytes_total));
  s.straightness->Set(p.ode_straightness);
  s.startup_rendezvous->Set(p.rendezvous_seconds);
  s.startup_restore->Set(p.restore_seconds);
  if (p.device_memory_used_bytes >= 0) {
    if (s.device_memory == nullptr) s.device_memory = &device_memory_.Add({{"job_id", job}});
    s.device_memory->Set(static_cast<double>(p.device_memory_used_bytes));
  }
}

void AgentMetrics::UpdateVariational(const std::string& job, const train_protocol::VariationalProgress& p) {
  absl::MutexLock lock(&mu_);
  auto& g = var_jobs_[job];
  if (g.first == nullptr) g = {&var_update_.Add({{"job_id", job}}), &var_staleness_.Add({{"job_id", job}})};
  g.first->Set(p.variational_seconds);
  g.second->Set(static_cast<double>(p.a_staleness_rounds));
}

void AgentMetrics::RemoveJob(const std::string& job) {
  absl::MutexLock lock(&mu_);
  if (auto v = var_jobs_.find(job); v != var_jobs_.end()) {
    var_update_.Remove(v->second.first);
    var_staleness_.Remove(v->second.second);
    var_jobs_.erase(v);
  }
  auto it = jobs_.find(job);
  if (it == jobs_.end()) return;
  JobSeries& s = it->second;
  progress_.Remove(s.progress);
  eta_.Remove(s.eta);
  round_.Remove(s.round);
  loss_.Remove(s.loss);
  a_norm_.Remove(s.a_norm);
  step_seconds_.Remove(s.step_seconds);
  round_seconds_.Remove(s.round_seconds);
  ckpt_round_.Remove(s.ckpt_round);
  ckpt_seconds_.Remove(s.ckpt_seconds);
  ckpt_time_.Remove(s.ckpt_time);
  steps_.Remove(s.steps);
  samples_.Remove(s.samples);
  allreduce_bytes_.Remove(s.allreduce_bytes);
  broadcast_bytes_.Remove(s.broadcast_bytes);
  straightness_.Remove(s.straightness);
  startup_seconds_.Remove(s.startup_rendezvous);
  startup_seconds_.Remove(s.startup_restore);
  if (s.device_memory != nullptr) device_memory_.Remove(s.device_memory);
  for (auto& [ph, g] : s.phase) phase_seconds_.Remove(g);
  jobs_.erase(it);
}

void AgentMetrics::SetRanksRunning(int n) { ranks_running_.Set(n); }

void AgentMetrics::RankExited(const std::string& outcome) { rank_exits_.Add({{"outcome", outcome}}).Increment(); }

void AgentMetrics::CheckpointTransferred(const std::string& direction, int64_t bytes) {
  ckpt_transfers_.Add({{"direction", direction}}).Increment();
  ckpt_transfer_bytes_.Add({{"direction", direction}}).Increment(static_cast<double>(bytes));
}

void AgentMetrics::HeartbeatOk() { last_heartbeat_.Set(absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch())); }

}  // namespace vsdm::worker
