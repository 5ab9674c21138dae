#include "core/image_metrics.h"

namespace vsdm::core {}  // namespace vsdm::core
