// vsdm-promfigure: renders a Prometheus range query as a PNG (cairo), the way the Grafana job
// board draws it: the series of --in stacked (one band per value of --label), optionally one
// more series from --line drawn on top. Used to put a real figure of a run next to the numbers,
// e.g. trainer 0's round-time breakdown with the round time over it.
//   vsdm-promfigure --in breakdown.json --label phase [--line round.json --line-name "round time"]
//                   --title "..." --ylabel "seconds" --out figure.png
// The inputs are the JSON bodies of /api/v1/query_range. Exit 0, 1 on bad input or I/O.
#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace {

struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (unix time, value)
};

// The series of a query_range response, named by `label` (or the whole label set).
std::vector<Series> ReadRange(const std::string& path, const std::string& label) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  nlohmann::json j = nlohmann::json::parse(in);
  if (j.value("status", "") != "success") throw std::runtime_error(path + ": not a successful query_range response");
  std::vector<Series> out;
  for (const auto& r : j["data"]["result"]) {
    Series s;
    const auto& m = r["metric"];
    s.name = m.contains(label) ? m[label].get<std::string>() : m.dump();
    for (const auto& v : r["values"]) s.points.push_back({v[0].get<double>(), std::stod(v[1].get<std::string>())});
    out.push_back(std::move(s));
  }
  return out;
}

double Lookup(const Series& s, double t) {
  for (const auto& [ts, v] : s.points)
    if (std::abs(ts - t) < 1e-6) return v;
  return 0.0;
}

struct Args {
  std::string in;                   // --in: query_range JSON of the stacked series
  std::string line;                 // --line: one more series drawn on top ("" = none)
  std::string label = "phase";      // --label: names each stacked series
  std::string line_name = "total";  // --line-name: legend of --line
  std::string title;                // --title
  std::string ylabel = "seconds";   // --ylabel: y axis unit
  std::string out;                  // --out: PNG to write
};

// The stacked series on the time grid of the first one: cum[k][i] is the top of band k at ts[i].
struct Stack {
  std::vector<double> ts;
  std::vector<std::vector<double>> cum;
  double ymax = 1e-9;  // the highest band or line, with 12% headroom
};

Stack StackSeries(const std::vector<Series>& stack, const std::vector<Series>& top) {
  Stack st;
  for (const auto& [t, v] : stack[0].points) st.ts.push_back(t);
  st.cum.assign(stack.size(), std::vector<double>(st.ts.size()));
  for (size_t i = 0; i < st.ts.size(); ++i) {
    double acc = 0;
    for (size_t k = 0; k < stack.size(); ++k) st.cum[k][i] = acc += Lookup(stack[k], st.ts[i]);
    st.ymax = std::max(st.ymax, acc);
  }
  for (const auto& s : top)
    for (const auto& [t, v] : s.points) st.ymax = std::max(st.ymax, v);
  st.ymax *= 1.12;
  return st;
}

// The figure's layout in pixels and the data-to-pixel maps.
struct Frame {
  static constexpr int W = 960, H = 460, L = 80, R = 200, T = 50, B = 50;
  static constexpr double pw = W - L - R, ph = H - T - B;
  double t0 = 0, t1 = 1, ymax = 1;
  double px(double t) const { return L + (t - t0) / (t1 - t0) * pw; }
  double py(double y) const { return T + ph - y / ymax * ph; }
};

Frame MakeFrame(const Stack& st) {
  Frame f;
  f.t0 = st.ts.front();
  f.t1 = std::max(st.ts.back(), f.t0 + 1.0);
  f.ymax = st.ymax;
  return f;
}

void DrawTitleAndGrid(cairo_t* cr, const Frame& f, const Args& a) {
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
  cairo_set_font_size(cr, 16);
  cairo_set_source_rgb(cr, 0.05, 0.05, 0.05);
  cairo_move_to(cr, Frame::L, 28);
  cairo_show_text(cr, a.title.c_str());
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 11);
  for (int i = 0; i <= 5; ++i) {  // grid and ticks
    const double y = f.ymax / 1.12 * i / 5, x = f.t0 + (f.t1 - f.t0) * i / 5;
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, Frame::L, f.py(y));
    cairo_line_to(cr, Frame::L + Frame::pw, f.py(y));
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
    cairo_move_to(cr, 8, f.py(y) + 4);
    cairo_show_text(cr, absl::StrFormat("%.3g %s", y, i == 5 ? a.ylabel : "").c_str());
    cairo_move_to(cr, f.px(x) - 10, Frame::T + Frame::ph + 18);
    cairo_show_text(cr, absl::StrFormat("%.0f s", x - f.t0).c_str());
  }
  cairo_move_to(cr, Frame::L + Frame::pw / 2 - 60, Frame::H - 10);
  cairo_show_text(cr, "time since the first sample");
}

// The bands, bottom up, each with its legend entry.
void DrawBands(cairo_t* cr, const Frame& f, const Stack& st, const std::vector<Series>& stack) {
  const double palette[][3] = {{0.25, 0.5, 0.85}, {0.95, 0.6, 0.2}, {0.35, 0.7, 0.35},
                               {0.85, 0.3, 0.3},  {0.6, 0.45, 0.8}, {0.5, 0.5, 0.5}};
  const auto& ts = st.ts;
  for (size_t k = 0; k < stack.size(); ++k) {
    const auto& c = palette[k % 6];
    cairo_set_source_rgba(cr, c[0], c[1], c[2], 0.8);
    cairo_move_to(cr, f.px(ts[0]), f.py(st.cum[k][0]));
    for (size_t i = 1; i < ts.size(); ++i) cairo_line_to(cr, f.px(ts[i]), f.py(st.cum[k][i]));
    for (size_t i = ts.size(); i-- > 0;) cairo_line_to(cr, f.px(ts[i]), f.py(k == 0 ? 0.0 : st.cum[k - 1][i]));
    cairo_close_path(cr);
    cairo_fill(cr);
    cairo_rectangle(cr, Frame::L + Frame::pw + 20, Frame::T + 22 * k, 14, 14);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    cairo_move_to(cr, Frame::L + Frame::pw + 40, Frame::T + 22 * k + 12);
    cairo_show_text(cr, stack[k].name.c_str());
  }
}

// The --line series over the bands, its legend entry below the bands', and the plot border.
void DrawLinesAndBorder(cairo_t* cr, const Frame& f, const std::vector<Series>& top, size_t bands,
                        const std::string& line_name) {
  for (const auto& s : top) {
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_line_width(cr, 2.0);
    for (size_t i = 0; i < s.points.size(); ++i) {
      if (i == 0)
        cairo_move_to(cr, f.px(s.points[i].first), f.py(s.points[i].second));
      else
        cairo_line_to(cr, f.px(s.points[i].first), f.py(s.points[i].second));
    }
    cairo_stroke(cr);
    const double y = Frame::T + 22 * bands + 7;
    cairo_move_to(cr, Frame::L + Frame::pw + 20, y);
    cairo_line_to(cr, Frame::L + Frame::pw + 34, y);
    cairo_stroke(cr);
    cairo_move_to(cr, Frame::L + Frame::pw + 40, y + 4);
    cairo_show_text(cr, line_name.c_str());
  }
  cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
  cairo_set_line_width(cr, 1.0);
  cairo_rectangle(cr, Frame::L + 0.5, Frame::T + 0.5, Frame::pw, Frame::ph);
  cairo_stroke(cr);
}

// Draws the figure and writes it to a.out; false (with a message on stderr) if it cannot.
bool RenderPng(const Args& a, const std::vector<Series>& stack, const std::vector<Series>& top, const Stack& st) {
  const Frame f = MakeFrame(st);
  cairo_surface_t* surf = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, Frame::W, Frame::H);
  cairo_t* cr = cairo_create(surf);
  DrawTitleAndGrid(cr, f, a);
  DrawBands(cr, f, st, stack);
  DrawLinesAndBorder(cr, f, top, stack.size(), a.line_name);
  cairo_destroy(cr);
  const cairo_status_t status = cairo_surface_write_to_png(surf, a.out.c_str());
  cairo_surface_destroy(surf);
  if (status != CAIRO_STATUS_SUCCESS) {
    std::cerr << "vsdm-promfigure: cannot write " << a.out << ": " << cairo_status_to_string(status) << "\n";
    return false;
  }
  return true;
}

void AddOptions(CLI::App& app, Args& a) {
  app.add_option("--in", a.in, "query_range JSON of the stacked series")->required();
  app.add_option("--label", a.label, "label that names each stacked series");
  app.add_option("--line", a.line, "query_range JSON of one series drawn on top (optional)");
  app.add_option("--line-name", a.line_name, "legend name of --line");
  app.add_option("--title", a.title, "title");
  app.add_option("--ylabel", a.ylabel, "y axis unit");
  app.add_option("--out", a.out, "PNG to write")->required();
}

// Reads --in (sorted by name) and --line; false (with a message on stderr) on bad input.
bool ReadInputs(const Args& a, std::vector<Series>& stack, std::vector<Series>& top) {
  try {
    stack = ReadRange(a.in, a.label);
    if (!a.line.empty()) top = ReadRange(a.line, a.label);
  } catch (const std::exception& e) {
    std::cerr << "vsdm-promfigure: " << e.what() << "\n";
    return false;
  }
  if (stack.empty() || stack[0].points.empty()) {
    std::cerr << "vsdm-promfigure: " << a.in << " has no samples\n";
    return false;
  }
  std::sort(stack.begin(), stack.end(), [](const Series& x, const Series& y) { return x.name < y.name; });
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"vsdm-promfigure: a Prometheus range query as a stacked-area PNG"};
  Args a;
  AddOptions(app, a);
  CLI11_PARSE(app, argc, argv);
  std::vector<Series> stack, top;
  if (!ReadInputs(a, stack, top)) return 1;
  const Stack st = StackSeries(stack, top);
  if (!RenderPng(a, stack, top, st)) return 1;
  std::cout << "wrote " << a.out << " (" << stack.size() << " series, " << st.ts.size() << " samples)\n";
  return 0;
}
