#include "core/series_data.h"

#include <gtest/gtest.h>
