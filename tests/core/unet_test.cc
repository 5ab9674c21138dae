#include "core/unet.h"

#include <gtest/gtest.h>
