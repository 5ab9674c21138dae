#include "core/image_data.h"

namespace vsdm::core {}  // namespace vsdm::core
