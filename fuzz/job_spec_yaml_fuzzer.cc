// libFuzzer target: ParseJobSpecYaml (common/job_spec.h) on arbitrary text. Whatever the text,
// the parser must return (never throw, abort or touch bad memory); a spec it accepts must pass
// ValidateJobSpec and print as JSON (what metrics.json does with it).
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/job_spec.h"
#include "fuzz/fuzz_util.h"
#include "nlohmann/json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<vsdm::JobSpec> spec = vsdm::ParseJobSpecYaml(text);
  if (!spec.ok()) {
    vsdm::fuzz::Require(!spec.status().message().empty(), "a refusal without a message");
    return 0;
  }
  vsdm::fuzz::Require(vsdm::ValidateJobSpec(*spec).ok(), "ParseJobSpecYaml accepted a spec ValidateJobSpec refuses");
  (void)vsdm::JobSpecToJson(*spec).dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
  return 0;
}
