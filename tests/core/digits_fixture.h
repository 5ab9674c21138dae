// The vendored sklearn digits (data/images/digits8x8.csv.gz, 1797 8x8 images) through the
// project's own loader, 80/20 by a seeded split: the small labelled set of the image tests.
#pragma once

#include <string>

#include <gtest/gtest.h>

#include "core/image_data.h"

namespace vsdm::core {

inline ImageData LoadVendoredDigits() {
  ImageDataPaths paths;
  paths.data_dir = std::string(VSDM_SOURCE_DIR) + "/data";
  auto data = LoadImageData("digits", paths, /*test_fraction=*/0.2, /*seed=*/7);
  EXPECT_TRUE(data.ok()) << data.status();
  return data.ok() ? *data : ImageData{};
}

}  // namespace vsdm::core
