// Serving a process's Prometheus registry on /metrics (prometheus-cpp's Exposer), shared by the
// coordinator and the worker agent: one place for the listen/bind error and the port lookup.
#pragma once

#include <memory>
#include <string>

#include <prometheus/exposer.h>
#include <prometheus/registry.h>

#include "absl/status/statusor.h"

namespace vsdm {

struct MetricsEndpoint {
  std::unique_ptr<prometheus::Exposer> exposer;  // null when disabled
  int port = 0;                                  // the bound port (0 when disabled)
};

// Serves `registry` on `listen` (HOST:PORT; port 0 picks a free one). An empty `listen`
// disables the endpoint. INVALID_ARGUMENT (naming --metrics-listen) when it cannot bind.
absl::StatusOr<MetricsEndpoint> ServeMetrics(const std::string& listen,
                                             const std::shared_ptr<prometheus::Registry>& registry);

}  // namespace vsdm
