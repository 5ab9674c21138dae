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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"vsdm-promfigure: a Prometheus range query as a stacked-area PNG"};
  std::string in, line, label = "phase", line_name = "total", title, ylabel = "seconds", out;
  app.add_option("--in", in, "query_range JSON of the stacked series")->required();
  app.add_option("--label", label, "label that names each stacked series");
  app.add_option("--line", line, "query_range JSON of one series drawn on top (optional)");
  app.add_option("--line-name", line_name, "legend name of --line");
  app.add_option("--title", title, "title");
  app.add_option("--ylabel", ylabel, "y axis unit");
  app.add_option("--out", out, "PNG to write")->required();
  CLI11_PARSE(app, argc, argv);
  std::vector<Series> stack, top;
  try {
    stack = ReadRange(in, label);
    if (!line.empty()) top = ReadRange(line, label);
  } catch (const std::exception& e) {
    std::cerr << "vsdm-promfigure: " << e.what() << "\n";
    return 1;
  }
  if (stack.empty() || stack[0].points.empty()) {
    std::cerr << "vsdm-promfigure: " << in << " has no samples\n";
    return 1;
  }
  std::sort(stack.begin(), stack.end(), [](const Series& a, const Series& b) { return a.name < b.name; });
  std::vector<double> ts;
  for (const auto& [t, v] : stack[0].points) ts.push_back(t);
  const double t0 = ts.front(), t1 = std::max(ts.back(), t0 + 1.0);
  // cumulative[k][i]: top of band k at time i.
  std::vector<std::vector<double>> cum(stack.size(), std::vector<double>(ts.size()));
  double ymax = 1e-9;
  for (size_t i = 0; i < ts.size(); ++i) {
    double acc = 0;
    for (size_t k = 0; k < stack.size(); ++k) cum[k][i] = acc += Lookup(stack[k], ts[i]);
    ymax = std::max(ymax, acc);
  }
  for (const auto& s : top)
    for (const auto& [t, v] : s.points) ymax = std::max(ymax, v);
  ymax *= 1.12;

  const int W = 960, H = 460, L = 80, R = 200, T = 50, B = 50;
  const double pw = W - L - R, ph = H - T - B;
  auto px = [&](double t) { return L + (t - t0) / (t1 - t0) * pw; };
  auto py = [&](double y) { return T + ph - y / ymax * ph; };
  cairo_surface_t* surf = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, W, H);
  cairo_t* cr = cairo_create(surf);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
  cairo_set_font_size(cr, 16);
  cairo_set_source_rgb(cr, 0.05, 0.05, 0.05);
  cairo_move_to(cr, L, 28);
  cairo_show_text(cr, title.c_str());
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 11);
  // Grid and ticks.
  for (int i = 0; i <= 5; ++i) {
    const double y = ymax / 1.12 * i / 5, x = t0 + (t1 - t0) * i / 5;
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, L, py(y));
    cairo_line_to(cr, L + pw, py(y));
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
    cairo_move_to(cr, 8, py(y) + 4);
    cairo_show_text(cr, absl::StrFormat("%.3g %s", y, i == 5 ? ylabel : "").c_str());
    cairo_move_to(cr, px(x) - 10, T + ph + 18);
    cairo_show_text(cr, absl::StrFormat("%.0f s", x - t0).c_str());
  }
  cairo_move_to(cr, L + pw / 2 - 60, H - 10);
  cairo_show_text(cr, "time since the first sample");
  // Bands, bottom up.
  const double palette[][3] = {{0.25, 0.5, 0.85}, {0.95, 0.6, 0.2}, {0.35, 0.7, 0.35}, {0.85, 0.3, 0.3},
                               {0.6, 0.45, 0.8},  {0.5, 0.5, 0.5}};
  for (size_t k = 0; k < stack.size(); ++k) {
    const auto& c = palette[k % 6];
    cairo_set_source_rgba(cr, c[0], c[1], c[2], 0.8);
    cairo_move_to(cr, px(ts[0]), py(cum[k][0]));
    for (size_t i = 1; i < ts.size(); ++i) cairo_line_to(cr, px(ts[i]), py(cum[k][i]));
    for (size_t i = ts.size(); i-- > 0;) cairo_line_to(cr, px(ts[i]), py(k == 0 ? 0.0 : cum[k - 1][i]));
    cairo_close_path(cr);
    cairo_fill(cr);
    cairo_rectangle(cr, L + pw + 20, T + 22 * k, 14, 14);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    cairo_move_to(cr, L + pw + 40, T + 22 * k + 12);
    cairo_show_text(cr, stack[k].name.c_str());
  }
  for (const auto& s : top) {
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_line_width(cr, 2.0);
    for (size_t i = 0; i < s.points.size(); ++i) {
      if (i == 0) cairo_move_to(cr, px(s.points[i].first), py(s.points[i].second));
      else cairo_line_to(cr, px(s.points[i].first), py(s.points[i].second));
    }
    cairo_stroke(cr);
    const double y = T + 22 * stack.size() + 7;
    cairo_move_to(cr, L + pw + 20, y);
    cairo_line_to(cr, L + pw + 34, y);
    cairo_stroke(cr);
    cairo_move_to(cr, L + pw + 40, y + 4);
    cairo_show_text(cr, line_name.c_str());
  }
  cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
  cairo_set_line_width(cr, 1.0);
  cairo_rectangle(cr, L + 0.5, T + 0.5, pw, ph);
  cairo_stroke(cr);
  cairo_destroy(cr);
  const cairo_status_t st = cairo_surface_write_to_png(surf, out.c_str());
  cairo_surface_destroy(surf);
  if (st != CAIRO_STATUS_SUCCESS) {
    std::cerr << "vsdm-promfigure: cannot write " << out << ": " << cairo_status_to_string(st) << "\n";
    return 1;
  }
  std::cout << "wrote " << out << " (" << stack.size() << " series, " << ts.size() << " samples)\n";
  return 0;
}
