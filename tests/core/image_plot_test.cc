#include "core/image_plot.h"

#include <cairo.h>
#include <stdlib.h>

#include <filesystem>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/core/temp_dir_test.h"

namespace vsdm::core {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

using ImagePlotTest = TempDirTest;

// A full report of 28x28 grey images.
ImageReport GreyReport() {
  ImageReport r;
  r.title = "fashion_mnist: vsdm, 2000 steps";
  r.caption = {"FID (feature net) 12.3, precision 0.71, recall 0.55", "classifier accuracy on samples 0.83"};
  r.samples = torch::rand({100, 1, 28, 28});
  r.real = torch::rand({64, 1, 28, 28});
  r.paths = torch::rand({5, 4, 1, 28, 28});
  r.path_times = {1.0, 0.75, 0.5, 0.25, 0.0};
  r.d_image = torch::randn({1, 28, 28});
  return r;
}

struct Png {
  int width = 0, height = 0;
  int64_t pure_red = 0;  // pixels exactly (255, 0, 0)
  int64_t coloured = 0;  // pixels with R, G, B not all equal
};

Png ReadPng(const std::string& path) {
  Png out;
  cairo_surface_t* s = cairo_image_surface_create_from_png(path.c_str());
  EXPECT_EQ(cairo_surface_status(s), CAIRO_STATUS_SUCCESS);
  out.width = cairo_image_surface_get_width(s);
  out.height = cairo_image_surface_get_height(s);
  const unsigned char* data = cairo_image_surface_get_data(s);
  const int stride = cairo_image_surface_get_stride(s);
  for (int y = 0; y < out.height; ++y) {
    const uint32_t* row = reinterpret_cast<const uint32_t*>(data + static_cast<int64_t>(y) * stride);
    for (int x = 0; x < out.width; ++x) {
      const uint32_t r = (row[x] >> 16) & 0xff, g = (row[x] >> 8) & 0xff, b = row[x] & 0xff;
      out.pure_red += r == 255 && g == 0 && b == 0;
      out.coloured += !(r == g && g == b);
    }
  }
  cairo_surface_destroy(s);
  return out;
}

TEST_F(ImagePlotTest, WritesFullReportPng) {
  const std::string path = Path("report.png");
  ASSERT_TRUE(WriteImageReportPng(path, GreyReport()).ok());
  ASSERT_TRUE(fs::exists(path));
  EXPECT_GT(fs::file_size(path), 20000u);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  const Png png = ReadPng(path);
  // Two 10-column grids of 28x28 tiles blown up to 56x56, then the paths strip and D below them.
  EXPECT_GE(png.width, 2 * 10 * 56);
  EXPECT_LE(png.width, 2 * 10 * 56 + 300);
  EXPECT_GE(png.height, 10 * 56 + 4 * 56 + 56 * 3);
  EXPECT_LE(png.height, 2000);
  EXPECT_GT(png.coloured, 28 * 28);  // the colour-mapped D image
}

TEST_F(ImagePlotTest, DrawsGreyImagesGreyAndColourAsRgb) {
  ImageReport grey = GreyReport();
  grey.d_image = torch::Tensor();  // the only coloured part
  ASSERT_TRUE(WriteImageReportPng(Path("grey.png"), grey).ok());
  EXPECT_EQ(ReadPng(Path("grey.png")).coloured, 0);

  ImageReport rgb;
  rgb.title = "rgb";
  rgb.samples = torch::zeros({30, 3, 16, 16});
  rgb.samples.select(1, 0).fill_(1.0);  // pure red
  rgb.real = torch::rand({20, 3, 16, 16});
  ASSERT_TRUE(WriteImageReportPng(Path("rgb.png"), rgb).ok());
  const Png png = ReadPng(Path("rgb.png"));
  // 16x16 tiles are drawn 64x64 (nearest): 30 solid red tiles.
  EXPECT_GE(png.pure_red, 30 * 64 * 64);
  EXPECT_LT(png.pure_red, 31 * 64 * 64);
}

TEST_F(ImagePlotTest, DrawsAtMostHundredTilesAndToleratesOddValues) {
  ImageReport r = GreyReport();
  r.samples = torch::full({250, 1, 8, 8}, std::nan(""));
  r.real = torch::empty({0, 1, 8, 8});
  r.paths = torch::rand({40, 20, 1, 8, 8}).mul(3).sub(1);  // outside [0, 1]: clamped
  r.path_times.assign(40, 0.5);
  r.d_image = torch::full({1, 8, 8}, 2.0);  // constant D
  r.d_image[0][0][0] = INFINITY;
  ASSERT_TRUE(WriteImageReportPng(Path("odd.png"), r).ok());
  EXPECT_GT(ReadPng(Path("odd.png")).width, 0);
}

TEST_F(ImagePlotTest, RefusesBadShapes) {
  auto refused = [&](const ImageReport& r, const std::string& field) {
    absl::Status st = WriteImageReportPng(Path("bad.png"), r);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_THAT(std::string(st.message()), HasSubstr(field));
    EXPECT_FALSE(fs::exists(Path("bad.png")));
  };
  ImageReport r = GreyReport();
  r.samples = torch::Tensor();
  refused(r, "samples must be [n, C, H, W]");
  r = GreyReport();
  r.samples = torch::rand({4, 28, 28});
  refused(r, "samples must be [n, C, H, W] with C in {1, 3}");
  r = GreyReport();
  r.samples = torch::rand({4, 2, 28, 28});
  refused(r, "samples must be");
  r = GreyReport();
  r.real = torch::rand({4, 1, 28, 27});
  refused(r, "real must be [m, 1, 28, 28]");
  r = GreyReport();
  r.real = torch::Tensor();
  refused(r, "real must be");
  r = GreyReport();
  r.paths = torch::rand({5, 4, 28, 28});
  refused(r, "paths must be [P, k, 1, 28, 28], got [5, 4, 28, 28]");
  r = GreyReport();
  r.path_times = {1.0, 0.0};
  refused(r, "path_times holds 2 values, paths has P = 5");
  r = GreyReport();
  r.d_image = torch::rand({3, 28, 28});
  refused(r, "d_image must be [1, 28, 28]");
}

TEST_F(ImagePlotTest, ReportsWriteFailure) {
  absl::Status st = WriteImageReportPng(Path("no/such/dir/report.png"), GreyReport());
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace vsdm::core
