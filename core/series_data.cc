// Implements core/series_data.h: the wide-CSV reader, the transforms and split, the windows, and
// the synthetic VAR(1).
#include "core/series_data.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"

namespace vsdm::core {
namespace fs = std::filesystem;
namespace {

constexpr char kSeriesPrefix[] = "series:";
constexpr double kAutoLog1pZeroFraction = 0.2;  // log1p: auto picks columns with at least this many zeros

// INVALID_ARGUMENT "problem.dataset: <file>: <what>".
template <typename... Args>
absl::Status Bad(const std::string& file, const Args&... what) {
  return absl::InvalidArgumentError(absl::StrCat("problem.dataset: ", file, ": ", what...));
}

// INVALID_ARGUMENT "problem.test_start: <file>: <what>".
template <typename... Args>
absl::Status BadTestStart(const std::string& file, const Args&... what) {
  return absl::InvalidArgumentError(absl::StrCat("problem.test_start: ", file, ": ", what...));
}

std::string Quoted(absl::string_view s) { return absl::StrCat("\"", s, "\""); }

// A table before any column is chosen: the header and every row's cells as text, trimmed.
struct Table {
  std::string file;                            // named in every error
  std::vector<std::string> header;             // column names
  std::vector<std::vector<std::string>> rows;  // [T][header.size()]
  std::vector<int64_t> lines;                  // [T] the 1-based line of each row in the file
  // When the table is built in code (var1): the numbers themselves, [header.size()][T]; rows empty.
  std::vector<std::vector<double>> numbers;
  int64_t line_of(int64_t row) const { return lines.empty() ? row + 2 : lines[row]; }
};

// Days in `month` (1..12) of `year`, Gregorian.
int DaysInMonth(int year, int month) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return month == 2 && leap ? 29 : kDays[month - 1];
}

// The day of year (1..366) of a strict YYYY-MM-DD date, or 0 when `s` is not one.
int DayOfYear(absl::string_view s) {
  if (s.size() != 10 || s[4] != '-' || s[7] != '-') return 0;
  for (int i : {0, 1, 2, 3, 5, 6, 8, 9}) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(s[i]))) return 0;
  }
  auto num = [&](int at, int len) {
    int v = 0;
    for (int i = at; i < at + len; ++i) v = v * 10 + (s[i] - '0');
    return v;
  };
  const int year = num(0, 4), month = num(5, 2), day = num(8, 2);
  if (month < 1 || month > 12 || day < 1 || day > DaysInMonth(year, month)) return 0;
  int doy = day;
  for (int m = 1; m < month; ++m) doy += DaysInMonth(year, m);
  return doy;
}

bool IsDateName(absl::string_view name) {
  return absl::EqualsIgnoreCase(name, "date") || absl::EqualsIgnoreCase(name, "time") ||
         absl::EqualsIgnoreCase(name, "timestamp");
}

// The path `series:<path>` names: as given, else relative to data_dir's parent (the repo root).
std::string ResolveSeriesPath(const std::string& given, const std::string& data_dir) {
  std::error_code ec;
  if (fs::path(given).is_absolute() || fs::exists(given, ec) || data_dir.empty()) return given;
  fs::path dir(data_dir);
  if (!dir.has_filename()) dir = dir.parent_path();  // "…/data/" -> "…/data"
  const fs::path candidate = dir.parent_path() / given;
  return fs::exists(candidate, ec) ? candidate.string() : given;
}

// Reads a comma-separated file with a header row (Note [CSV dialect] in ReadCsv).
absl::StatusOr<Table> ReadCsv(const std::string& path) {
  // Note [CSV dialect]: comma-separated, header row first, every cell trimmed of whitespace, CRLF
  // or LF line ends, blank lines allowed only at the end, no quoting (a quote char is refused, so
  // a quoted comma can never be split silently), a UTF-8 BOM before the header ignored.
  Table t;
  t.file = path;
  std::error_code ec;
  if (fs::is_directory(path, ec)) return Bad(path, "is a directory, not a CSV file");
  std::ifstream in(path, std::ios::binary);
  if (!in) return Bad(path, "cannot open the file (missing or unreadable)");
  std::vector<std::pair<int64_t, std::string>> lines;  // (1-based line, text)
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (n == 1 && absl::StartsWith(line, "\xEF\xBB\xBF")) line.erase(0, 3);
    lines.emplace_back(n, std::move(line));
  }
  if (in.bad()) return Bad(path, "read error");
  while (!lines.empty() && absl::StripAsciiWhitespace(lines.back().second).empty()) lines.pop_back();
  if (lines.empty()) return Bad(path, "the file is empty (a header row is required)");

  auto split = [&](int64_t n, const std::string& text, std::vector<std::string>* cells) -> absl::Status {
    if (absl::StripAsciiWhitespace(text).empty()) return Bad(path, "line ", n, ": empty line");
    if (text.find('"') != std::string::npos) {
      return Bad(path, "line ", n, ": quoted fields are not supported (found a '\"')");
    }
    cells->clear();
    for (absl::string_view cell : absl::StrSplit(text, ',')) {
      cells->emplace_back(absl::StripAsciiWhitespace(cell));
    }
    return absl::OkStatus();
  };
  VSDM_RETURN_IF_ERROR(split(lines[0].first, lines[0].second, &t.header));
  std::map<std::string, int> seen;
  for (size_t j = 0; j < t.header.size(); ++j) {
    if (t.header[j].empty()) return Bad(path, "line 1: column ", j + 1, " has an empty name");
    if (!seen.emplace(t.header[j], static_cast<int>(j)).second) {
      return Bad(path, "line 1: column name ", Quoted(t.header[j]), " appears twice");
    }
  }
  if (lines.size() == 1) return Bad(path, "has a header but no data rows");
  t.rows.resize(lines.size() - 1);
  t.lines.resize(lines.size() - 1);
  for (size_t i = 1; i < lines.size(); ++i) {
    const int64_t n = lines[i].first;
    VSDM_RETURN_IF_ERROR(split(n, lines[i].second, &t.rows[i - 1]));
    if (t.rows[i - 1].size() != t.header.size()) {
      return Bad(path, "line ", n, ": ", t.rows[i - 1].size(), " fields, but the header (line 1) has ",
                 t.header.size());
    }
    t.lines[i - 1] = n;
  }
  return t;
}

// The index of the date column, or -1: the first column named date/time/timestamp (any case), else
// the first column whose every cell is a YYYY-MM-DD date.
int FindDateColumn(const Table& t) {
  if (!t.numbers.empty()) return -1;
  for (size_t j = 0; j < t.header.size(); ++j) {
    if (IsDateName(t.header[j])) return static_cast<int>(j);
  }
  for (size_t j = 0; j < t.header.size(); ++j) {
    bool all = true;
    for (const auto& row : t.rows) all = all && DayOfYear(row[j]) > 0;
    if (all) return static_cast<int>(j);
  }
  return -1;
}

// Whether any cell of column j parses as a number (a column with none is text and is skipped by
// the default column choice; one with some is numeric, and its bad cells are refused).
bool IsNumericColumn(const Table& t, int j) {
  if (!t.numbers.empty()) return true;
  double v;
  for (const auto& row : t.rows) {
    if (absl::SimpleAtod(row[j], &v)) return true;
  }
  return false;
}

// Column j as numbers; INVALID_ARGUMENT naming the line and column of a bad cell.
absl::StatusOr<std::vector<double>> ParseColumn(const Table& t, int j) {
  if (!t.numbers.empty()) return t.numbers[j];
  std::vector<double> out(t.rows.size());
  for (size_t i = 0; i < t.rows.size(); ++i) {
    const std::string& cell = t.rows[i][j];
    const auto where = absl::StrCat("line ", t.lines[i], ", column ", Quoted(t.header[j]), ": ");
    if (cell.empty()) return Bad(t.file, where, "empty cell");
    if (!absl::SimpleAtod(cell, &out[i])) return Bad(t.file, where, Quoted(cell), " is not a number");
    if (!std::isfinite(out[i])) return Bad(t.file, where, Quoted(cell), " is not finite");
  }
  return out;
}

// The indices of the columns to use: `columns` (comma-separated names) or every numeric column
// but the date column.
absl::StatusOr<std::vector<int>> ChooseColumns(const Table& t, int date_col, const std::string& columns) {
  std::vector<int> chosen;
  if (absl::StripAsciiWhitespace(columns).empty()) {
    for (size_t j = 0; j < t.header.size(); ++j) {
      if (static_cast<int>(j) != date_col && IsNumericColumn(t, static_cast<int>(j))) {
        chosen.push_back(static_cast<int>(j));
      }
    }
    if (chosen.empty()) return Bad(t.file, "no numeric column (header: ", absl::StrJoin(t.header, ", "), ")");
    return chosen;
  }
  for (absl::string_view name : absl::StrSplit(columns, ',')) {
    name = absl::StripAsciiWhitespace(name);
    if (name.empty()) return Bad(t.file, "problem.columns ", Quoted(columns), " has an empty name");
    const auto it = std::find(t.header.begin(), t.header.end(), name);
    if (it == t.header.end()) {
      return Bad(t.file, "column ", Quoted(name),
                 " (problem.columns) is not in the header (line 1): ", absl::StrJoin(t.header, ", "));
    }
    const int j = static_cast<int>(it - t.header.begin());
    if (j == date_col) return Bad(t.file, "column ", Quoted(name), " (problem.columns) is the date column");
    if (std::find(chosen.begin(), chosen.end(), j) != chosen.end()) {
      return Bad(t.file, "column ", Quoted(name), " appears twice in problem.columns");
    }
    chosen.push_back(j);
  }
  return chosen;
}

// The first test row from `test_start` (a row index or a date of the date column), or the last
// 20% of the rows when it is empty.
absl::StatusOr<int64_t> FindTestStart(const Table& t, const std::vector<std::string>& dates, int64_t steps,
                                      const std::string& test_start) {
  const std::string s(absl::StripAsciiWhitespace(test_start));
  if (s.empty()) return steps - steps / 5;
  int64_t row;
  if (absl::SimpleAtoi(s, &row)) {
    if (row < 1 || row >= steps) {
      return BadTestStart(t.file, "row ", row, " is outside 1..", steps - 1, " (the file has ", steps,
                          " rows; row 0 is the first data row)");
    }
    return row;
  }
  if (dates.empty()) {
    return BadTestStart(t.file, Quoted(s), " is not a row index, and the file has no date column");
  }
  const auto it = std::find(dates.begin(), dates.end(), s);
  if (it == dates.end()) {
    return BadTestStart(t.file, Quoted(s), " is not a date of the file (its dates run ", dates.front(), "..",
                        dates.back(), ")");
  }
  const int64_t at = it - dates.begin();
  if (at == 0) return BadTestStart(t.file, Quoted(s), " is the first row: the training span would be empty");
  return at;
}

// The columns log1p applies to: `log1p` is auto | none | comma-separated names of used columns.
absl::StatusOr<std::vector<bool>> ChooseLog1p(const Table& t, const std::vector<std::string>& names,
                                              const std::vector<std::vector<double>>& raw, int64_t test_start,
                                              const std::string& log1p) {
  const std::string spec(absl::StripAsciiWhitespace(log1p));
  std::vector<bool> out(names.size(), false);
  if (spec.empty() || spec == "none") return out;
  if (spec == "auto") {
    // Note [Auto log1p]: a column non-negative on every row whose training span is at least 20%
    // exact zeros (zero-inflated: rain, counts). The zero share is read on the training span only,
    // so the choice sees no test data; non-negativity on every row keeps log1p defined everywhere.
    for (size_t d = 0; d < names.size(); ++d) {
      const auto& x = raw[d];
      if (*std::min_element(x.begin(), x.end()) < 0) continue;
      const int64_t zeros = std::count(x.begin(), x.begin() + test_start, 0.0);
      out[d] = zeros >= kAutoLog1pZeroFraction * static_cast<double>(test_start);
    }
    return out;
  }
  for (absl::string_view name : absl::StrSplit(spec, ',')) {
    name = absl::StripAsciiWhitespace(name);
    const auto it = std::find(names.begin(), names.end(), name);
    if (it == names.end()) {
      return Bad(t.file, "column ", Quoted(name),
                 " (problem.log1p) is not a used column: ", absl::StrJoin(names, ", "));
    }
    const size_t d = it - names.begin();
    for (size_t i = 0; i < raw[d].size(); ++i) {
      if (raw[d][i] <= -1) {
        return Bad(t.file, "line ", t.line_of(static_cast<int64_t>(i)), ", column ", Quoted(name), ": ", raw[d][i],
                   " <= -1, so log1p (problem.log1p) is undefined");
      }
    }
    out[d] = true;
  }
  return out;
}

// Everything after the table is read: columns, dates, split, transforms, moments, origins.
absl::StatusOr<SeriesData> Assemble(const Table& t, const SeriesOptions& options) {
  if (options.context < 1) return Bad(t.file, "problem.context must be >= 1, got ", options.context);
  if (options.horizon < 1) return Bad(t.file, "problem.horizon must be >= 1, got ", options.horizon);
  if (options.eval_stride < 1) return Bad(t.file, "problem.eval_stride must be >= 1, got ", options.eval_stride);
  SeriesData s;
  s.source = t.file;
  s.context = options.context;
  s.horizon = options.horizon;

  const int date_col = FindDateColumn(t);
  if (date_col >= 0) {
    s.dates.reserve(t.rows.size());
    bool parse = true;
    for (const auto& row : t.rows) {
      s.dates.push_back(row[date_col]);
      const int doy = DayOfYear(row[date_col]);
      parse = parse && doy > 0;
      if (parse) s.day_of_year.push_back(doy);
    }
    if (!parse) {
      s.day_of_year.clear();
    } else {
      for (size_t i = 1; i < s.dates.size(); ++i) {  // YYYY-MM-DD compares as text
        if (s.dates[i] <= s.dates[i - 1]) {
          return Bad(t.file, "line ", t.lines[i], ", column ", Quoted(t.header[date_col]), ": ", s.dates[i],
                     " is not after the previous row's ", s.dates[i - 1], " (rows must be in time order)");
        }
      }
    }
  }

  VSDM_ASSIGN_OR_RETURN(const std::vector<int> chosen, ChooseColumns(t, date_col, options.columns));
  std::vector<std::vector<double>> raw;
  for (int j : chosen) {
    s.columns.push_back(t.header[j]);
    VSDM_ASSIGN_OR_RETURN(auto column, ParseColumn(t, j));
    raw.push_back(std::move(column));
  }
  const int64_t steps = static_cast<int64_t>(raw[0].size());
  const int64_t dim = static_cast<int64_t>(raw.size());

  VSDM_ASSIGN_OR_RETURN(s.test_start, FindTestStart(t, s.dates, steps, options.test_start));
  const int64_t need = s.context + s.horizon;
  if (s.test_start < need) {
    return Bad(t.file, "the training span (rows 0..", s.test_start - 1, ", lines 2..", t.line_of(s.test_start - 1),
               ") has ", s.test_start, " rows, fewer than context + horizon = ", need);
  }
  if (s.test_start == steps) {  // the default split of 1..4 rows (line_of(test_start) would read past the end)
    return Bad(t.file, "the test span is empty: the file has ", steps, " data rows and the test span starts at row ",
               s.test_start, "; it needs at least context + horizon = ", need, " rows");
  }
  if (steps - s.test_start < need) {
    return Bad(t.file, "the test span (rows ", s.test_start, "..", steps - 1, ", lines ", t.line_of(s.test_start), "..",
               t.line_of(steps - 1), ") has ", steps - s.test_start, " rows, fewer than context + horizon = ", need);
  }

  VSDM_ASSIGN_OR_RETURN(s.log1p, ChooseLog1p(t, s.columns, raw, s.test_start, options.log1p));

  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  s.raw = torch::empty({steps, dim}, opts);
  s.mean = torch::empty({dim}, opts);
  s.std = torch::empty({dim}, opts);
  s.values = torch::empty({steps, dim}, opts);
  auto raw_a = s.raw.accessor<double, 2>();
  auto val_a = s.values.accessor<double, 2>();
  for (int64_t d = 0; d < dim; ++d) {
    double sum = 0;
    for (int64_t i = 0; i < steps; ++i) {
      raw_a[i][d] = raw[d][i];
      val_a[i][d] = s.log1p[d] ? std::log1p(raw[d][i]) : raw[d][i];
      if (i < s.test_start) sum += val_a[i][d];
    }
    const double mean = sum / static_cast<double>(s.test_start);
    double ss = 0;
    for (int64_t i = 0; i < s.test_start; ++i) ss += (val_a[i][d] - mean) * (val_a[i][d] - mean);
    const double sd = std::sqrt(ss / static_cast<double>(s.test_start));  // population std of the train span
    if (!(sd > 1e-12 * std::max(1.0, std::abs(mean)))) {
      return Bad(t.file, "column ", Quoted(s.columns[d]), " is constant on the training span (lines 2..",
                 t.line_of(s.test_start - 1), "): it cannot be standardised");
    }
    s.mean[d] = mean;
    s.std[d] = sd;
    for (int64_t i = 0; i < steps; ++i) val_a[i][d] = (val_a[i][d] - mean) / sd;
  }

  for (int64_t o = s.context; o + s.horizon <= s.test_start; ++o) s.train_origins.push_back(o);
  for (int64_t o = s.test_start; o + s.horizon <= steps; o += options.eval_stride) s.test_origins.push_back(o);
  return s;
}

// Note [var1]: the synthetic VAR(1) behind `var1`. phi has diagonal 0.7..0.9 and +-0.2 couplings
// (spectral radius ~0.86, so the process is stationary); sigma has scales 0.6..1.2 and correlations
// 0.4..0.6. x_0 = 0, 200 burn-in steps are dropped, then T = 2000 rows are kept. The noise is
// N(0, I) from a CPU generator seeded by options.seed, coloured by sigma's Cholesky factor.
constexpr int64_t kVar1Dim = 4;
constexpr int64_t kVar1Steps = 2000;
constexpr int64_t kVar1BurnIn = 200;
constexpr double kVar1Phi[kVar1Dim][kVar1Dim] = {
    {0.8, 0.2, 0.0, 0.0}, {-0.2, 0.7, 0.2, 0.0}, {0.0, -0.2, 0.9, 0.2}, {0.2, 0.0, -0.2, 0.75}};
constexpr double kVar1Scale[kVar1Dim] = {1.0, 0.8, 1.2, 0.6};
constexpr double kVar1Corr[kVar1Dim][kVar1Dim] = {
    {1.0, 0.5, 0.4, 0.6}, {0.5, 1.0, 0.5, 0.4}, {0.4, 0.5, 1.0, 0.5}, {0.6, 0.4, 0.5, 1.0}};

Table MakeVar1(uint64_t seed, Var1Truth* truth) {
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  truth->phi = torch::empty({kVar1Dim, kVar1Dim}, opts);
  truth->sigma = torch::empty({kVar1Dim, kVar1Dim}, opts);
  for (int64_t i = 0; i < kVar1Dim; ++i) {
    for (int64_t j = 0; j < kVar1Dim; ++j) {
      truth->phi[i][j] = kVar1Phi[i][j];
      truth->sigma[i][j] = kVar1Scale[i] * kVar1Scale[j] * kVar1Corr[i][j];
    }
  }
  const torch::Tensor chol = torch::linalg::cholesky(truth->sigma);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const torch::Tensor noise =
      torch::matmul(torch::randn({kVar1BurnIn + kVar1Steps, kVar1Dim}, gen, opts), chol.t()).contiguous();
  auto e = noise.accessor<double, 2>();

  Table t;
  t.file = "var1";
  t.numbers.assign(kVar1Dim, std::vector<double>(kVar1Steps));
  for (int64_t d = 0; d < kVar1Dim; ++d) t.header.push_back(absl::StrCat("x", d));
  double x[kVar1Dim] = {0, 0, 0, 0};
  for (int64_t step = 0; step < kVar1BurnIn + kVar1Steps; ++step) {
    double next[kVar1Dim];
    for (int64_t i = 0; i < kVar1Dim; ++i) {
      next[i] = e[step][i];
      for (int64_t j = 0; j < kVar1Dim; ++j) next[i] += kVar1Phi[i][j] * x[j];
    }
    std::copy(next, next + kVar1Dim, x);
    if (step >= kVar1BurnIn) {
      for (int64_t i = 0; i < kVar1Dim; ++i) t.numbers[i][step - kVar1BurnIn] = x[i];
    }
  }
  return t;
}

}  // namespace

bool IsSeriesDataset(const std::string& dataset) {
  return dataset == "weather" || dataset == "var1" ||
         (absl::StartsWith(dataset, kSeriesPrefix) && dataset.size() > sizeof(kSeriesPrefix) - 1);
}

absl::StatusOr<SeriesData> LoadSeriesData(const SeriesOptions& options) {
  if (options.dataset == "var1") {
    const std::string cols(absl::StripAsciiWhitespace(options.columns));
    if (!cols.empty() && cols != "x0,x1,x2,x3") {
      return Bad("var1", "problem.columns must be empty (var1 is always x0,x1,x2,x3: its truth is 4x4), got ",
                 Quoted(options.columns));
    }
    Var1Truth truth;
    const Table t = MakeVar1(options.seed, &truth);
    VSDM_ASSIGN_OR_RETURN(SeriesData s, Assemble(t, options));
    s.truth = std::move(truth);
    return s;
  }
  std::string path;
  if (options.dataset == "weather") {
    path = (options.data_dir.empty() ? std::string("data") : options.data_dir) + "/series/weather.csv";
  } else if (IsSeriesDataset(options.dataset)) {
    path = ResolveSeriesPath(options.dataset.substr(sizeof(kSeriesPrefix) - 1), options.data_dir);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("problem.dataset: ", Quoted(options.dataset),
                                                   " is not a series dataset (series:<csv path> | weather | var1)"));
  }
  VSDM_ASSIGN_OR_RETURN(const Table t, ReadCsv(path));
  return Assemble(t, options);
}

torch::Tensor SeriesData::Windows(const std::vector<int64_t>& origins) const {
  const int64_t n = static_cast<int64_t>(origins.size());
  const int64_t width = horizon + context;
  torch::Tensor rows = torch::empty({n, width}, torch::kInt64);
  auto r = rows.accessor<int64_t, 2>();
  for (int64_t k = 0; k < n; ++k) {
    const int64_t o = origins[k];
    TORCH_CHECK(o >= context && o + horizon <= steps(), "SeriesData::Windows: origin ", o, " needs ", context,
                " <= o <= ", steps() - horizon);
    for (int64_t h = 0; h < horizon; ++h) r[k][h] = o + h;
    for (int64_t c = 0; c < context; ++c) r[k][horizon + c] = o - context + c;
  }
  torch::Tensor packed = values.index_select(0, rows.flatten()).view({n, width * dim()}).to(torch::kFloat32);
  if (covariates() == 0) return packed;
  torch::Tensor cov = torch::empty({n, 2}, torch::kFloat64);
  auto c = cov.accessor<double, 2>();
  for (int64_t k = 0; k < n; ++k) {
    const double angle = 2 * M_PI * day_of_year[origins[k]] / 365.25;
    c[k][0] = std::sin(angle);
    c[k][1] = std::cos(angle);
  }
  return torch::cat({packed, cov.to(torch::kFloat32)}, 1);
}

torch::Tensor SeriesData::Windows(const torch::Tensor& origins) const {
  const torch::Tensor o = origins.to(torch::kInt64).contiguous().flatten();
  return Windows(std::vector<int64_t>(o.data_ptr<int64_t>(), o.data_ptr<int64_t>() + o.numel()));
}

torch::Tensor SeriesData::TrainCovariance() const {
  const torch::Tensor v = values.slice(0, 0, test_start);
  const torch::Tensor vc = v - v.mean(0, true);
  return torch::matmul(vc.t(), vc) / static_cast<double>(v.size(0) - 1);
}

torch::Tensor SeriesData::ToOriginal(const torch::Tensor& standardised) const {
  TORCH_CHECK(standardised.dim() >= 1 && standardised.size(-1) == dim(), "SeriesData::ToOriginal: last dim must be ",
              dim(), ", got shape ", standardised.sizes());
  torch::Tensor x = standardised.to(torch::kFloat64) * std + mean;
  if (std::find(log1p.begin(), log1p.end(), true) == log1p.end()) return x;
  torch::Tensor mask = torch::zeros({dim()}, torch::kBool);
  for (int64_t d = 0; d < dim(); ++d) mask[d] = static_cast<bool>(log1p[d]);
  return torch::where(mask, torch::expm1(x).clamp_min(0), x);
}

}  // namespace vsdm::core
