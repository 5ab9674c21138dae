#include "core/image_plot.h"

#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace vsdm::core {
namespace {

constexpr int kMargin = 24;         // canvas edge and space between sections, px
constexpr int kGap = 2;             // between tiles, px
constexpr int kCols = 10;           // grid columns
constexpr int kMaxGrid = 100;       // images per grid
constexpr int kMaxPaths = 10;       // path rows drawn
constexpr int kMaxTimes = 16;       // path columns drawn (evenly spaced when there are more)
constexpr int64_t kMaxSide = 4096;  // largest image side accepted

std::string Shape(const torch::Tensor& t) {
  if (!t.defined()) return "undefined";
  return absl::StrCat("[", absl::StrJoin(t.sizes(), ", "), "]");
}

bool Numeric(const torch::Tensor& t) { return !t.is_complex(); }  // real floating, integer or bool

absl::Status CheckShapes(const ImageReport& r) {
  const torch::Tensor& s = r.samples;
  if (!s.defined() || s.dim() != 4 || !Numeric(s) || (s.size(1) != 1 && s.size(1) != 3) || s.size(2) < 1 ||
      s.size(3) < 1 || s.size(2) > kMaxSide || s.size(3) > kMaxSide)
    return absl::InvalidArgumentError(absl::StrCat(
        "image report: samples must be [n, C, H, W] with C in {1, 3} and 1 <= H, W <= ", kMaxSide, ", got ", Shape(s)));
  const auto chw = s.sizes().slice(1);
  if (!r.real.defined() || r.real.dim() != 4 || !Numeric(r.real) || r.real.sizes().slice(1) != chw)
    return absl::InvalidArgumentError(absl::StrCat("image report: real must be [m, ", absl::StrJoin(chw, ", "),
                                                   "] (the samples' C, H, W), got ", Shape(r.real)));
  if (r.paths.defined()) {
    if (r.paths.dim() != 5 || !Numeric(r.paths) || r.paths.sizes().slice(2) != chw)
      return absl::InvalidArgumentError(
          absl::StrCat("image report: paths must be [P, k, ", absl::StrJoin(chw, ", "), "], got ", Shape(r.paths)));
    if (static_cast<int64_t>(r.path_times.size()) != r.paths.size(0))
      return absl::InvalidArgumentError(absl::StrCat("image report: path_times holds ", r.path_times.size(),
                                                     " values, paths has P = ", r.paths.size(0)));
  }
  if (r.d_image.defined() && (r.d_image.dim() != 3 || !Numeric(r.d_image) || r.d_image.sizes() != chw))
    return absl::InvalidArgumentError(absl::StrCat("image report: d_image must be [", absl::StrJoin(chw, ", "),
                                                   "] (the samples' C, H, W), got ", Shape(r.d_image)));
  return absl::OkStatus();
}

// Images -> float32 on the CPU, NaN -> 0, clamped to [0, 1], contiguous.
torch::Tensor Unit(const torch::Tensor& t) {
  return t.detach().to(torch::kCPU, torch::kFloat32).nan_to_num(0.0, 1.0, 0.0).clamp(0.0, 1.0).contiguous();
}

// Tile scale: small images are blown up (nearest) to about 56 px a side; large ones shrink to 96.
double TileScale(int64_t h, int64_t w) {
  const int64_t m = std::max(h, w);
  if (m > 96) return 96.0 / static_cast<double>(m);
  return std::max<int64_t>(1, (56 + m - 1) / m);
}

// An RGB24 surface of image `img` ([C, H, W] in [0, 1]); grey is drawn grey.
cairo_surface_t* ImageSurface(const torch::Tensor& img) {
  const int c = static_cast<int>(img.size(0)), h = static_cast<int>(img.size(1)), w = static_cast<int>(img.size(2));
  cairo_surface_t* surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
  cairo_surface_flush(surf);
  unsigned char* data = cairo_image_surface_get_data(surf);
  const int stride = cairo_image_surface_get_stride(surf);
  const float* p = img.data_ptr<float>();
  const int64_t plane = static_cast<int64_t>(h) * w;
  for (int y = 0; y < h; ++y) {
    uint32_t* row = reinterpret_cast<uint32_t*>(data + static_cast<int64_t>(y) * stride);
    for (int x = 0; x < w; ++x) {
      const int64_t i = static_cast<int64_t>(y) * w + x;
      auto byte = [&](int ch) { return static_cast<uint32_t>(std::lround(255.0f * p[ch * plane + i])); };
      const uint32_t r = byte(0), g = c == 3 ? byte(1) : r, b = c == 3 ? byte(2) : r;
      row[x] = (r << 16) | (g << 8) | b;
    }
  }
  cairo_surface_mark_dirty(surf);
  return surf;
}

// Paints `surf` at (x, y), scaled by `scale` (nearest when enlarging).
void PaintScaled(cairo_t* cr, cairo_surface_t* surf, double x, double y, double scale) {
  cairo_save(cr);
  cairo_translate(cr, x, y);
  cairo_scale(cr, scale, scale);
  cairo_set_source_surface(cr, surf, 0, 0);
  cairo_pattern_set_filter(cairo_get_source(cr), scale >= 1 ? CAIRO_FILTER_NEAREST : CAIRO_FILTER_GOOD);
  cairo_rectangle(cr, 0, 0, cairo_image_surface_get_width(surf), cairo_image_surface_get_height(surf));
  cairo_fill(cr);
  cairo_restore(cr);
}

void PaintImage(cairo_t* cr, const torch::Tensor& img, double x, double y, double scale) {
  cairo_surface_t* surf = ImageSurface(img);
  PaintScaled(cr, surf, x, y, scale);
  cairo_surface_destroy(surf);
}

void Text(cairo_t* cr, double x, double y, double size, double grey, const std::string& s, bool bold = false) {
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL,
                         bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
  cairo_set_source_rgb(cr, grey, grey, grey);
  cairo_move_to(cr, x, y);
  cairo_show_text(cr, s.c_str());
}

double TextWidth(const std::string& s, double size, bool bold) {
  cairo_surface_t* surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1);
  cairo_t* cr = cairo_create(surf);
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL,
                         bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
  cairo_text_extents_t ext;
  cairo_text_extents(cr, s.c_str(), &ext);
  cairo_destroy(cr);
  cairo_surface_destroy(surf);
  return ext.x_advance;
}

// A viridis-like map of u in [0, 1] (five of matplotlib's viridis stops, linearly joined).
void Viridis(double u, double rgb[3]) {
  static const double kStops[5][3] = {{0.267, 0.005, 0.329},
                                      {0.229, 0.322, 0.546},
                                      {0.128, 0.567, 0.551},
                                      {0.369, 0.789, 0.383},
                                      {0.993, 0.906, 0.144}};
  u = std::clamp(u, 0.0, 1.0) * 4;
  const int i = std::min(3, static_cast<int>(u));
  const double f = u - i;
  for (int k = 0; k < 3; ++k) rgb[k] = kStops[i][k] * (1 - f) + kStops[i + 1][k] * f;
}

// Pixel geometry of the picture, computed once from the report (see WriteImageReportPng).
struct Layout {
  double scale = 1, d_scale = 1;                  // tile and D-image scales
  int tw = 0, th = 0, dw = 0, dh = 0;             // tile and D-channel sizes, px
  int grid_w = 0, grid_h = 0;                     // one 10-column grid
  std::vector<int64_t> times;                     // path columns drawn (indices into P)
  int64_t path_rows = 0;                          // path rows drawn
  int top = 0, grid_y = 0, paths_y = 0, d_y = 0;  // section tops
  int width = 0, height = 0;
};

int GridHeight(int64_t n, int th) {
  const int64_t rows = (std::min<int64_t>(n, kMaxGrid) + kCols - 1) / kCols;
  return rows == 0 ? th : static_cast<int>(rows * th + (rows - 1) * kGap);
}

Layout MakeLayout(const ImageReport& r) {
  Layout L;
  const int64_t h = r.samples.size(2), w = r.samples.size(3);
  L.scale = TileScale(h, w);
  L.tw = static_cast<int>(std::lround(w * L.scale));
  L.th = static_cast<int>(std::lround(h * L.scale));
  const int64_t m = std::max(h, w);
  L.d_scale = m > 168 ? 168.0 / static_cast<double>(m) : static_cast<double>(std::max<int64_t>(1, 168 / m));
  L.dw = static_cast<int>(std::lround(w * L.d_scale));
  L.dh = static_cast<int>(std::lround(h * L.d_scale));
  L.grid_w = kCols * L.tw + (kCols - 1) * kGap;
  L.grid_h = std::max(GridHeight(r.samples.size(0), L.th), GridHeight(r.real.size(0), L.th));
  L.top = 52 + 20 * static_cast<int>(r.caption.size());
  L.grid_y = L.top + 22;
  int y = L.grid_y + L.grid_h + kMargin;
  int width = 2 * L.grid_w + 4 * kMargin;
  width = std::max(width, static_cast<int>(2 * kMargin + TextWidth(r.title, 18, true)));
  for (const std::string& line : r.caption)
    width = std::max(width, static_cast<int>(2 * kMargin + TextWidth(line, 13, false)));
  if (r.paths.defined() && r.paths.size(0) > 0 && r.paths.size(1) > 0) {
    const int64_t p = r.paths.size(0);
    for (int64_t j = 0; j < std::min<int64_t>(p, kMaxTimes); ++j)
      L.times.push_back(p <= kMaxTimes ? j : static_cast<int64_t>(std::llround(j * (p - 1.0) / (kMaxTimes - 1))));
    L.path_rows = std::min<int64_t>(r.paths.size(1), kMaxPaths);
    L.paths_y = y + 36;  // section label, then t labels
    const int col_w = std::max(L.tw, 52);
    width = std::max(width, 2 * kMargin + static_cast<int>(L.times.size()) * (col_w + kGap));
    y = L.paths_y + static_cast<int>(L.path_rows) * (L.th + kGap) + kMargin;
  }
  if (r.d_image.defined()) {
    L.d_y = y + 22;
    const int c = static_cast<int>(r.d_image.size(0));
    width = std::max(width, 2 * kMargin + c * (L.dw + 12) + 14 + 90);
    y = L.d_y + L.dh + 20 + kMargin;
  }
  L.width = std::min(width, 16000);
  L.height = std::min(y, 16000);
  return L;
}

void DrawGrid(cairo_t* cr, const Layout& L, const torch::Tensor& images, double x0, const std::string& label) {
  const torch::Tensor img = Unit(images.slice(0, 0, kMaxGrid));
  const int64_t n = images.size(0);
  Text(cr, x0, L.grid_y - 8, 15, 0.1,
       n > kMaxGrid ? absl::StrCat(label, " (", kMaxGrid, " of ", n, ")") : absl::StrCat(label, " (", n, ")"));
  for (int64_t i = 0; i < img.size(0); ++i) {
    const double x = x0 + (i % kCols) * (L.tw + kGap), y = L.grid_y + (i / kCols) * (L.th + kGap);
    PaintImage(cr, img[i], x, y, L.scale);
  }
}

void DrawPaths(cairo_t* cr, const Layout& L, const ImageReport& r) {
  const int col_w = std::max(L.tw, 52);
  Text(cr, kMargin, L.paths_y - 24, 15, 0.1,
       absl::StrCat("probability-flow paths (", L.path_rows, " of ", r.paths.size(1), ", x_t at ", L.times.size(),
                    " of ", r.paths.size(0), " times)"));
  for (size_t j = 0; j < L.times.size(); ++j) {
    const double x = kMargin + static_cast<double>(j) * (col_w + kGap);
    Text(cr, x, L.paths_y - 5, 11, 0.35, absl::StrFormat("t=%.3g", r.path_times[L.times[j]]));
    const torch::Tensor col = Unit(r.paths[L.times[j]].slice(0, 0, L.path_rows));
    for (int64_t i = 0; i < L.path_rows; ++i) PaintImage(cr, col[i], x, L.paths_y + i * (L.th + kGap), L.scale);
  }
}

void DrawD(cairo_t* cr, const Layout& L, const torch::Tensor& d_in) {
  const torch::Tensor d = d_in.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  const torch::Tensor finite = d.isfinite();
  double lo = 0, hi = 0;
  if (finite.any().item<bool>()) {
    const torch::Tensor v = d.masked_select(finite);
    lo = v.min().item<double>();
    hi = v.max().item<double>();
  }
  const double span = hi > lo ? hi - lo : 1.0;
  const int c = static_cast<int>(d.size(0)), h = static_cast<int>(d.size(1)), w = static_cast<int>(d.size(2));
  Text(cr, kMargin, L.d_y - 8, 15, 0.1, "learned D = I - 2A per pixel");
  const double* p = d.data_ptr<double>();
  const char* names[3] = {"R", "G", "B"};
  for (int ch = 0; ch < c; ++ch) {
    cairo_surface_t* surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
    cairo_surface_flush(surf);
    unsigned char* data = cairo_image_surface_get_data(surf);
    const int stride = cairo_image_surface_get_stride(surf);
    for (int y = 0; y < h; ++y) {
      uint32_t* row = reinterpret_cast<uint32_t*>(data + static_cast<int64_t>(y) * stride);
      for (int x = 0; x < w; ++x) {
        const double v = p[(static_cast<int64_t>(ch) * h + y) * w + x];
        double rgb[3] = {0.5, 0.5, 0.5};  // non-finite values are grey
        if (std::isfinite(v)) Viridis((v - lo) / span, rgb);
        row[x] = (static_cast<uint32_t>(std::lround(255 * rgb[0])) << 16) |
                 (static_cast<uint32_t>(std::lround(255 * rgb[1])) << 8) |
                 static_cast<uint32_t>(std::lround(255 * rgb[2]));
      }
    }
    cairo_surface_mark_dirty(surf);
    const double x = kMargin + ch * (L.dw + 12);
    PaintScaled(cr, surf, x, L.d_y, L.d_scale);
    cairo_surface_destroy(surf);
    if (c == 3) Text(cr, x, L.d_y + L.dh + 14, 11, 0.35, names[ch]);
  }
  // Scale bar: max at the top, min at the bottom.
  const double bx = kMargin + c * (L.dw + 12);
  for (int y = 0; y < L.dh; ++y) {
    double rgb[3];
    Viridis(1.0 - static_cast<double>(y) / std::max(1, L.dh - 1), rgb);
    cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
    cairo_rectangle(cr, bx, L.d_y + y, 14, 1);
    cairo_fill(cr);
  }
  Text(cr, bx + 18, L.d_y + 10, 11, 0.2, absl::StrFormat("max %.3g", hi));
  Text(cr, bx + 18, L.d_y + L.dh, 11, 0.2, absl::StrFormat("min %.3g", lo));
}

cairo_status_t AppendPng(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}

// The PNG bytes of the report (shapes already checked).
absl::StatusOr<std::string> Render(const ImageReport& r) {
  const Layout L = MakeLayout(r);
  cairo_surface_t* surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, L.width, L.height);
  cairo_t* cr = cairo_create(surf);
  cairo_set_source_rgb(cr, 0.96, 0.96, 0.96);
  cairo_paint(cr);
  Text(cr, kMargin, 28, 18, 0.05, r.title, /*bold=*/true);
  for (size_t i = 0; i < r.caption.size(); ++i) Text(cr, kMargin, 52 + 20 * i, 13, 0.05, r.caption[i]);
  DrawGrid(cr, L, r.samples, kMargin, "samples");
  DrawGrid(cr, L, r.real, 3 * kMargin + L.grid_w, "real (test)");
  if (!L.times.empty()) DrawPaths(cr, L, r);
  if (r.d_image.defined()) DrawD(cr, L, r.d_image);
  cairo_status_t st = cairo_status(cr);
  cairo_destroy(cr);
  std::string png;
  if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_write_to_png_stream(surf, AppendPng, &png);
  cairo_surface_destroy(surf);
  if (st != CAIRO_STATUS_SUCCESS)
    return absl::InternalError(absl::StrCat("image report: cairo: ", cairo_status_to_string(st)));
  return png;
}

}  // namespace

absl::Status WriteImageReportPng(const std::string& path, const ImageReport& report) {
  VSDM_RETURN_IF_ERROR(CheckShapes(report));
  absl::StatusOr<std::string> png;
  try {
    png = Render(report);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("image report ", path, ": ", e.what()));
  }
  if (!png.ok()) return png.status();
  return AtomicWriteFile(path, *png);
}

}  // namespace vsdm::core
