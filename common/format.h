// Human-readable figures shared by the CLI and the training runtime.
#pragma once

#include <string>

namespace vsdm {

// "42s", "3m05s", "1h02m" (negative counts as 0).
std::string FormatDuration(double seconds);

}  // namespace vsdm
