#include "core/image_metrics.h"

#include <gtest/gtest.h>
