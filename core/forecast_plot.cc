// WriteFanChartPng of core/forecast_eval.h: the forecast fan chart (cairo PNG).
//
// Layout, top to bottom: the title and a legend; a grid of panels, one row per drawn window (at most
// kMaxRows) and one column per series (at most kMaxCols), each with the context (grey), the truth
// (black, dots), the forecast median (blue) and its 50% / 90% bands over steps relative to the origin
// (context negative, the same x range in every panel, labelled on the bottom row) and its own y range;
// then the learned A_D and the training span's correlation as heat maps with colour bars (cell values
// printed when D <= kMaxValueCells); then the caption. Non-finite values are skipped (lines break,
// cells turn grey); nothing non-finite reaches cairo.
#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "core/forecast_eval.h"

namespace vsdm::core {
namespace {

constexpr int kMargin = 24;         // canvas edge and space between sections, px
constexpr int kRowLabelW = 26;      // the rotated window label left of each row, px
constexpr int kYAxisW = 46;         // y tick labels left of each panel, px
constexpr int kPanelW = 220;        // plot area, px
constexpr int kPanelH = 140;        // plot area, px
constexpr int kPanelTitleH = 18;    // series name above a panel, px
constexpr int kXAxisH = 18;         // x tick labels under a panel, px
constexpr int kColGap = 10;         // between panel columns, px
constexpr int kRowGap = 8;          // between panel rows, px
constexpr int kMaxRows = 6;         // windows drawn
constexpr int kMaxCols = 8;         // series drawn
constexpr int kMaxValueCells = 12;  // heat-map cell values printed up to this D
constexpr int kHeatBarW = 14;       // colour bar width, px
constexpr double kClampAbs = 1e100; // finite values are clamped to +-this before any arithmetic

// Colours (RGB in [0, 1]).
constexpr double kBand90[3] = {0.78, 0.86, 0.96};
constexpr double kBand50[3] = {0.49, 0.65, 0.89};
constexpr double kMedian[3] = {0.05, 0.25, 0.70};
constexpr double kContext[3] = {0.55, 0.55, 0.55};
constexpr double kTruth[3] = {0.05, 0.05, 0.05};

std::string Shape(const torch::Tensor& t) {
  if (!t.defined()) return "undefined";
  return absl::StrCat("[", absl::StrJoin(t.sizes(), ", "), "]");
}

absl::Status CheckChart(const FanChart& c) {
  const torch::Tensor& f = c.forecasts;
  if (!f.defined() || f.dim() != 4 || f.size(1) < 1 || f.size(2) < 1 || f.size(3) < 1 || f.is_complex())
    return absl::InvalidArgumentError(
        absl::StrCat("fan chart: forecasts must be [W, S, H, D] with S, H, D >= 1, got ", Shape(f)));
  const int64_t w = f.size(0), h = f.size(2), d = f.size(3);
  if (!c.targets.defined() || c.targets.dim() != 3 || c.targets.size(0) != w || c.targets.size(1) != h ||
      c.targets.size(2) != d)
    return absl::InvalidArgumentError(
        absl::StrCat("fan chart: targets must be [", w, ", ", h, ", ", d, "] (W, H, D), got ", Shape(c.targets)));
  if (!c.contexts.defined() || c.contexts.dim() != 3 || c.contexts.size(0) != w || c.contexts.size(2) != d)
    return absl::InvalidArgumentError(
        absl::StrCat("fan chart: contexts must be [", w, ", C, ", d, "] (W, C, D), got ", Shape(c.contexts)));
  if (!c.series.empty() && static_cast<int64_t>(c.series.size()) != d)
    return absl::InvalidArgumentError(
        absl::StrCat("fan chart: series holds ", c.series.size(), " names, forecasts have D = ", d));
  for (int64_t i : c.windows)
    if (i < 0 || i >= w)
      return absl::InvalidArgumentError(absl::StrCat("fan chart: windows entry ", i, " must be in [0, ", w, ")"));
  for (const torch::Tensor* m : {&c.a, &c.corr})
    if (m->defined() && (m->dim() != 2 || m->size(0) != d || m->size(1) != d))
      return absl::InvalidArgumentError(absl::StrCat("fan chart: ", m == &c.a ? "a" : "corr", " must be [", d, ", ",
                                                     d, "] or undefined, got ", Shape(*m)));
  return absl::OkStatus();
}

// float64 CPU contiguous, +-inf and NaN kept (skipped when drawn), finite values clamped.
torch::Tensor F64(const torch::Tensor& t) {
  torch::Tensor x = t.detach().to(torch::kCPU, torch::kFloat64).contiguous().clone();
  const torch::Tensor finite = x.isfinite();
  return torch::where(finite, x.clamp(-kClampAbs, kClampAbs), x);
}

void SelectFont(cairo_t* cr, double size, bool bold) {
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL,
                         bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
}

void Text(cairo_t* cr, double x, double y, double size, double grey, const std::string& s, bool bold = false) {
  SelectFont(cr, size, bold);
  cairo_set_source_rgb(cr, grey, grey, grey);
  cairo_move_to(cr, x, y);
  cairo_show_text(cr, s.c_str());
}

double TextWidth(const std::string& s, double size, bool bold = false) {
  cairo_surface_t* surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1);
  cairo_t* cr = cairo_create(surf);
  SelectFont(cr, size, bold);
  cairo_text_extents_t ext;
  cairo_text_extents(cr, s.c_str(), &ext);
  cairo_destroy(cr);
  cairo_surface_destroy(surf);
  return ext.x_advance;
}

// Text whose right end is at x.
void TextRight(cairo_t* cr, double x, double y, double size, double grey, const std::string& s) {
  Text(cr, x - TextWidth(s, size), y, size, grey, s);
}

// Text rotated a quarter turn counter-clockwise, starting at (x, y) and reading upwards.
void TextUp(cairo_t* cr, double x, double y, double size, double grey, const std::string& s, bool bold = false) {
  cairo_save(cr);
  cairo_translate(cr, x, y);
  cairo_rotate(cr, -M_PI / 2);
  Text(cr, 0, 0, size, grey, s, bold);
  cairo_restore(cr);
}

// Shortens a series name for the heat-map axes.
std::string Abbrev(const std::string& s, size_t max_chars = 9) {
  if (s.size() <= max_chars) return s;
  return s.substr(0, max_chars - 1) + ".";
}

// A step of 1, 2 or 5 times a power of ten near `raw`.
double NiceStep(double raw) {
  if (!(raw > 0) || !std::isfinite(raw)) return 1;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / p;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

// A panel's pixel rectangle and data range.
struct Box {
  double x0, y0, w, h;
  double xlo, xhi, ylo, yhi;
  double px(double x) const { return x0 + (x - xlo) / (xhi - xlo) * w; }
  double py(double y) const { return y0 + h - (y - ylo) / (yhi - ylo) * h; }
};

// One drawn panel's data, float64: steps relative to the origin.
struct PanelData {
  std::vector<double> context;                // C values at steps -C..-1
  std::vector<double> truth;                  // H values at steps 0..H-1
  std::vector<double> q05, q25, q50, q75, q95;  // H per-step sample quantiles (NaN where no finite sample)
};

// Per-step quantiles (linear interpolation over the finite samples) of samples [S, H].
void StepQuantiles(const torch::Tensor& samples, PanelData& p) {
  const int64_t s = samples.size(0), h = samples.size(1);
  auto acc = samples.accessor<double, 2>();
  const double levels[5] = {0.05, 0.25, 0.5, 0.75, 0.95};
  std::vector<double>* outs[5] = {&p.q05, &p.q25, &p.q50, &p.q75, &p.q95};
  std::vector<double> col;
  for (int64_t k = 0; k < h; ++k) {
    col.clear();
    for (int64_t i = 0; i < s; ++i)
      if (std::isfinite(acc[i][k])) col.push_back(acc[i][k]);
    std::sort(col.begin(), col.end());
    for (int l = 0; l < 5; ++l) {
      double v = std::numeric_limits<double>::quiet_NaN();
      if (!col.empty()) {
        const double pos = levels[l] * static_cast<double>(col.size() - 1);
        const size_t lo = static_cast<size_t>(std::floor(pos)), hi = std::min(col.size() - 1, lo + 1);
        v = col[lo] + (pos - static_cast<double>(lo)) * (col[hi] - col[lo]);
      }
      outs[l]->push_back(v);
    }
  }
}

// The y range covering every finite value drawn, padded; [-1, 1] when there is none.
void YRange(const PanelData& p, double& lo, double& hi) {
  lo = std::numeric_limits<double>::infinity();
  hi = -lo;
  for (const std::vector<double>* v : {&p.context, &p.truth, &p.q05, &p.q95, &p.q50})
    for (double x : *v)
      if (std::isfinite(x)) {
        lo = std::min(lo, x);
        hi = std::max(hi, x);
      }
  if (!(lo <= hi)) {
    lo = -1;
    hi = 1;
    return;
  }
  double span = hi - lo;
  if (!(span > 1e-12 * std::max(1.0, std::abs(hi)))) span = std::max(1.0, std::abs(hi)) * 0.1;
  const double mid = 0.5 * (lo + hi);
  lo = std::min(lo, mid - 0.5 * span) - 0.06 * span;
  hi = std::max(hi, mid + 0.5 * span) + 0.06 * span;
}

// A polyline through the finite points (x0 + k, v[k]); non-finite values break it.
void Polyline(cairo_t* cr, const Box& b, double x0, const std::vector<double>& v) {
  bool open = false;
  for (size_t k = 0; k < v.size(); ++k) {
    if (!std::isfinite(v[k])) {
      open = false;
      continue;
    }
    const double x = b.px(x0 + static_cast<double>(k)), y = b.py(v[k]);
    if (open)
      cairo_line_to(cr, x, y);
    else
      cairo_move_to(cr, x, y);
    open = true;
  }
  cairo_stroke(cr);
}

// Fills between lo[k] and hi[k] (steps 0..H-1) over each run of steps where both are finite.
void Band(cairo_t* cr, const Box& b, const std::vector<double>& lo, const std::vector<double>& hi,
          const double rgb[3]) {
  cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
  const size_t n = lo.size();
  size_t k = 0;
  while (k < n) {
    if (!std::isfinite(lo[k]) || !std::isfinite(hi[k])) {
      ++k;
      continue;
    }
    size_t e = k;
    while (e + 1 < n && std::isfinite(lo[e + 1]) && std::isfinite(hi[e + 1])) ++e;
    if (e == k) {  // a single step: a narrow bar
      const double x = b.px(static_cast<double>(k));
      cairo_rectangle(cr, x - 3, b.py(hi[k]), 6, std::max(1.0, b.py(lo[k]) - b.py(hi[k])));
    } else {
      cairo_move_to(cr, b.px(static_cast<double>(k)), b.py(lo[k]));
      for (size_t j = k + 1; j <= e; ++j) cairo_line_to(cr, b.px(static_cast<double>(j)), b.py(lo[j]));
      for (size_t j = e + 1; j-- > k;) cairo_line_to(cr, b.px(static_cast<double>(j)), b.py(hi[j]));
      cairo_close_path(cr);
    }
    cairo_fill(cr);
    k = e + 1;
  }
}

void DrawPanel(cairo_t* cr, const Box& b, const PanelData& p, const std::string& title, bool x_labels) {
  // Frame and title.
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_rectangle(cr, b.x0, b.y0, b.w, b.h);
  cairo_fill(cr);
  Text(cr, b.x0, b.y0 - 5, 12, 0.1, title, /*bold=*/true);
  // Grid lines and tick labels.
  cairo_set_line_width(cr, 1.0);
  const double ystep = NiceStep((b.yhi - b.ylo) / 4);
  for (double v = std::ceil(b.ylo / ystep) * ystep; v <= b.yhi; v += ystep) {
    const double y = std::round(b.py(v)) + 0.5;
    cairo_set_source_rgb(cr, 0.91, 0.91, 0.91);
    cairo_move_to(cr, b.x0, y);
    cairo_line_to(cr, b.x0 + b.w, y);
    cairo_stroke(cr);
    TextRight(cr, b.x0 - 4, y + 4, 10, 0.35, absl::StrFormat("%.3g", std::abs(v) < 1e-9 * ystep ? 0.0 : v));
  }
  const double xstep = std::max(1.0, NiceStep((b.xhi - b.xlo) / 6));
  for (double v = std::ceil(b.xlo / xstep) * xstep; v <= b.xhi; v += xstep) {
    const double x = std::round(b.px(v)) + 0.5;
    cairo_set_source_rgb(cr, 0.93, 0.93, 0.93);
    cairo_move_to(cr, x, b.y0);
    cairo_line_to(cr, x, b.y0 + b.h);
    cairo_stroke(cr);
    if (x_labels) {
      const std::string s = absl::StrFormat("%.0f", v);
      Text(cr, x - TextWidth(s, 10) / 2, b.y0 + b.h + 13, 10, 0.35, s);
    }
  }
  cairo_save(cr);
  cairo_rectangle(cr, b.x0, b.y0, b.w, b.h);
  cairo_clip(cr);
  Band(cr, b, p.q05, p.q95, kBand90);
  Band(cr, b, p.q25, p.q75, kBand50);
  // The origin: between step -1 (last context) and step 0 (first target).
  cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
  const double dash[2] = {3, 3};
  cairo_set_dash(cr, dash, 2, 0);
  cairo_move_to(cr, std::round(b.px(-0.5)) + 0.5, b.y0);
  cairo_line_to(cr, std::round(b.px(-0.5)) + 0.5, b.y0 + b.h);
  cairo_stroke(cr);
  cairo_set_dash(cr, nullptr, 0, 0);
  cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
  cairo_set_line_width(cr, 1.4);
  cairo_set_source_rgb(cr, kContext[0], kContext[1], kContext[2]);
  Polyline(cr, b, -static_cast<double>(p.context.size()), p.context);
  cairo_set_line_width(cr, 1.8);
  cairo_set_source_rgb(cr, kMedian[0], kMedian[1], kMedian[2]);
  Polyline(cr, b, 0, p.q50);
  cairo_set_line_width(cr, 1.2);
  cairo_set_source_rgb(cr, kTruth[0], kTruth[1], kTruth[2]);
  Polyline(cr, b, 0, p.truth);
  for (size_t k = 0; k < p.truth.size(); ++k) {
    if (!std::isfinite(p.truth[k])) continue;
    cairo_arc(cr, b.px(static_cast<double>(k)), b.py(p.truth[k]), 2.2, 0, 2 * M_PI);
    cairo_fill(cr);
  }
  cairo_restore(cr);
  cairo_set_source_rgb(cr, 0.72, 0.72, 0.72);
  cairo_set_line_width(cr, 1.0);
  cairo_rectangle(cr, b.x0 + 0.5, b.y0 + 0.5, b.w - 1, b.h - 1);
  cairo_stroke(cr);
}

// A blue-white-red map of u in [-1, 1] (blue negative, white 0, red positive).
void Diverging(double u, double rgb[3]) {
  static const double kNeg[3] = {0.13, 0.40, 0.67}, kMid[3] = {0.97, 0.97, 0.97}, kPos[3] = {0.70, 0.09, 0.17};
  u = std::clamp(u, -1.0, 1.0);
  const double* end = u < 0 ? kNeg : kPos;
  const double f = std::abs(u);
  for (int k = 0; k < 3; ++k) rgb[k] = kMid[k] * (1 - f) + end[k] * f;
}

// Geometry of the two heat maps.
struct HeatLayout {
  int d = 0;
  int cell = 0;     // px
  int label_w = 0;  // row labels, px (column labels take the same height, rotated)
  int block_w = 0;  // one heat map with its labels and colour bar, px
  int block_h = 0;  // with its title, px
};

HeatLayout MakeHeatLayout(const FanChart& c, int64_t d) {
  HeatLayout L;
  L.d = static_cast<int>(d);
  L.cell = std::clamp(300 / std::max(1, L.d), 8, 42);
  double lw = 0;
  for (int64_t i = 0; i < d; ++i)
    lw = std::max(lw, TextWidth(Abbrev(i < static_cast<int64_t>(c.series.size()) ? c.series[i] : "s"), 10));
  L.label_w = static_cast<int>(std::ceil(lw)) + 6;
  L.block_w = L.label_w + L.d * L.cell + 10 + kHeatBarW + 52;
  L.block_h = 22 + L.label_w + L.d * L.cell;
  return L;
}

std::string SeriesName(const FanChart& c, int64_t i) {
  return i < static_cast<int64_t>(c.series.size()) ? c.series[i] : absl::StrCat("s", i);
}

// One heat map at (x, y) (its title's top-left). `m` undefined: the note instead. `range` > 0 fixes
// the colour scale to +-range; else +-max |finite m|.
void DrawHeat(cairo_t* cr, const HeatLayout& L, double x, double y, const FanChart& c, const torch::Tensor& m_in,
              const std::string& title, const std::string& note, double range) {
  Text(cr, x, y + 14, 14, 0.1, title, /*bold=*/true);
  if (!m_in.defined()) {
    Text(cr, x, y + 40, 13, 0.35, note);
    return;
  }
  const torch::Tensor m = F64(m_in);
  auto acc = m.accessor<double, 2>();
  if (!(range > 0)) {
    range = 0;
    for (int i = 0; i < L.d; ++i)
      for (int j = 0; j < L.d; ++j)
        if (std::isfinite(acc[i][j])) range = std::max(range, std::abs(acc[i][j]));
    if (!(range > 0)) range = 1;
  }
  const double gx = x + L.label_w, gy = y + 22 + L.label_w;
  for (int i = 0; i < L.d; ++i) {
    const std::string name = Abbrev(SeriesName(c, i));
    TextRight(cr, gx - 4, gy + (i + 0.5) * L.cell + 4, 10, 0.25, name);      // row label
    TextUp(cr, gx + (i + 0.5) * L.cell + 4, gy - 4, 10, 0.25, name);         // column label
  }
  const bool values = L.d <= kMaxValueCells;
  for (int i = 0; i < L.d; ++i) {
    for (int j = 0; j < L.d; ++j) {
      const double v = acc[i][j];
      double rgb[3] = {0.6, 0.6, 0.6};  // non-finite: grey
      if (std::isfinite(v)) Diverging(v / range, rgb);
      cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
      cairo_rectangle(cr, gx + j * L.cell, gy + i * L.cell, L.cell, L.cell);
      cairo_fill(cr);
      if (values) {
        const std::string s = std::isfinite(v) ? absl::StrFormat("%.2f", std::abs(v) < 0.005 ? 0.0 : v) : std::string("nan");
        const double size = std::clamp(L.cell * 0.28, 7.0, 11.0);
        const double lum = 0.3 * rgb[0] + 0.59 * rgb[1] + 0.11 * rgb[2];
        Text(cr, gx + j * L.cell + (L.cell - TextWidth(s, size)) / 2, gy + i * L.cell + L.cell / 2.0 + size / 2.6, size,
             lum < 0.5 ? 0.97 : 0.1, s);
      }
    }
  }
  // Colour bar: +range at the top, -range at the bottom.
  const double bx = gx + L.d * L.cell + 10, bh = L.d * L.cell;
  for (int k = 0; k < static_cast<int>(bh); ++k) {
    double rgb[3];
    Diverging(1.0 - 2.0 * k / std::max(1.0, bh - 1), rgb);
    cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
    cairo_rectangle(cr, bx, gy + k, kHeatBarW, 1);
    cairo_fill(cr);
  }
  Text(cr, bx + kHeatBarW + 4, gy + 9, 10, 0.25, absl::StrFormat("%+.3g", range));
  Text(cr, bx + kHeatBarW + 4, gy + bh / 2 + 4, 10, 0.25, "0");
  Text(cr, bx + kHeatBarW + 4, gy + bh, 10, 0.25, absl::StrFormat("%+.3g", -range));
}

cairo_status_t AppendPng(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}

// The PNG bytes of the chart (shapes already checked).
absl::StatusOr<std::string> Render(const FanChart& c) {
  const torch::Tensor forecasts = F64(c.forecasts), targets = F64(c.targets), contexts = F64(c.contexts);
  const int64_t ctx = contexts.size(1), hz = forecasts.size(2), d = forecasts.size(3);
  const int rows = static_cast<int>(std::min<size_t>(c.windows.size(), kMaxRows));
  const int cols = static_cast<int>(std::min<int64_t>(d, kMaxCols));

  // Geometry.
  const int legend_y = 50;
  const int grid_y = legend_y + 22;
  const int col_pitch = kYAxisW + kPanelW + kColGap, row_pitch = kPanelTitleH + kPanelH + kXAxisH + kRowGap;
  const int grid_x = kMargin + kRowLabelW;
  const int grid_w = kRowLabelW + cols * col_pitch;
  const int grid_h = std::max(1, rows) * row_pitch;
  const HeatLayout H = MakeHeatLayout(c, d);
  const int heat_y = grid_y + grid_h + 10;
  const int heat_gap = 40;
  const int notes = (c.windows.size() > static_cast<size_t>(kMaxRows) || d > kMaxCols) ? 1 : 0;
  const int caption_y = heat_y + H.block_h + kMargin + 8;
  int width = std::max(grid_w, 2 * H.block_w + heat_gap) + 2 * kMargin;
  width = std::max(width, static_cast<int>(2 * kMargin + TextWidth(c.title, 18, true)));
  for (const std::string& line : c.caption)
    width = std::max(width, static_cast<int>(2 * kMargin + TextWidth(line, 13)));
  width = std::min(width, 16000);
  const int height = std::min(caption_y + 20 * (static_cast<int>(c.caption.size()) + notes) + kMargin / 2, 16000);

  cairo_surface_t* surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
  cairo_t* cr = cairo_create(surf);
  cairo_set_source_rgb(cr, 0.96, 0.96, 0.96);
  cairo_paint(cr);
  Text(cr, kMargin, 28, 18, 0.05, c.title, /*bold=*/true);

  // Legend.
  double lx = kMargin;
  auto swatch = [&](const double rgb[3], bool line, const std::string& label) {
    cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
    if (line) {
      cairo_rectangle(cr, lx, legend_y - 5, 18, 2.5);
    } else {
      cairo_rectangle(cr, lx, legend_y - 10, 18, 11);
    }
    cairo_fill(cr);
    Text(cr, lx + 23, legend_y, 12, 0.2, label);
    lx += 23 + TextWidth(label, 12) + 18;
  };
  swatch(kContext, true, "context");
  swatch(kTruth, true, "truth");
  swatch(kMedian, true, "median");
  swatch(kBand50, false, "50% band");
  swatch(kBand90, false, "90% band");
  Text(cr, lx, legend_y, 12, 0.4,
       absl::StrCat("x: steps from the forecast origin (", forecasts.size(1), " sample paths per window)"));

  if (rows == 0) Text(cr, grid_x, grid_y + 40, 13, 0.35, "no windows drawn");
  for (int r = 0; r < rows; ++r) {
    const int64_t wi = c.windows[r];
    const double ry = grid_y + r * row_pitch;
    const std::string label = r < static_cast<int>(c.window_labels.size()) ? c.window_labels[r]
                                                                            : absl::StrCat("window ", wi);
    TextUp(cr, kMargin + 14, ry + kPanelTitleH + kPanelH / 2.0 + TextWidth(label, 12, true) / 2, 12, 0.15, label,
           /*bold=*/true);
    for (int j = 0; j < cols; ++j) {
      PanelData p;
      const torch::Tensor cx = contexts[wi].select(1, j).contiguous(), tg = targets[wi].select(1, j).contiguous();
      p.context.assign(cx.data_ptr<double>(), cx.data_ptr<double>() + ctx);
      p.truth.assign(tg.data_ptr<double>(), tg.data_ptr<double>() + hz);
      StepQuantiles(forecasts[wi].select(2, j).contiguous(), p);
      Box b{static_cast<double>(grid_x + j * col_pitch + kYAxisW), ry + kPanelTitleH, kPanelW, kPanelH,
            -static_cast<double>(ctx) - 0.5, static_cast<double>(hz) - 0.5, 0, 1};
      YRange(p, b.ylo, b.yhi);
      DrawPanel(cr, b, p, SeriesName(c, j), /*x_labels=*/r == rows - 1);
    }
  }

  DrawHeat(cr, H, kMargin, heat_y, c, c.a, "learned A_D", "A = 0 (DSM)", /*range=*/0);
  DrawHeat(cr, H, kMargin + H.block_w + heat_gap, heat_y, c, c.corr, "data correlation (train span)",
           "correlation not given", /*range=*/1);

  for (size_t i = 0; i < c.caption.size(); ++i) Text(cr, kMargin, caption_y + 20 * i, 13, 0.05, c.caption[i]);
  if (notes)
    Text(cr, kMargin, caption_y + 20 * c.caption.size(), 12, 0.4,
         absl::StrCat("drawn: ", rows, " of ", c.windows.size(), " windows, ", cols, " of ", d, " series"));

  cairo_status_t st = cairo_status(cr);
  cairo_destroy(cr);
  std::string png;
  if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_write_to_png_stream(surf, AppendPng, &png);
  cairo_surface_destroy(surf);
  if (st != CAIRO_STATUS_SUCCESS) return absl::InternalError(absl::StrCat("fan chart: cairo: ", cairo_status_to_string(st)));
  return png;
}

}  // namespace

absl::Status WriteFanChartPng(const std::string& path, const FanChart& chart) {
  VSDM_RETURN_IF_ERROR(CheckChart(chart));
  absl::StatusOr<std::string> png;
  try {
    png = Render(chart);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("fan chart ", path, ": ", e.what()));
  }
  if (!png.ok()) return png.status();
  return AtomicWriteFile(path, *png);
}

}  // namespace vsdm::core
