#include "core/plot.h"

#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace vsdm::core {
namespace {

struct Box {
  double x0, y0, w, h;  // pixel rectangle
  double lo[2], hi[2];  // data range
  double px(double x) const { return x0 + (x - lo[0]) / (hi[0] - lo[0]) * w; }
  double py(double y) const { return y0 + h - (y - lo[1]) / (hi[1] - lo[1]) * h; }
};

void Range(const torch::Tensor& pts, double lo[2], double hi[2]) {
  torch::Tensor p = pts.reshape({-1, 2}).to(torch::kFloat64);
  for (int a = 0; a < 2; ++a) {
    // 0.5% / 99.5% quantiles keep a few outliers from squashing the picture.
    torch::Tensor col = std::get<0>(p.select(1, a).sort());
    int64_t n = col.size(0);
    double l = col[static_cast<int64_t>(0.002 * (n - 1))].item<double>();
    double h = col[static_cast<int64_t>(0.998 * (n - 1))].item<double>();
    double pad = 0.08 * std::max(h - l, 1e-9);
    lo[a] = l - pad;
    hi[a] = h + pad;
  }
}

void Frame(cairo_t* cr, const Box& b, const std::string& label) {
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_rectangle(cr, b.x0, b.y0, b.w, b.h);
  cairo_fill(cr);
  cairo_set_source_rgb(cr, 0.75, 0.75, 0.75);
  cairo_set_line_width(cr, 1.0);
  cairo_rectangle(cr, b.x0 + 0.5, b.y0 + 0.5, b.w - 1, b.h - 1);
  cairo_stroke(cr);
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  cairo_set_font_size(cr, 15);
  cairo_move_to(cr, b.x0, b.y0 - 8);
  cairo_show_text(cr, label.c_str());
  cairo_set_font_size(cr, 11);
  cairo_set_source_rgb(cr, 0.4, 0.4, 0.4);
  auto tick = [&](double x, double y, const std::string& s) {
    cairo_move_to(cr, x, y);
    cairo_show_text(cr, s.c_str());
  };
  tick(b.x0, b.y0 + b.h + 14, absl::StrFormat("x: %.3g .. %.3g", b.lo[0], b.hi[0]));
  tick(b.x0 + b.w - 120, b.y0 + b.h + 14, absl::StrFormat("y: %.3g .. %.3g", b.lo[1], b.hi[1]));
}

void Points(cairo_t* cr, const Box& b, const torch::Tensor& pts, double r, double g, double bl, double alpha,
            double radius) {
  torch::Tensor p = pts.to(torch::kFloat64).contiguous();
  auto a = p.accessor<double, 2>();
  cairo_set_source_rgba(cr, r, g, bl, alpha);
  cairo_save(cr);
  cairo_rectangle(cr, b.x0, b.y0, b.w, b.h);
  cairo_clip(cr);
  for (int64_t i = 0; i < p.size(0); ++i) {
    cairo_arc(cr, b.px(a[i][0]), b.py(a[i][1]), radius, 0, 2 * M_PI);
    cairo_fill(cr);
  }
  cairo_restore(cr);
}

}  // namespace

absl::Status WriteScatterPng(const std::string& path, const ScatterPlot& plot) {
  const int panel = 460, margin = 40, top = 30 + 20 * static_cast<int>(plot.caption.size()) + 40;
  const int panels = plot.trajectories.defined() ? 3 : 2;
  const int W = margin + panels * (panel + margin), H = top + panel + 50;
  cairo_surface_t* surf = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, W, H);
  cairo_t* cr = cairo_create(surf);
  cairo_set_source_rgb(cr, 0.96, 0.96, 0.96);
  cairo_paint(cr);
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
  cairo_set_source_rgb(cr, 0.05, 0.05, 0.05);
  cairo_set_font_size(cr, 18);
  cairo_move_to(cr, margin, 28);
  cairo_show_text(cr, plot.title.c_str());
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 13);
  for (size_t i = 0; i < plot.caption.size(); ++i) {
    cairo_move_to(cr, margin, 52 + 20 * i);
    cairo_show_text(cr, plot.caption[i].c_str());
  }

  Box b{static_cast<double>(margin),
        static_cast<double>(top),
        static_cast<double>(panel),
        static_cast<double>(panel),
        {0, 0},
        {1, 1}};
  Range(plot.data, b.lo, b.hi);
  const int64_t n_show = 4000;
  Frame(cr, b, absl::StrCat("data (", std::min<int64_t>(n_show, plot.data.size(0)), " fresh points)"));
  Points(cr, b, plot.data.slice(0, 0, n_show), 0.2, 0.2, 0.2, 0.45, 1.3);

  Box s = b;
  s.x0 += panel + margin;
  Frame(cr, s, absl::StrCat("samples (", std::min<int64_t>(n_show, plot.samples.size(0)), ") over data"));
  Points(cr, s, plot.data.slice(0, 0, n_show), 0.6, 0.6, 0.6, 0.25, 1.2);
  Points(cr, s, plot.samples.slice(0, 0, n_show), 0.12, 0.38, 0.85, 0.5, 1.3);

  if (plot.trajectories.defined()) {
    Box t = s;
    t.x0 += panel + margin;
    torch::Tensor tr = plot.trajectories.to(torch::kFloat64).contiguous();
    Range(torch::cat({plot.data.to(torch::kFloat64), tr.reshape({-1, 2})}, 0), t.lo, t.hi);
    Frame(cr, t, absl::StrCat("probability-flow ODE paths (", tr.size(1), ")"));
    Points(cr, t, plot.data.slice(0, 0, n_show), 0.7, 0.7, 0.7, 0.25, 1.0);
    cairo_save(cr);
    cairo_rectangle(cr, t.x0, t.y0, t.w, t.h);
    cairo_clip(cr);
    auto a = tr.accessor<double, 3>();
    cairo_set_line_width(cr, 1.0);
    for (int64_t j = 0; j < tr.size(1); ++j) {
      cairo_set_source_rgba(cr, 0.9, 0.45, 0.1, 0.7);
      cairo_move_to(cr, t.px(a[0][j][0]), t.py(a[0][j][1]));
      for (int64_t k = 1; k < tr.size(0); ++k) cairo_line_to(cr, t.px(a[k][j][0]), t.py(a[k][j][1]));
      cairo_stroke(cr);
      const int64_t last = tr.size(0) - 1;
      cairo_set_source_rgba(cr, 0.12, 0.38, 0.85, 0.9);  // end point = sample
      cairo_arc(cr, t.px(a[last][j][0]), t.py(a[last][j][1]), 2.2, 0, 2 * M_PI);
      cairo_fill(cr);
      cairo_set_source_rgba(cr, 0.1, 0.1, 0.1, 0.9);  // start point = prior draw
      cairo_arc(cr, t.px(a[0][j][0]), t.py(a[0][j][1]), 1.8, 0, 2 * M_PI);
      cairo_fill(cr);
    }
    cairo_restore(cr);
  }
  cairo_destroy(cr);
  std::string tmp = path + ".tmp";
  cairo_status_t st = cairo_surface_write_to_png(surf, tmp.c_str());
  cairo_surface_destroy(surf);
  if (st != CAIRO_STATUS_SUCCESS)
    return absl::InternalError(absl::StrCat("write ", path, ": ", cairo_status_to_string(st)));
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return absl::InternalError(absl::StrCat("rename ", path, ": ", ec.message()));
  return absl::OkStatus();
}

}  // namespace vsdm::core
