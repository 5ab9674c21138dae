// The coordinator's Prometheus metrics, built once from one registry with cached references:
// jobs and workers by state, queue wait, scheduling pass latency, restarts, RPC counts and
// latencies.
#pragma once

#include <map>
#include <memory>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/synchronization/mutex.h"
#include "server/job_manager.h"

namespace vsdm::server {

// Threading: RecordSubmit, RecordRpc, SetStoreWritable and SetHandlerCalls are thread-safe (the
// RPC threads call them). Update is not: it mutates unguarded maps (restarts_seen_,
// heartbeat_gauges_, goodput_gauges_), so one thread at a time must call it (the coordinator's
// ticker thread; main's first call precedes it).
class CoordinatorMetrics {
 public:
  explicit CoordinatorMetrics(std::shared_ptr<prometheus::Registry> registry);

  // Copies the manager's counts into the gauges and histograms (called after every Tick).
  // Not thread-safe (see above).
  void Update(const JobManagerStats& stats);
  // A submit accepted (a new or an idempotent repeat) or refused.
  void RecordSubmit(bool accepted);
  // One finished RPC: `method` from a fixed set, `code` its canonical status code.
  void RecordRpc(const std::string& method, int code, double seconds);
  // Whether the job store can write, as health sees it (Note [Health follows the store]).
  // Thread-safe.
  void SetStoreWritable(bool writable);
  // The calls of a handler pool (Note [Handlers off the reactor]), `pool` "handlers" or
  // "heartbeats": waiting for a thread, and running. Thread-safe.
  void SetHandlerCalls(const std::string& pool, int queued, int busy);

  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }

 private:
  void BuildJobMetrics();         // jobs, workers, restarts, durations, recovery, goodput, submits
  void BuildSchedulingMetrics();  // pending, queue wait, scheduling pass

  std::shared_ptr<prometheus::Registry> registry_;
  std::map<v1::JobState, prometheus::Gauge*> jobs_;
  prometheus::Gauge* workers_alive_;
  prometheus::Gauge* workers_lost_;
  prometheus::Family<prometheus::Counter>* restarts_;
  std::map<std::string, double> restarts_seen_;
  prometheus::Family<prometheus::Gauge>* pending_;
  std::map<PendingKind, prometheus::Gauge*> pending_by_kind_;  // every kind, label "reason"
  prometheus::Family<prometheus::Histogram>* duration_;
  prometheus::Family<prometheus::Gauge>* heartbeat_age_;
  std::map<std::string, prometheus::Gauge*> heartbeat_gauges_;
  prometheus::Family<prometheus::Histogram>* recovery_;
  prometheus::Family<prometheus::Gauge>* goodput_;
  std::map<std::string, prometheus::Gauge*> goodput_gauges_;
  prometheus::Counter* submits_accepted_;
  prometheus::Counter* submits_refused_;
  prometheus::Histogram* queue_wait_;
  prometheus::Histogram* pass_;
  prometheus::Gauge* last_pass_;
  prometheus::Counter* heartbeats_deferred_;
  prometheus::Gauge* store_writable_;
  std::map<std::string, std::pair<prometheus::Gauge*, prometheus::Gauge*>> handler_calls_;  // queued, busy; fixed
  double heartbeats_deferred_seen_ = 0;
  prometheus::Family<prometheus::Counter>* rpc_total_;
  prometheus::Family<prometheus::Histogram>* rpc_seconds_;
  absl::Mutex mu_;
  std::map<std::pair<std::string, int>, prometheus::Counter*> rpc_counters_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, prometheus::Histogram*> rpc_histograms_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vsdm::server
