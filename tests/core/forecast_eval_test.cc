#include "core/forecast_eval.h"

#include <gtest/gtest.h>
