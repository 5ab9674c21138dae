#include "core/feature_net.h"

namespace vsdm::core {}  // namespace vsdm::core
