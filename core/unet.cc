#include "core/unet.h"

namespace vsdm::core {}  // namespace vsdm::core
