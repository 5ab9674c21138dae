#include "core/image_plot.h"

#include <gtest/gtest.h>
