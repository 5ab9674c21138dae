// The agent's Prometheus metrics: its own state (ranks running, rank exits) and the figures of
// the training jobs whose rank 0 it runs (from rank 0's progress file each round), labelled by
// job only while the job runs here. One registry, cached references (STYLE.md). Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "absl/synchronization/mutex.h"
#include "common/train_protocol.h"

namespace vsdm::worker {

class AgentMetrics {
 public:
  AgentMetrics(std::shared_ptr<prometheus::Registry> registry, const std::string& version);

  // Rank 0's progress of `job` (the progress.json vsdm-train rewrites after each round). Called
  // whenever the agent sees a new version of the file, which may skip rounds: counters advance
  // by the growth of the record's cumulative totals, so nothing is lost (a total that went down
  // is a new attempt and counts from 0).
  void UpdateJob(const std::string& job, const train_protocol::TrainerProgress& progress);
  // The variational rank's progress of `job` (progress-variational.json).
  void UpdateVariational(const std::string& job, const train_protocol::VariationalProgress& progress);
  // The job left this agent: its series are removed.
  void RemoveJob(const std::string& job);
  void SetRanksRunning(int n);
  // outcome: succeeded | failed | aborted
  void RankExited(const std::string& outcome);
  void HeartbeatOk();
  // direction: upload | fetch (checkpoints through the coordinator)
  void CheckpointTransferred(const std::string& direction, int64_t bytes);

  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }

 private:
  struct JobSeries {
    prometheus::Gauge *progress = nullptr, *eta = nullptr, *round = nullptr, *loss = nullptr, *a_norm = nullptr,
                      *step_seconds = nullptr, *round_seconds = nullptr, *ckpt_round = nullptr, *ckpt_seconds = nullptr,
                      *ckpt_time = nullptr, *straightness = nullptr, *startup_rendezvous = nullptr,
                      *startup_restore = nullptr;
    prometheus::Counter *steps = nullptr, *samples = nullptr, *allreduce_bytes = nullptr, *broadcast_bytes = nullptr;
    std::map<std::string, prometheus::Gauge*> phase;
    prometheus::Gauge* device_memory = nullptr;  // only on CUDA
    double steps_seen = 0, samples_seen = 0;
    double allreduce_bytes_seen = 0, broadcast_bytes_seen = 0;  // this attempt's totals so far
  };
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Gauge>& progress_;
  prometheus::Family<prometheus::Gauge>& eta_;
  prometheus::Family<prometheus::Gauge>& round_;
  prometheus::Family<prometheus::Gauge>& loss_;
  prometheus::Family<prometheus::Gauge>& a_norm_;
  prometheus::Family<prometheus::Gauge>& step_seconds_;
  prometheus::Family<prometheus::Gauge>& round_seconds_;
  prometheus::Family<prometheus::Gauge>& phase_seconds_;
  prometheus::Family<prometheus::Gauge>& ckpt_round_;
  prometheus::Family<prometheus::Gauge>& ckpt_seconds_;
  prometheus::Family<prometheus::Gauge>& ckpt_time_;
  prometheus::Family<prometheus::Gauge>& var_update_;
  prometheus::Family<prometheus::Gauge>& var_staleness_;
  std::map<std::string, std::pair<prometheus::Gauge*, prometheus::Gauge*>> var_jobs_ ABSL_GUARDED_BY(mu_);
  prometheus::Family<prometheus::Counter>& steps_;
  prometheus::Family<prometheus::Counter>& samples_;
  prometheus::Family<prometheus::Counter>& allreduce_bytes_;
  prometheus::Family<prometheus::Counter>& broadcast_bytes_;
  prometheus::Family<prometheus::Gauge>& straightness_;
  prometheus::Family<prometheus::Gauge>& startup_seconds_;
  prometheus::Family<prometheus::Gauge>& device_memory_;
  prometheus::Gauge& ranks_running_;
  prometheus::Family<prometheus::Counter>& rank_exits_;
  prometheus::Gauge& last_heartbeat_;
  prometheus::Family<prometheus::Counter>& ckpt_transfers_;
  prometheus::Family<prometheus::Counter>& ckpt_transfer_bytes_;
  absl::Mutex mu_;
  std::map<std::string, JobSeries> jobs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vsdm::worker
