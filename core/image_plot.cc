#include "core/image_plot.h"

namespace vsdm::core {}  // namespace vsdm::core
