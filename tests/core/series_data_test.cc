// The series loader: the vendored weather CSV, column and split choices, every refusal of a bad
// CSV (naming file, line, column), the windows and their packing, the inverse transform, and var1.
#include "core/series_data.h"

#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/core/temp_dir_test.h"

namespace vsdm::core {
namespace {
namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string DataDir() { return std::string(VSDM_SOURCE_DIR) + "/data"; }

SeriesOptions WeatherOptions() {
  SeriesOptions o;
  o.dataset = "weather";
  o.data_dir = DataDir();
  return o;
}

// Population std of rows [begin, end) of column d.
double SpanStd(const torch::Tensor& x, int64_t begin, int64_t end, int64_t d) {
  return x.slice(0, begin, end).select(1, d).std(/*unbiased=*/false).item<double>();
}
double SpanMean(const torch::Tensor& x, int64_t begin, int64_t end, int64_t d) {
  return x.slice(0, begin, end).select(1, d).mean().item<double>();
}

class SeriesDataTest : public TempDirTest {
 protected:
  // Options for series:<path> with a small C and H.
  static SeriesOptions Csv(const std::string& path, int64_t context = 2, int64_t horizon = 1) {
    SeriesOptions o;
    o.dataset = "series:" + path;
    o.context = context;
    o.horizon = horizon;
    return o;
  }

  // A CSV "date,a,b" of `rows` days from 2020-01-01 with a = i and b = 100 + 2i (i the row).
  static std::string LinearCsv(int rows) {
    std::string text = "date,a,b\n";
    for (int i = 0; i < rows; ++i) {
      char date[16];
      // January 2020 has 31 days; the tests keep rows <= 31.
      snprintf(date, sizeof(date), "2020-01-%02d", i + 1);
      text += std::string(date) + "," + std::to_string(i) + "," + std::to_string(100 + 2 * i) + "\n";
    }
    return text;
  }

  // The message of the refusal of `o`; fails the test if it loads or refuses with another code.
  static std::string Refusal(const SeriesOptions& o) {
    auto data = LoadSeriesData(o);
    EXPECT_FALSE(data.ok()) << "loaded " << o.dataset;
    if (data.ok()) return "";
    EXPECT_EQ(data.status().code(), absl::StatusCode::kInvalidArgument) << data.status();
    return std::string(data.status().message());
  }

};

TEST_F(SeriesDataTest, LoadsVendoredWeatherWithDatesAndPicksOnlyPrecipitationForLog1p) {
  SeriesOptions o = WeatherOptions();
  o.test_start = "2015-01-01";
  auto data = LoadSeriesData(o);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->source, DataDir() + "/series/weather.csv");
  EXPECT_EQ(data->steps(), 1461);
  ASSERT_EQ(data->dim(), 8);
  EXPECT_EQ(data->columns.front(), "Seattle_precipitation");
  ASSERT_EQ(data->dates.size(), 1461u);
  EXPECT_EQ(data->dates.front(), "2012-01-01");
  EXPECT_EQ(data->dates.back(), "2015-12-31");
  ASSERT_EQ(data->day_of_year.size(), 1461u);
  EXPECT_EQ(data->day_of_year[0], 1);
  EXPECT_EQ(data->day_of_year[365], 366);  // 2012-12-31, a leap year
  EXPECT_EQ(data->day_of_year[1460], 365);
  EXPECT_EQ(data->covariates(), 2);
  EXPECT_EQ(data->test_start, 1096);
  EXPECT_EQ(data->dates[1096], "2015-01-01");

  std::vector<std::string> logged;
  for (int64_t d = 0; d < data->dim(); ++d) {
    if (data->log1p[d]) logged.push_back(data->columns[d]);
  }
  EXPECT_EQ(logged, (std::vector<std::string>{"Seattle_precipitation", "NewYork_precipitation"}));

  EXPECT_EQ(data->raw.scalar_type(), torch::kFloat64);
  EXPECT_EQ(data->values.scalar_type(), torch::kFloat64);
  EXPECT_DOUBLE_EQ(data->raw[1][0].item<double>(), 10.9);  // line 3: 2012-01-02, Seattle_precipitation
  bool test_span_differs = false;
  for (int64_t d = 0; d < data->dim(); ++d) {
    EXPECT_NEAR(SpanMean(data->values, 0, 1096, d), 0.0, 1e-9) << data->columns[d];
    EXPECT_NEAR(SpanStd(data->values, 0, 1096, d), 1.0, 1e-9) << data->columns[d];
    const double test_mean = SpanMean(data->values, 1096, 1461, d);
    const double test_std = SpanStd(data->values, 1096, 1461, d);
    test_span_differs = test_span_differs || std::abs(test_mean) > 1e-3 || std::abs(test_std - 1) > 1e-3;
  }
  EXPECT_TRUE(test_span_differs) << "the test span must not be standardised with its own moments";
  // The moments are the transformed training span's: log1p then mean on the precipitation column.
  const double seattle_mean = torch::log1p(data->raw.slice(0, 0, 1096).select(1, 0)).mean().item<double>();
  EXPECT_NEAR(data->mean[0].item<double>(), seattle_mean, 1e-12);
}

TEST_F(SeriesDataTest, WeatherWithContext28Horizon7Stride7Has1062TrainAnd52TestOrigins) {
  SeriesOptions o = WeatherOptions();
  o.test_start = "2015-01-01";
  auto data = LoadSeriesData(o);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->train_origins.size(), 1062u);
  EXPECT_EQ(data->train_origins.front(), 28);
  EXPECT_EQ(data->train_origins.back(), 1089);
  EXPECT_EQ(data->test_origins.size(), 52u);
  EXPECT_EQ(data->test_origins.front(), 1096);
  EXPECT_EQ(data->test_origins.back(), 1453);
  EXPECT_EQ(data->packed_width(), (7 + 28) * 8 + 2);
}

TEST_F(SeriesDataTest, EmptyTestStartHoldsOutTheLastFifthOfTheRows) {
  auto data = LoadSeriesData(WeatherOptions());
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->test_start, 1461 - 1461 / 5);
}

TEST_F(SeriesDataTest, SeriesPathRelativeToTheRepoRootResolvesThroughDataDir) {
  SeriesOptions o;
  o.dataset = "series:data/series/weather.csv";
  o.data_dir = DataDir();
  auto data = LoadSeriesData(o);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->steps(), 1461);
  EXPECT_TRUE(fs::equivalent(data->source, DataDir() + "/series/weather.csv")) << data->source;

  o.data_dir = DataDir() + "/";  // a trailing slash names the same directory
  EXPECT_TRUE(LoadSeriesData(o).ok());
}

TEST_F(SeriesDataTest, UsesOnlyTheNamedColumnsInTheGivenOrder) {
  SeriesOptions o = WeatherOptions();
  o.columns = "NewYork_wind, Seattle_temp_max";
  auto data = LoadSeriesData(o);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->columns, (std::vector<std::string>{"NewYork_wind", "Seattle_temp_max"}));
  EXPECT_EQ(data->log1p, (std::vector<bool>{false, false}));
  ASSERT_EQ(data->raw.sizes(), (std::vector<int64_t>{1461, 2}));
  EXPECT_DOUBLE_EQ(data->raw[0][0].item<double>(), 5.1);  // line 2
  EXPECT_DOUBLE_EQ(data->raw[0][1].item<double>(), 12.8);
}

TEST_F(SeriesDataTest, Log1pNoneAndNamedColumnsOverrideAuto) {
  SeriesOptions o = WeatherOptions();
  o.log1p = "none";
  auto none = LoadSeriesData(o);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(std::count(none->log1p.begin(), none->log1p.end(), true), 0);
  o.log1p = "Seattle_wind";
  auto named = LoadSeriesData(o);
  ASSERT_TRUE(named.ok()) << named.status();
  EXPECT_EQ(named->log1p, (std::vector<bool>{false, false, false, true, false, false, false, false}));
}

TEST_F(SeriesDataTest, SplitsAtARowIndex) {
  SeriesOptions o = WeatherOptions();
  o.test_start = "1000";
  auto data = LoadSeriesData(o);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->test_start, 1000);
  EXPECT_EQ(data->test_origins.front(), 1000);
  EXPECT_EQ(data->train_origins.back(), 1000 - 7);
  EXPECT_NEAR(SpanMean(data->values, 0, 1000, 2), 0.0, 1e-9);
}

TEST_F(SeriesDataTest, FindsAnUnnamedDateColumnByItsCellsAndSkipsTextColumns) {
  const std::string path = Write("unnamed.csv",
                                 "day,station,x\n"
                                 "2021-02-27,SEA,1\n"
                                 "2021-02-28,SEA,3\n"
                                 "2021-03-01,SEA,2\n"
                                 "2021-03-02,SEA,5\n"
                                 "2021-03-03,SEA,4\n"
                                 "2021-03-04,SEA,6\n");
  SeriesOptions o = Csv(path, 1, 1);
  o.test_start = "2021-03-02";
  auto data = LoadSeriesData(o);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->columns, (std::vector<std::string>{"x"}));
  EXPECT_EQ(data->dates.front(), "2021-02-27");
  EXPECT_EQ(data->day_of_year, (std::vector<int>{58, 59, 60, 61, 62, 63}));  // 2021 is not a leap year
  EXPECT_EQ(data->test_start, 3);
}

TEST_F(SeriesDataTest, AcceptsCrlfSurroundingSpacesAndTrailingBlankLines) {
  const std::string path = Write("crlf.csv",
                                 " Date , a ,b\r\n2020-01-01, 1 ,2\r\n2020-01-02,2, 4\r\n"
                                 "2020-01-03,3,5\r\n2020-01-04,5,6\r\n\r\n\n");
  SeriesOptions o = Csv(path, 1, 1);
  o.test_start = "2";
  auto data = LoadSeriesData(o);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->columns, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(data->steps(), 4);
  EXPECT_EQ(data->dates.back(), "2020-01-04");
  EXPECT_DOUBLE_EQ(data->raw[3][0].item<double>(), 5.0);
}

TEST_F(SeriesDataTest, RefusesAMissingFileAndAnEmptyFile) {
  const std::string missing = dir_ + "/nope.csv";
  EXPECT_THAT(Refusal(Csv(missing)), StartsWith("problem.dataset: " + missing + ": cannot open"));
  const std::string empty = Write("empty.csv", "");
  EXPECT_THAT(Refusal(Csv(empty)), StartsWith("problem.dataset: " + empty + ": the file is empty"));
  const std::string blank = Write("blank.csv", "\n  \n");
  EXPECT_THAT(Refusal(Csv(blank)), StartsWith("problem.dataset: " + blank + ": the file is empty"));
  const std::string header_only = Write("header.csv", "a,b\n");
  EXPECT_THAT(Refusal(Csv(header_only)), StartsWith("problem.dataset: " + header_only + ": has a header but no"));
}

TEST_F(SeriesDataTest, RefusesARaggedRowNamingItsLine) {
  const std::string path = Write("ragged.csv", "a,b\n1,2\n3,4\n5\n6,7\n");
  EXPECT_EQ(Refusal(Csv(path)), "problem.dataset: " + path + ": line 4: 1 fields, but the header (line 1) has 2");
}

TEST_F(SeriesDataTest, RefusesANonNumericCellNamingLineAndColumn) {
  const std::string path = Write("x.csv",
                                 "date,temp\n2020-01-01,1\n2020-01-02,2\n2020-01-03,3\n2020-01-04,4\n"
                                 "2020-01-05,5\n2020-01-06,abc\n2020-01-07,7\n");
  EXPECT_EQ(Refusal(Csv(path)), "problem.dataset: " + path + ": line 7, column \"temp\": \"abc\" is not a number");
  const std::string blank = Write("blank_cell.csv", "a,b\n1,2\n3,\n5,6\n");
  EXPECT_EQ(Refusal(Csv(blank)), "problem.dataset: " + blank + ": line 3, column \"b\": empty cell");
}

TEST_F(SeriesDataTest, RefusesNanAndInfCells) {
  const std::string nan = Write("nan.csv", "a,b\n1,2\n3,4\nnan,6\n7,8\n");
  EXPECT_EQ(Refusal(Csv(nan)), "problem.dataset: " + nan + ": line 4, column \"a\": \"nan\" is not finite");
  const std::string inf = Write("inf.csv", "a,b\n1,2\n3,-inf\n5,6\n7,8\n");
  EXPECT_EQ(Refusal(Csv(inf)), "problem.dataset: " + inf + ": line 3, column \"b\": \"-inf\" is not finite");
}

TEST_F(SeriesDataTest, IgnoresBadCellsInColumnsNotUsed) {
  const std::string path = Write("unused.csv", "a,b\n1,x\n3,4\n2,6\n7,8\n5,9\n");
  SeriesOptions o = Csv(path, 1, 1);
  o.test_start = "3";
  o.columns = "a";
  auto data = LoadSeriesData(o);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->dim(), 1);
  EXPECT_THAT(Refusal(Csv(path, 1, 1)), HasSubstr("line 2, column \"b\": \"x\" is not a number"));
}

TEST_F(SeriesDataTest, RefusesAQuoteCharacter) {
  const std::string path = Write("quoted.csv", "a,b\n1,2\n\"3\",4\n");
  EXPECT_THAT(Refusal(Csv(path)), StartsWith("problem.dataset: " + path + ": line 3: quoted fields are not supported"));
}

TEST_F(SeriesDataTest, RefusesTooFewRowsInTheTrainingOrTheTestSpan) {
  const std::string path = Write("short.csv", LinearCsv(20));
  SeriesOptions train = Csv(path, 4, 2);
  train.test_start = "5";
  EXPECT_THAT(Refusal(train), StartsWith("problem.dataset: " + path +
                                         ": the training span (rows 0..4, lines 2..6) has "
                                         "5 rows, fewer than context + horizon = 6"));
  SeriesOptions test = Csv(path, 4, 2);
  test.test_start = "2020-01-16";  // row 15: 5 test rows
  EXPECT_THAT(Refusal(test), StartsWith("problem.dataset: " + path +
                                        ": the test span (rows 15..19, lines 17..21) has "
                                        "5 rows, fewer than context + horizon = 6"));
}

// Found by fuzz/csv_fuzzer.cc (issue 16): with 1..4 rows the default split leaves the test span
// empty, and its refusal read the line of the row after the last (a heap overflow under ASan).
TEST_F(SeriesDataTest, RefusesAnEmptyDefaultTestSpanOfAFewRows) {
  const std::string path = Write("four.csv", LinearCsv(4));
  EXPECT_EQ(Refusal(Csv(path, 1, 1)), "problem.dataset: " + path +
                                          ": the test span is empty: the file has 4 data rows and the test span "
                                          "starts at row 4; it needs at least context + horizon = 2 rows");
}

TEST_F(SeriesDataTest, RefusesUnknownColumnNames) {
  SeriesOptions o = WeatherOptions();
  o.columns = "Seattle_wind,Paris_wind";
  const std::string file = DataDir() + "/series/weather.csv";
  EXPECT_THAT(Refusal(o), StartsWith("problem.dataset: " + file +
                                     ": column \"Paris_wind\" (problem.columns) is not "
                                     "in the header (line 1)"));
  o.columns = "date";
  EXPECT_THAT(Refusal(o), HasSubstr("column \"date\" (problem.columns) is the date column"));
  o.columns = "Seattle_wind";
  o.log1p = "Seattle_precipitation";
  EXPECT_THAT(Refusal(o), StartsWith("problem.dataset: " + file +
                                     ": column \"Seattle_precipitation\" (problem.log1p) "
                                     "is not a used column"));
}

TEST_F(SeriesDataTest, RefusesLog1pOfValuesAtOrBelowMinusOne) {
  const std::string path = Write("neg.csv", "a\n1\n2\n-1\n4\n5\n");
  SeriesOptions o = Csv(path, 1, 1);
  o.test_start = "3";
  o.log1p = "a";
  EXPECT_EQ(Refusal(o),
            "problem.dataset: " + path + ": line 4, column \"a\": -1 <= -1, so log1p (problem.log1p) is undefined");
}

TEST_F(SeriesDataTest, RefusesATestStartThatIsNotARowOrDateOfTheFile) {
  SeriesOptions o = WeatherOptions();
  const std::string file = DataDir() + "/series/weather.csv";
  o.test_start = "2016-01-01";
  EXPECT_THAT(Refusal(o), StartsWith("problem.test_start: " + file + ": \"2016-01-01\" is not a date of the file"));
  o.test_start = "1461";
  EXPECT_THAT(Refusal(o), StartsWith("problem.test_start: " + file + ": row 1461 is outside 1..1460"));
  o.test_start = "0";
  EXPECT_THAT(Refusal(o), StartsWith("problem.test_start: " + file + ": row 0 is outside"));
  o.test_start = "2012-01-01";
  EXPECT_THAT(Refusal(o), StartsWith("problem.test_start: " + file + ": \"2012-01-01\" is the first row"));
  const std::string nodates = Write("nodates.csv", "a\n1\n2\n3\n4\n5\n");
  SeriesOptions n = Csv(nodates, 1, 1);
  n.test_start = "2020-01-01";
  EXPECT_THAT(Refusal(n), StartsWith("problem.test_start: " + nodates +
                                     ": \"2020-01-01\" is not a row index, and the "
                                     "file has no date column"));
}

TEST_F(SeriesDataTest, RefusesASeriesConstantOnTheTrainingSpan) {
  // b is constant on the training rows 0..2 and varies only in the test span.
  const std::string path = Write("const.csv", "a,b\n1,5\n2,5\n3,5\n4,6\n5,7\n6,8\n");
  SeriesOptions o = Csv(path, 1, 1);
  o.test_start = "3";
  EXPECT_EQ(Refusal(o), "problem.dataset: " + path +
                            ": column \"b\" is constant on the training span (lines 2..4): it cannot be standardised");
}

TEST_F(SeriesDataTest, RefusesDatesOutOfTimeOrder) {
  const std::string path = Write("order.csv", "date,a\n2020-01-01,1\n2020-01-03,2\n2020-01-02,3\n2020-01-04,4\n");
  EXPECT_THAT(Refusal(Csv(path, 1, 1)), StartsWith("problem.dataset: " + path +
                                                   ": line 4, column \"date\": 2020-01-02 "
                                                   "is not after"));
}

TEST_F(SeriesDataTest, TrainTargetsNeverReachTestStartAndTestOriginsFollowTheStride) {
  const std::string path = Write("linear.csv", LinearCsv(31));
  SeriesOptions o = Csv(path, 3, 4);
  o.test_start = "17";
  o.eval_stride = 3;
  auto data = LoadSeriesData(o);
  ASSERT_TRUE(data.ok()) << data.status();
  // train: o = 3..13 (13 + 4 = 17); test: 17, 20, 23, 26 (26 + 4 = 30 <= 31; 29 + 4 > 31).
  EXPECT_EQ(data->train_origins, (std::vector<int64_t>{3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}));
  EXPECT_EQ(data->test_origins, (std::vector<int64_t>{17, 20, 23, 26}));
  for (int64_t origin : data->train_origins) {
    EXPECT_GE(origin, data->context);
    EXPECT_LE(origin + data->horizon, data->test_start);
  }
}

TEST_F(SeriesDataTest, WindowsPackTargetThenContextThenDayOfYear) {
  const std::string path = Write("linear.csv", LinearCsv(20));
  SeriesOptions o = Csv(path, /*context=*/3, /*horizon=*/2);
  o.test_start = "10";
  auto data = LoadSeriesData(o);
  ASSERT_TRUE(data.ok()) << data.status();
  ASSERT_EQ(data->packed_width(), (2 + 3) * 2 + 2);
  // a = i, b = 100 + 2i: both standardise to (i - 4.5) / sqrt(8.25) on the training rows 0..9.
  auto z = [](int i) { return (i - 4.5) / std::sqrt(8.25); };
  EXPECT_NEAR(data->mean[0].item<double>(), 4.5, 1e-12);
  EXPECT_NEAR(data->std[1].item<double>(), 2 * std::sqrt(8.25), 1e-12);
  const torch::Tensor w = data->Windows(std::vector<int64_t>{5, 12});
  ASSERT_EQ(w.scalar_type(), torch::kFloat32);
  ASSERT_EQ(w.sizes(), (std::vector<int64_t>{2, 12}));
  auto a = w.accessor<float, 2>();
  const std::vector<int> rows_of_5 = {5, 6, 2, 3, 4};  // targets 5, 6; context 2, 3, 4
  for (int k = 0; k < 5; ++k) {
    EXPECT_NEAR(a[0][2 * k], z(rows_of_5[k]), 1e-6) << k;
    EXPECT_NEAR(a[0][2 * k + 1], z(rows_of_5[k]), 1e-6) << k;
  }
  EXPECT_NEAR(a[1][0], z(12), 1e-6);  // origin 12: first target row 12
  EXPECT_NEAR(a[1][9], z(11), 1e-6);  // last context row 11, series b
  // Origin 5 is 2020-01-06, day 6; origin 12 is day 13.
  EXPECT_NEAR(a[0][10], std::sin(2 * M_PI * 6 / 365.25), 1e-6);
  EXPECT_NEAR(a[0][11], std::cos(2 * M_PI * 6 / 365.25), 1e-6);
  EXPECT_NEAR(a[1][10], std::sin(2 * M_PI * 13 / 365.25), 1e-6);
  EXPECT_TRUE(torch::equal(w, data->Windows(torch::tensor(std::vector<int64_t>{5, 12}))));
}

TEST_F(SeriesDataTest, WindowsWithoutDatesCarryNoCovariates) {
  const std::string path = Write("nodate.csv", "a,b\n0,1\n1,0\n2,5\n3,2\n4,4\n5,3\n6,6\n7,1\n");
  SeriesOptions o = Csv(path, 2, 1);
  o.test_start = "5";
  o.eval_stride = 1;
  auto data = LoadSeriesData(o);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_TRUE(data->dates.empty());
  EXPECT_EQ(data->covariates(), 0);
  const torch::Tensor w = data->Windows(data->test_origins);
  ASSERT_EQ(w.sizes(), (std::vector<int64_t>{3, 6}));
  // origin 6: target row 6 (a=6, b=6), context rows 4 (4, 4) and 5 (5, 3).
  const torch::Tensor expect = torch::stack({data->values[6], data->values[4], data->values[5]}).flatten();
  EXPECT_TRUE(torch::allclose(w[1], expect.to(torch::kFloat32)));
}

TEST_F(SeriesDataTest, ToOriginalRoundTripsRawValuesIncludingLog1pColumns) {
  auto data = LoadSeriesData(WeatherOptions());
  ASSERT_TRUE(data.ok()) << data.status();
  ASSERT_TRUE(data->log1p[0]);
  const torch::Tensor back = data->ToOriginal(data->values);
  EXPECT_EQ(back.scalar_type(), torch::kFloat64);
  EXPECT_LT((back - data->raw).abs().max().item<double>(), 1e-9);
  // Any leading shape [..., D].
  const torch::Tensor batch = data->ToOriginal(torch::stack({data->values, data->values}).view({2, 3, -1, 8}));
  EXPECT_EQ(batch.sizes(), (std::vector<int64_t>{2, 3, 487, 8}));
  EXPECT_LT((batch.reshape({-1, 1461, 8})[1] - data->raw).abs().max().item<double>(), 1e-9);
  // A log1p series below log1p(0) comes back clamped at 0; a plain one stays negative.
  const torch::Tensor low = data->ToOriginal(torch::full({8}, -50.0));
  EXPECT_EQ(low[0].item<double>(), 0.0);
  EXPECT_LT(low[1].item<double>(), 0.0);
}

TEST_F(SeriesDataTest, Var1IsDeterministicInTheSeedAndItsPhiIsStableAndCoupled) {
  SeriesOptions o;
  o.dataset = "var1";
  o.seed = 3;
  auto a = LoadSeriesData(o);
  auto b = LoadSeriesData(o);
  o.seed = 4;
  auto c = LoadSeriesData(o);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok()) << a.status();
  EXPECT_EQ(a->source, "var1");
  EXPECT_EQ(a->columns, (std::vector<std::string>{"x0", "x1", "x2", "x3"}));
  EXPECT_EQ(a->steps(), 2000);
  EXPECT_TRUE(a->dates.empty());
  EXPECT_EQ(a->covariates(), 0);
  EXPECT_EQ(a->test_start, 1600);
  EXPECT_EQ(std::count(a->log1p.begin(), a->log1p.end(), true), 0);
  EXPECT_TRUE(torch::equal(a->raw, b->raw));
  EXPECT_FALSE(torch::equal(a->raw, c->raw));

  const torch::Tensor& phi = a->truth.phi;
  const torch::Tensor& sigma = a->truth.sigma;
  ASSERT_EQ(phi.scalar_type(), torch::kFloat64);
  ASSERT_EQ(phi.sizes(), (std::vector<int64_t>{4, 4}));
  const double radius = torch::linalg::eigvals(phi).abs().max().item<double>();
  EXPECT_LT(radius, 0.95);
  EXPECT_GT(radius, 0.5);
  const torch::Tensor off = phi - torch::diag(torch::diag(phi));
  EXPECT_GE(off.abs().max().item<double>(), 0.15) << "the series must be cross-coupled";
  EXPECT_TRUE(torch::allclose(sigma, sigma.t()));
  const torch::Tensor sd = torch::diag(sigma).sqrt();
  const torch::Tensor corr = sigma / torch::outer(sd, sd);
  const torch::Tensor off_corr = corr.masked_select(torch::eye(4, torch::kBool).logical_not());
  EXPECT_GE(off_corr.min().item<double>(), 0.35);
  EXPECT_LE(off_corr.max().item<double>(), 0.65);

  // The series follows phi (not phi^T): least squares of x_{t+1} on x_t recovers it.
  const torch::Tensor x0 = a->raw.slice(0, 0, 1999), x1 = a->raw.slice(0, 1, 2000);
  const torch::Tensor phi_hat = torch::linalg::solve(x0.t().matmul(x0), x0.t().matmul(x1), true).t();
  EXPECT_LT((phi_hat - phi).abs().max().item<double>(), 0.1) << phi_hat;
  // And the residuals' covariance is sigma.
  const torch::Tensor resid = x1 - x0.matmul(phi.t());
  const torch::Tensor cov = resid.t().matmul(resid) / 1999;
  EXPECT_LT((cov - sigma).abs().max().item<double>(), 0.15) << cov;
}

TEST(SeriesDatasetNameTest, RecognisesSeriesWeatherAndVar1Only) {
  EXPECT_TRUE(IsSeriesDataset("weather"));
  EXPECT_TRUE(IsSeriesDataset("var1"));
  EXPECT_TRUE(IsSeriesDataset("series:/tmp/x.csv"));
  EXPECT_FALSE(IsSeriesDataset("series:"));
  EXPECT_FALSE(IsSeriesDataset("digits"));
  SeriesOptions o;
  o.dataset = "digits";
  EXPECT_EQ(LoadSeriesData(o).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace vsdm::core
