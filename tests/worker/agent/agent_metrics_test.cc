// The agent's /metrics read through Collect(): the per-job counters follow the progress records'
// cumulative totals even when the agent sees only some versions of the file (it polls; rounds can
// be faster), a new attempt's smaller totals count from zero, and a finished job's series go.
// Before, the byte counters added each seen record's per-round figure, so a skipped version was
// lost and vsdm_train_*_bytes_total undercounted.
#include "worker/agent/agent_metrics.h"

#include <gtest/gtest.h>

#include <prometheus/metric_family.h>

namespace vsdm::worker {
namespace {

// The value of `name`{job_id=job}, or -1 when that series does not exist.
double Value(prometheus::Registry& r, const std::string& name, const std::string& job) {
  for (const auto& family : r.Collect()) {
    if (family.name != name) continue;
    for (const auto& m : family.metric) {
      for (const auto& l : m.label) {
        if (l.name == "job_id" && l.value == job) {
          return family.type == prometheus::MetricType::Counter ? m.counter.value : m.gauge.value;
        }
      }
    }
  }
  return -1;
}

train_protocol::TrainerProgress Round(int64_t round, int64_t bytes_total, int64_t steps) {
  train_protocol::TrainerProgress p;
  p.round = round;
  p.rounds = 10;
  p.broadcast_bytes_total = bytes_total;
  p.allreduce_bytes_total = 2 * bytes_total;
  p.steps = steps;
  p.loss = 0.1 * static_cast<double>(round);
  return p;
}

TEST(AgentMetricsTest, CountersFollowCumulativeTotalsAcrossSkippedRecordsAndAttempts) {
  auto registry = std::make_shared<prometheus::Registry>();
  AgentMetrics m(registry, "test");
  m.UpdateJob("j1", Round(1, 100, 10));
  m.UpdateJob("j1", Round(3, 300, 30));  // round 2's record was never seen
  EXPECT_EQ(Value(*registry, "vsdm_train_broadcast_bytes_total", "j1"), 300);
  EXPECT_EQ(Value(*registry, "vsdm_train_allreduce_bytes_total", "j1"), 600);
  EXPECT_EQ(Value(*registry, "vsdm_train_steps_total", "j1"), 30);
  m.UpdateJob("j1", Round(3, 300, 30));  // the same record again: nothing added
  EXPECT_EQ(Value(*registry, "vsdm_train_broadcast_bytes_total", "j1"), 300);
  // A new attempt resumes from its round-2 checkpoint: its byte totals start again from 0, its
  // step count continues from the checkpoint (steps already counted are not counted twice).
  m.UpdateJob("j1", Round(3, 50, 30));
  EXPECT_EQ(Value(*registry, "vsdm_train_broadcast_bytes_total", "j1"), 350);
  m.UpdateJob("j1", Round(4, 120, 40));
  EXPECT_EQ(Value(*registry, "vsdm_train_broadcast_bytes_total", "j1"), 420);
  EXPECT_EQ(Value(*registry, "vsdm_train_steps_total", "j1"), 40);
  // Another job has its own series; a removed job's series are gone.
  m.UpdateJob("j2", Round(1, 7, 10));
  EXPECT_EQ(Value(*registry, "vsdm_train_broadcast_bytes_total", "j2"), 7);
  m.RemoveJob("j1");
  EXPECT_EQ(Value(*registry, "vsdm_train_broadcast_bytes_total", "j1"), -1);
  EXPECT_EQ(Value(*registry, "vsdm_train_broadcast_bytes_total", "j2"), 7);
}

TEST(AgentMetricsTest, DeviceMemoryIsExportedOnlyWhenMeasured) {
  auto registry = std::make_shared<prometheus::Registry>();
  AgentMetrics m(registry, "test");
  m.UpdateJob("j1", Round(1, 0, 10));  // device_memory_used_bytes = -1 (CPU)
  EXPECT_EQ(Value(*registry, "vsdm_device_memory_used_bytes", "j1"), -1);
  auto p = Round(2, 0, 20);
  p.device_memory_used_bytes = 1 << 20;
  m.UpdateJob("j1", p);
  EXPECT_EQ(Value(*registry, "vsdm_device_memory_used_bytes", "j1"), 1 << 20);
}

}  // namespace
}  // namespace vsdm::worker
