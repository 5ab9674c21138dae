#include "core/forecast_eval.h"

#include <cairo.h>
#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "tests/core/temp_dir_test.h"
#include <torch/special.h>

namespace vsdm::core {
namespace {

namespace fs = std::filesystem;
const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

torch::Generator Gen(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

// ---- scores -----------------------------------------------------------------------------------

TEST(ForecastScoresTest, QuantileCrpsMatchesGluonTsReference) {
  const torch::Tensor samples = torch::tensor({0.0, 1.0, 2.0, 3.0, 4.0}, kF64).view({1, 5, 1, 1});
  const torch::Tensor y = torch::full({1, 1, 1}, 2.5, kF64);
  EXPECT_NEAR(QuantileCrps(samples, y), 0.18315789, 1e-7);
  // Order of the samples does not matter; float32 input is scored in float64.
  const torch::Tensor shuffled = torch::tensor({3.0f, 0.0f, 4.0f, 2.0f, 1.0f}).view({1, 5, 1, 1});
  EXPECT_NEAR(QuantileCrps(shuffled, y), 0.18315789, 1e-7);
}

TEST(ForecastScoresTest, CrpsLevelsAreNineteenTwentieths) {
  const std::vector<double> q = CrpsQuantileLevels();
  ASSERT_EQ(q.size(), 19u);
  EXPECT_DOUBLE_EQ(q.front(), 0.05);
  EXPECT_DOUBLE_EQ(q[9], 0.5);
  EXPECT_DOUBLE_EQ(q.back(), 0.95);
}

TEST(ForecastScoresTest, SampleQuantileTakesTheRoundedIndexWithoutInterpolation) {
  // S = 5 unsorted: sorted {10, 20, 30, 40, 50}; index round(4 q).
  const torch::Tensor s = torch::tensor({40.0, 10.0, 50.0, 30.0, 20.0}, kF64).view({1, 5, 1, 1});
  EXPECT_DOUBLE_EQ(SampleQuantile(s, 0.3).item<double>(), 20);   // 1.2 -> 1
  EXPECT_DOUBLE_EQ(SampleQuantile(s, 0.4).item<double>(), 30);   // 1.6 -> 2
  EXPECT_DOUBLE_EQ(SampleQuantile(s, 0.5).item<double>(), 30);   // 2
  EXPECT_DOUBLE_EQ(SampleQuantile(s, 0.95).item<double>(), 50);  // 3.8 -> 4
  EXPECT_EQ(SampleQuantile(torch::zeros({2, 7, 3, 4}), 0.5).sizes(), torch::IntArrayRef({2, 3, 4}));
}

TEST(ForecastScoresTest, EnergyCrpsOfExactNormalQuantilesIsTheClosedForm) {
  const int64_t s = 20001;
  const torch::Tensor p = (torch::arange(s, kF64) + 0.5) / static_cast<double>(s);
  const torch::Tensor samples = torch::special::ndtri(p).view({1, s, 1, 1});
  // CRPS(N(0, 1), 0) = 2 phi(0) - 1/sqrt(pi) = 0.2336950.
  EXPECT_NEAR(EnergyCrps(samples, torch::zeros({1, 1, 1}, kF64)), 0.2336950, 1e-4);
  EXPECT_NEAR(2 / std::sqrt(2 * M_PI) - 1 / std::sqrt(M_PI), 0.2336950, 1e-7);
}

TEST(ForecastScoresTest, EnergyCrpsEqualsTheAllPairsSum) {
  torch::Generator gen = Gen(5);
  const torch::Tensor samples = torch::randn({2, 9, 3, 2}, gen, kF64);
  const torch::Tensor y = torch::randn({2, 3, 2}, gen, kF64);
  double total = 0;
  auto x = samples.accessor<double, 4>();
  auto t = y.accessor<double, 3>();
  for (int w = 0; w < 2; ++w)
    for (int h = 0; h < 3; ++h)
      for (int d = 0; d < 2; ++d) {
        double err = 0, pairs = 0;
        for (int i = 0; i < 9; ++i) {
          err += std::abs(x[w][i][h][d] - t[w][h][d]) / 9;
          for (int j = 0; j < 9; ++j)
            if (i != j) pairs += std::abs(x[w][i][h][d] - x[w][j][h][d]) / (9.0 * 8.0);
        }
        total += err - 0.5 * pairs;
      }
  EXPECT_NEAR(EnergyCrps(samples, y), total / 12, 1e-12);
  // One sample: no pairs, just |x - y|.
  EXPECT_NEAR(EnergyCrps(torch::full({1, 1, 1, 1}, 3.0, kF64), torch::ones({1, 1, 1}, kF64)), 2.0, 1e-15);
}

TEST(ForecastScoresTest, NdAndNrmseOnAHandExample) {
  // Step 0: samples {1, 2, 3} (median 2, mean 2), y = 2. Step 1: {0, 8, 4} (median 4, mean 4), y = 2.
  const torch::Tensor samples = torch::tensor({1.0, 0.0, 2.0, 8.0, 3.0, 4.0}, kF64).view({1, 3, 2, 1});
  const torch::Tensor y = torch::tensor({2.0, 2.0}, kF64).view({1, 2, 1});
  EXPECT_NEAR(NormalizedDeviation(samples, y), (0.0 + 2.0) / 4.0, 1e-15);
  EXPECT_NEAR(NormalizedRmse(samples, y), std::sqrt((0.0 + 4.0) / 2) / 2.0, 1e-15);
}

TEST(ForecastScoresTest, CrpsSumIsCrpsOfTheSummedSeries) {
  torch::Generator gen = Gen(7);
  const torch::Tensor one = torch::randn({4, 50, 3, 1}, gen, kF64) + 2;
  const torch::Tensor y1 = torch::randn({4, 3, 1}, gen, kF64) + 2;
  EXPECT_DOUBLE_EQ(QuantileCrpsSum(one, y1), QuantileCrps(one, y1));

  const torch::Tensor many = torch::randn({4, 50, 3, 5}, gen, kF64) + 1;
  const torch::Tensor y5 = torch::randn({4, 3, 5}, gen, kF64) + 1;
  EXPECT_NEAR(QuantileCrpsSum(many, y5), QuantileCrps(many.sum(3, true), y5.sum(2, true)), 1e-14);
  EXPECT_NE(QuantileCrpsSum(many, y5), QuantileCrps(many, y5));
}

TEST(ForecastScoresTest, ScoreForecastsFillsAllFive) {
  torch::Generator gen = Gen(8);
  const torch::Tensor s = torch::randn({3, 40, 4, 2}, gen, kF64) + 5, y = torch::randn({3, 4, 2}, gen, kF64) + 5;
  const ForecastScores sc = ScoreForecasts(s, y, s - 5, y - 5);
  EXPECT_DOUBLE_EQ(sc.crps, QuantileCrps(s, y));
  EXPECT_DOUBLE_EQ(sc.crps_sum, QuantileCrpsSum(s, y));
  EXPECT_DOUBLE_EQ(sc.nd, NormalizedDeviation(s, y));
  EXPECT_DOUBLE_EQ(sc.nrmse, NormalizedRmse(s, y));
  EXPECT_DOUBLE_EQ(sc.energy_crps, EnergyCrps(s - 5, y - 5));
  EXPECT_GT(sc.energy_crps, 0);
}

// ---- baselines --------------------------------------------------------------------------------

// A SeriesData around `values` [T, D] (already "standardised": raw = values, mean 0, std 1).
SeriesData HandSeries(const torch::Tensor& values, int64_t test_start, int64_t context, int64_t horizon) {
  SeriesData d;
  d.source = "hand";
  for (int64_t j = 0; j < values.size(1); ++j) d.columns.push_back("s" + std::to_string(j));
  d.log1p.assign(values.size(1), false);
  d.raw = values.to(torch::kFloat64);
  d.values = d.raw;
  d.mean = torch::zeros({values.size(1)}, kF64);
  d.std = torch::ones({values.size(1)}, kF64);
  d.test_start = test_start;
  d.context = context;
  d.horizon = horizon;
  return d;
}

std::vector<int64_t> Range(int64_t from, int64_t to, int64_t stride) {
  std::vector<int64_t> v;
  for (int64_t o = from; o < to; o += stride) v.push_back(o);
  return v;
}

// x_{t+1} = phi x_t + chol(sigma) eps, T steps from 0 (after a burn-in).
torch::Tensor SimulateVar1(const torch::Tensor& phi, const torch::Tensor& sigma, int64_t steps, uint64_t seed) {
  torch::Generator gen = Gen(seed);
  const int64_t d = phi.size(0), burn = 200;
  const torch::Tensor noise = torch::matmul(torch::randn({steps + burn, d}, gen, kF64), torch::linalg_cholesky(sigma).t());
  std::vector<torch::Tensor> rows;
  torch::Tensor x = torch::zeros({d}, kF64);
  for (int64_t t = 0; t < steps + burn; ++t) {
    x = torch::mv(phi, x) + noise[t];
    if (t >= burn) rows.push_back(x);
  }
  return torch::stack(rows);
}

// A var1 SeriesData as the loader would build it: standardised with the training span's moments.
SeriesData Var1Series(const torch::Tensor& phi, const torch::Tensor& sigma, int64_t steps, int64_t test_start,
                      int64_t horizon, uint64_t seed) {
  SeriesData d = HandSeries(SimulateVar1(phi, sigma, steps, seed), test_start, 28, horizon);
  d.source = "var1";
  const torch::Tensor train = d.raw.slice(0, 0, test_start);
  d.mean = train.mean(0);
  d.std = train.std(0);
  d.values = (d.raw - d.mean) / d.std;
  d.truth.phi = phi;
  d.truth.sigma = sigma;
  return d;
}

torch::Tensor Phi3() {
  return torch::tensor({0.6, 0.2, 0.0, -0.1, 0.5, 0.2, 0.1, 0.0, 0.7}, kF64).view({3, 3});
}
torch::Tensor Sigma3() {
  return torch::tensor({1.0, 0.3, 0.1, 0.3, 0.8, -0.2, 0.1, -0.2, 0.5}, kF64).view({3, 3});
}

// Standardised targets [W, H, D] of the origins.
torch::Tensor Targets(const SeriesData& d, const std::vector<int64_t>& origins) {
  std::vector<torch::Tensor> t;
  for (int64_t o : origins) t.push_back(d.values.slice(0, o, o + d.horizon));
  return torch::stack(t);
}

TEST(ForecastBaselinesTest, PersistenceAddsTheTrainingSpansExactResiduals) {
  // Training span: slopes 0.1 and -0.05 per step; test span: slope 5 (which must not leak in).
  const int64_t ts = 50;
  torch::Tensor v = torch::empty({100, 2}, kF64);
  for (int64_t t = 0; t < 100; ++t) {
    const double u = t < ts ? t : ts + 50.0 * (t - ts);
    v[t][0] = 0.1 * u;
    v[t][1] = -0.05 * u;
  }
  const SeriesData d = HandSeries(v, ts, 10, 5);
  torch::Generator gen = Gen(1);
  const std::vector<int64_t> origins = {60, 75};
  const torch::Tensor f = PersistenceForecast(d, origins, 30, gen);
  ASSERT_EQ(f.sizes(), torch::IntArrayRef({2, 30, 5, 2}));
  EXPECT_EQ(f.scalar_type(), torch::kFloat64);
  for (size_t w = 0; w < origins.size(); ++w)
    for (int64_t h = 0; h < 5; ++h) {
      const torch::Tensor expect = v[origins[w] - 1] + torch::tensor({0.1, -0.05}, kF64) * (h + 1);
      EXPECT_TRUE(torch::allclose(f[w].select(1, h), expect.expand({30, 2}), 1e-12, 1e-12)) << "w " << w << " h " << h;
    }
}

TEST(ForecastBaselinesTest, SeasonalNaiveWithSeasonOneIsPersistence) {
  torch::Generator g0 = Gen(3);
  const SeriesData d = HandSeries(torch::randn({300, 3}, g0, kF64).cumsum(0), 200, 14, 6);
  const std::vector<int64_t> origins = Range(200, 290, 9);
  torch::Generator g1 = Gen(21), g2 = Gen(21);
  const torch::Tensor p = PersistenceForecast(d, origins, 64, g1);
  const torch::Tensor s = SeasonalNaiveForecast(d, origins, 64, /*season=*/1, g2);
  EXPECT_TRUE(torch::equal(p, s));
  // And the residuals are the h-step differences of the training span: their spread grows with h.
  const torch::Tensor spread = (p - p.mean(1, true)).square().mean({0, 1, 3});
  EXPECT_GT(spread[5].item<double>(), 3 * spread[0].item<double>());
}

TEST(ForecastBaselinesTest, SeasonalNaiveRepeatsAPeriodicSeriesExactly) {
  // Period 7, no noise: every residual of a whole-season lag is 0, so the forecast is the truth,
  // including steps past one season (lag 14).
  torch::Tensor v = torch::empty({200, 2}, kF64);
  const double pattern[7] = {1, 3, -2, 0.5, 4, -1, 2};
  for (int64_t t = 0; t < 200; ++t) {
    v[t][0] = pattern[t % 7];
    v[t][1] = -2 * pattern[(t + 3) % 7];
  }
  const SeriesData d = HandSeries(v, 150, 14, 10);
  torch::Generator gen = Gen(4);
  const std::vector<int64_t> origins = {150, 163, 181};
  const torch::Tensor f = SeasonalNaiveForecast(d, origins, 16, /*season=*/7, gen);
  EXPECT_TRUE(torch::allclose(f, Targets(d, origins).unsqueeze(1).expand_as(f), 0, 1e-12));
  // Persistence on the same series is not exact.
  const torch::Tensor p = PersistenceForecast(d, origins, 16, gen);
  EXPECT_GT((p - Targets(d, origins).unsqueeze(1)).abs().max().item<double>(), 1);
}

TEST(ForecastBaselinesTest, RandomWalkSpreadGrowsWithTheSquareRootOfTheHorizon) {
  torch::Generator g0 = Gen(9);
  const torch::Tensor steps = torch::randn({2000, 2}, g0, kF64) * torch::tensor({0.5, 2.0}, kF64);
  const SeriesData d = HandSeries(steps.cumsum(0), 1500, 28, 9);
  torch::Generator gen = Gen(10);
  const std::vector<int64_t> origins = {1600, 1800};
  const torch::Tensor f = RandomWalkForecast(d, origins, 20000, gen);
  ASSERT_EQ(f.sizes(), torch::IntArrayRef({2, 20000, 9, 2}));
  const torch::Tensor train = d.values.slice(0, 0, 1500);
  const torch::Tensor sd = (train.slice(0, 1) - train.slice(0, 0, -1)).std(0);
  for (int64_t w = 0; w < 2; ++w) {
    const torch::Tensor last = d.values[origins[w] - 1];
    EXPECT_TRUE(torch::allclose(f[w].select(1, 8).mean(0), last, 0, 0.2));
    EXPECT_TRUE(torch::allclose(f[w].select(1, 8).std(0), 3 * sd, 0.03, 0)) << f[w].select(1, 8).std(0);
    EXPECT_TRUE(torch::allclose(f[w].select(1, 0).std(0), sd, 0.03, 0));
  }
}

TEST(ForecastBaselinesTest, Var1ForecastRecoversPhiFromALongSeries) {
  const torch::Tensor phi = Phi3(), sigma = Sigma3();
  // Training span: 6000 steps of the VAR; then probe rows (0 and the unit vectors) whose one-step
  // forecast means are c and c + phi e_j.
  const torch::Tensor train = SimulateVar1(phi, sigma, 6000, 11);
  const torch::Tensor probes = torch::cat({torch::zeros({1, 3}, kF64), torch::eye(3, kF64)}, 0);
  const SeriesData d = HandSeries(torch::cat({train, probes, torch::zeros({2, 3}, kF64)}, 0), 6000, 1, 1);
  torch::Generator gen = Gen(12);
  const torch::Tensor f = Var1Forecast(d, {6001, 6002, 6003, 6004}, 40000, gen);
  const torch::Tensor m = f.select(2, 0).mean(1);  // [4, D]
  const torch::Tensor c = m[0];
  EXPECT_TRUE(torch::allclose(c, torch::zeros({3}, kF64), 0, 0.05)) << c;
  const torch::Tensor phi_hat = (m.slice(0, 1) - c).t();  // column j = phi e_j
  EXPECT_LT((phi_hat - phi).abs().max().item<double>(), 0.05) << phi_hat;
  // The innovations' covariance is the residuals' one.
  const torch::Tensor e = f[0].select(1, 0);
  const torch::Tensor cov = torch::matmul((e - e.mean(0)).t(), e - e.mean(0)) / 40000.0;
  EXPECT_LT((cov - sigma).abs().max().item<double>(), 0.08) << cov;
}

TEST(ForecastBaselinesTest, OracleVar1SamplesTheExactPredictiveLaw) {
  const torch::Tensor phi = Phi3(), sigma = Sigma3();
  SeriesData d = HandSeries(SimulateVar1(phi, sigma, 300, 13), 200, 28, 4);
  d.truth.phi = phi;
  d.truth.sigma = sigma;
  // Non-trivial standardisation: values = (raw - mean) / std.
  d.mean = torch::tensor({1.0, -2.0, 0.5}, kF64);
  d.std = torch::tensor({2.0, 0.5, 1.5}, kF64);
  d.values = (d.raw - d.mean) / d.std;
  torch::Generator gen = Gen(14);
  const int64_t s = 40000;
  const std::vector<int64_t> origins = {220, 250};
  const torch::Tensor f = OracleVar1Forecast(d, origins, s, gen);
  ASSERT_EQ(f.sizes(), torch::IntArrayRef({2, s, 4, 3}));
  for (size_t w = 0; w < origins.size(); ++w) {
    torch::Tensor mean = d.raw[origins[w] - 1];
    torch::Tensor cov = torch::zeros({3, 3}, kF64), power = torch::eye(3, kF64);
    for (int64_t h = 0; h < 4; ++h) {
      mean = torch::mv(phi, mean);
      cov = cov + torch::matmul(torch::matmul(power, sigma), power.t());
      power = torch::matmul(phi, power);
      const torch::Tensor raw = f[w].select(1, h) * d.std + d.mean;  // back to raw units
      const torch::Tensor centred = raw - raw.mean(0);
      const torch::Tensor got_cov = torch::matmul(centred.t(), centred) / static_cast<double>(s);
      // Sampling error: sd of a mean ~ sqrt(var / s) <= 0.01; of a covariance ~ var sqrt(2 / s) <= 0.02.
      EXPECT_LT((raw.mean(0) - mean).abs().max().item<double>(), 0.03) << "w " << w << " h " << h;
      EXPECT_LT((got_cov - cov).abs().max().item<double>(), 0.06) << "w " << w << " h " << h << got_cov << cov;
    }
  }
}

TEST(ForecastBaselinesTest, OracleBeatsFittedVar1WhichBeatsRandomWalk) {
  const SeriesData d = Var1Series(Phi3(), Sigma3(), 4000, 3000, 7, 15);
  const std::vector<int64_t> origins = Range(3000, 4000 - 7 + 1, 5);
  const torch::Tensor y = Targets(d, origins);
  torch::Generator gen = Gen(16);
  const double oracle = EnergyCrps(OracleVar1Forecast(d, origins, 200, gen), y);
  const double var1 = EnergyCrps(Var1Forecast(d, origins, 200, gen), y);
  const double rw = EnergyCrps(RandomWalkForecast(d, origins, 200, gen), y);
  const double persistence = EnergyCrps(PersistenceForecast(d, origins, 200, gen), y);
  std::cout << "energy CRPS: oracle " << oracle << ", var1 " << var1 << ", random walk " << rw << ", persistence "
            << persistence << "\n";
  EXPECT_GT(var1, 0.99 * oracle);  // the fit cannot do much better than the truth
  EXPECT_LT(var1, 1.05 * oracle);  // and on 3000 steps it is nearly as good
  EXPECT_GT(rw, 1.15 * var1);
  EXPECT_GT(persistence, 1.05 * var1);
}

// Rows of `years` consecutive years from 1 Jan `first_year`, with their day of year.
std::vector<int> DaysOfYear(int first_year, int years) {
  std::vector<int> doy;
  for (int y = first_year; y < first_year + years; ++y) {
    const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    for (int k = 1; k <= (leap ? 366 : 365); ++k) doy.push_back(k);
  }
  return doy;
}

int CircularDistance(int a, int b) {
  const int diff = std::abs(a - b);
  return std::min(diff, std::abs(365 - diff));  // as Note [Climatology window]
}

TEST(ForecastBaselinesTest, ClimatologyDrawsTrainingRowsWithinTenDaysJointly) {
  const std::vector<int> doy = DaysOfYear(2010, 6);  // 2012 is a leap year
  const int64_t t_rows = static_cast<int64_t>(doy.size());
  torch::Tensor v = torch::empty({t_rows, 2}, kF64);
  for (int64_t t = 0; t < t_rows; ++t) {
    v[t][0] = doy[t];
    v[t][1] = static_cast<double>(t);  // the row itself: checks jointness and the training span
  }
  const int64_t ts = t_rows - 365;  // 2015 is the test span
  SeriesData d = HandSeries(v, ts, 28, 12);
  d.day_of_year = doy;
  torch::Generator gen = Gen(17);
  const std::vector<int64_t> origins = {ts - 5, ts, ts + 180, t_rows - 12};  // across 1 Jan, mid-year, December
  const torch::Tensor f = ClimatologyForecast(d, origins, 500, gen);
  ASSERT_EQ(f.sizes(), torch::IntArrayRef({4, 500, 12, 2}));
  auto a = f.accessor<double, 4>();
  int wrapped = 0;
  for (size_t w = 0; w < origins.size(); ++w)
    for (int64_t s = 0; s < 500; ++s)
      for (int64_t h = 0; h < 12; ++h) {
        const int64_t row = static_cast<int64_t>(a[w][s][h][1]);
        ASSERT_GE(row, 0);
        ASSERT_LT(row, ts);
        ASSERT_EQ(a[w][s][h][0], doy[row]);  // both series from the same row
        const int target = doy[origins[w] + h];
        ASSERT_LE(CircularDistance(doy[row], target), 10) << "target " << target << " drew " << doy[row];
        if (std::abs(doy[row] - target) > 300) ++wrapped;
      }
  EXPECT_GT(wrapped, 100);  // draws across the year's end happen
  // Independent per step: the drawn years differ between steps of one path.
  EXPECT_GT((f.select(3, 1).select(2, 0) - f.select(3, 1).select(2, 1)).abs().std().item<double>(), 100);
}

TEST(ForecastBaselinesTest, ClimatologyWithoutDatesDrawsAnyTrainingRow) {
  const SeriesData d = HandSeries(torch::arange(100, kF64).view({100, 1}), 80, 5, 3);
  torch::Generator gen = Gen(18);
  const torch::Tensor f = ClimatologyForecast(d, {85, 90}, 4000, gen);
  EXPECT_GE(f.min().item<double>(), 0);
  EXPECT_LT(f.max().item<double>(), 80);
  EXPECT_NEAR(f.mean().item<double>(), 39.5, 1.5);
}

TEST(ForecastBaselinesTest, ClimatologyBeatsPersistenceOnASeasonalSeriesAtLongHorizons) {
  const std::vector<int> doy = DaysOfYear(2001, 6);
  const int64_t t_rows = static_cast<int64_t>(doy.size());
  torch::Generator g0 = Gen(19);
  const torch::Tensor noise = 0.15 * torch::randn({t_rows, 2}, g0, kF64);
  torch::Tensor v = torch::empty({t_rows, 2}, kF64);
  for (int64_t t = 0; t < t_rows; ++t) {
    v[t][0] = std::sin(2 * M_PI * doy[t] / 365.25);
    v[t][1] = std::cos(2 * M_PI * doy[t] / 365.25 + 0.7);
  }
  SeriesData d = HandSeries(v + noise, t_rows - 365, 28, 60);
  d.day_of_year = doy;
  const std::vector<int64_t> origins = Range(d.test_start, t_rows - 60 + 1, 10);
  const torch::Tensor y = Targets(d, origins).slice(1, 30);  // steps 30..59
  torch::Generator gen = Gen(20);
  const double clim = EnergyCrps(ClimatologyForecast(d, origins, 200, gen).slice(2, 30), y);
  const double pers = EnergyCrps(PersistenceForecast(d, origins, 200, gen).slice(2, 30), y);
  std::cout << "steps 30..59 energy CRPS: climatology " << clim << ", persistence " << pers << "\n";
  EXPECT_LT(clim, 0.7 * pers);
  EXPECT_LT(clim, 0.15);  // ~ the noise's CRPS (0.15 * 0.234 = 0.035) plus the +-10-day drift
}

// ---- fan chart --------------------------------------------------------------------------------

using ForecastFanChartTest = TempDirTest;

// W windows of D series: a sine context, a truth, and S forecast paths spread around the truth.
FanChart SyntheticChart(int64_t d, int64_t w, int64_t s, std::vector<int64_t> windows) {
  torch::Generator gen = Gen(30);
  const int64_t c = 28, h = 7;
  FanChart chart;
  chart.title = "var1 (D = " + std::to_string(d) + "): vsdm, 2000 steps";
  chart.caption = {"CRPS 0.412  CRPS-sum 0.301  ND 0.52  NRMSE 0.71", "baselines: var1 0.40, persistence 0.61"};
  for (int64_t j = 0; j < d; ++j) chart.series.push_back(j == 0 ? "temp_max_seattle" : "series_" + std::to_string(j));
  const torch::Tensor steps = torch::arange(-c, h, kF64);
  const torch::Tensor base = torch::sin(steps.view({1, -1, 1}) / 4 + torch::arange(d, kF64).view({1, 1, d})) * 10;
  const torch::Tensor path = base.expand({w, c + h, d}) + torch::randn({w, c + h, d}, gen, kF64);
  chart.contexts = path.slice(1, 0, c);
  chart.targets = path.slice(1, c);
  chart.forecasts = chart.targets.unsqueeze(1) + 3 * torch::randn({w, s, h, d}, gen, kF64);
  chart.windows = std::move(windows);
  for (int64_t i : chart.windows) chart.window_labels.push_back("2019-0" + std::to_string(i + 1) + "-01");
  chart.a = 0.3 * torch::randn({d, d}, gen, kF64);
  const torch::Tensor x = torch::randn({200, d}, gen, kF64);
  chart.corr = torch::corrcoef(x.t());
  return chart;
}

struct Png {
  bool ok = false;
  int width = 0, height = 0;
  int64_t band90 = 0;  // pixels of the 90% band's light blue (+-3 per channel)
  int64_t bluish = 0;  // pixels with blue > red + 30
};

Png ReadPng(const std::string& path) {
  Png out;
  std::ifstream in(path, std::ios::binary);
  char sig[8] = {};
  in.read(sig, 8);
  out.ok = in.gcount() == 8 && std::string(sig, 8) == std::string("\x89PNG\r\n\x1a\n", 8);
  cairo_surface_t* s = cairo_image_surface_create_from_png(path.c_str());
  if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
    out.ok = false;
    cairo_surface_destroy(s);
    return out;
  }
  out.width = cairo_image_surface_get_width(s);
  out.height = cairo_image_surface_get_height(s);
  const unsigned char* data = cairo_image_surface_get_data(s);
  const int stride = cairo_image_surface_get_stride(s);
  for (int y = 0; y < out.height; ++y) {
    const uint32_t* row = reinterpret_cast<const uint32_t*>(data + static_cast<int64_t>(y) * stride);
    for (int x = 0; x < out.width; ++x) {
      const int r = (row[x] >> 16) & 255, g = (row[x] >> 8) & 255, b = row[x] & 255;
      if (std::abs(r - 199) <= 3 && std::abs(g - 219) <= 3 && std::abs(b - 245) <= 3) ++out.band90;
      if (b > r + 30) ++out.bluish;
    }
  }
  cairo_surface_destroy(s);
  return out;
}

TEST_F(ForecastFanChartTest, WritesAPngWithBlueBandsForEightSeriesAndThreeWindows) {
  const FanChart chart = SyntheticChart(8, 5, 100, {0, 2, 4});
  ASSERT_TRUE(WriteFanChartPng(Path("f.png"), chart).ok());
  const Png png = ReadPng(Path("f.png"));
  ASSERT_TRUE(png.ok);
  EXPECT_GT(png.width, 8 * 220);
  EXPECT_LT(png.width, 3000);
  EXPECT_GT(png.height, 3 * 140 + 200);
  EXPECT_LT(png.height, 2000);
  // 24 panels, each with a 90% band several pixels tall over the horizon's ~6/34 of 220 px.
  EXPECT_GT(png.band90, 24 * 300) << png.band90;
  EXPECT_GT(png.bluish, png.band90);

  // Fewer series: narrower; one window: shorter.
  ASSERT_TRUE(WriteFanChartPng(Path("small.png"), SyntheticChart(4, 5, 100, {1})).ok());
  const Png small = ReadPng(Path("small.png"));
  ASSERT_TRUE(small.ok);
  EXPECT_LT(small.width, png.width);
  EXPECT_LT(small.height, png.height);
  EXPECT_LT(small.band90, png.band90);
}

TEST_F(ForecastFanChartTest, WritesWithoutALearnedA) {
  FanChart chart = SyntheticChart(8, 3, 100, {0, 1, 2});
  const std::string with_a = Path("a.png"), without_a = Path("dsm.png");
  ASSERT_TRUE(WriteFanChartPng(with_a, chart).ok());
  chart.a = torch::Tensor();
  ASSERT_TRUE(WriteFanChartPng(without_a, chart).ok());
  const Png a = ReadPng(with_a), dsm = ReadPng(without_a);
  ASSERT_TRUE(dsm.ok);
  EXPECT_EQ(dsm.width, a.width);
  EXPECT_EQ(dsm.height, a.height);
  EXPECT_LT(dsm.bluish, a.bluish);  // no A heat map
  EXPECT_GT(dsm.band90, 0);
}

TEST_F(ForecastFanChartTest, SurvivesNanAndInfinity) {
  FanChart chart = SyntheticChart(3, 2, 50, {0, 1});
  chart.forecasts[0].select(1, 2).fill_(std::nan(""));  // a whole step of window 0 missing
  chart.forecasts[1][3][0][0] = INFINITY;
  chart.targets[0][1][1] = std::nan("");
  chart.contexts[1].fill_(-INFINITY);
  chart.a[0][1] = std::nan("");
  chart.corr = torch::full({3, 3}, std::nan(""), kF64);
  ASSERT_TRUE(WriteFanChartPng(Path("nan.png"), chart).ok());
  EXPECT_TRUE(ReadPng(Path("nan.png")).ok);

  // All forecasts missing: no band is drawn at all.
  chart.forecasts.fill_(std::nan(""));
  ASSERT_TRUE(WriteFanChartPng(Path("empty.png"), chart).ok());
  const Png empty = ReadPng(Path("empty.png"));
  ASSERT_TRUE(empty.ok);
  EXPECT_LT(empty.band90, 250);  // the legend's swatch only
}

TEST_F(ForecastFanChartTest, RejectsBadShapesAndUnwritablePaths) {
  FanChart chart = SyntheticChart(3, 2, 10, {0, 1});
  FanChart bad = chart;
  bad.targets = torch::zeros({2, 6, 3});
  EXPECT_EQ(WriteFanChartPng(Path("x.png"), bad).code(), absl::StatusCode::kInvalidArgument);
  bad = chart;
  bad.windows = {0, 2};
  EXPECT_EQ(WriteFanChartPng(Path("x.png"), bad).code(), absl::StatusCode::kInvalidArgument);
  bad = chart;
  bad.a = torch::zeros({2, 2});
  EXPECT_EQ(WriteFanChartPng(Path("x.png"), bad).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(Path("x.png")));
  EXPECT_EQ(WriteFanChartPng(Path("no/such/dir/x.png"), chart).code(), absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace vsdm::core
