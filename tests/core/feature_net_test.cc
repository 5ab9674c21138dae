#include "core/feature_net.h"

#include <gtest/gtest.h>
