#include "common/format.h"

#include "absl/strings/str_format.h"

namespace vsdm {

std::string FormatDuration(double s) {
  if (!(s > 0)) s = 0;
  if (s < 60) return absl::StrFormat("%.0fs", s);
  const int n = static_cast<int>(s);
  if (s < 3600) return absl::StrFormat("%dm%02ds", n / 60, n % 60);
  return absl::StrFormat("%dh%02dm", n / 3600, (n % 3600) / 60);
}

}  // namespace vsdm
