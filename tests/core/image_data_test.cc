#include "core/image_data.h"

#include <gtest/gtest.h>
