#include "common/metrics_exposer.h"

#include "absl/strings/str_cat.h"

namespace vsdm {

absl::StatusOr<MetricsEndpoint> ServeMetrics(const std::string& listen,
                                             const std::shared_ptr<prometheus::Registry>& registry) {
  MetricsEndpoint e;
  if (listen.empty()) return e;
  try {
    e.exposer = std::make_unique<prometheus::Exposer>(listen);
  } catch (const std::exception& ex) {
    return absl::InvalidArgumentError(absl::StrCat("--metrics-listen ", listen, ": ", ex.what()));
  }
  e.exposer->RegisterCollectable(registry);
  const auto ports = e.exposer->GetListeningPorts();
  e.port = ports.empty() ? 0 : ports[0];
  return e;
}

}  // namespace vsdm
