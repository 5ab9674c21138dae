#include "core/feature_net.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/core/digits_fixture.h"

#include "common/file_util.h"
#include "core/image_metrics.h"

namespace vsdm::core {
namespace {

// Rows `idx` of a set (ImageSet::Select without depending on the loaders' library code).
ImageSet Rows(const ImageSet& s, const torch::Tensor& idx) {
  ImageSet out;
  out.images = s.images.index_select(0, idx).contiguous();
  if (s.has_labels()) out.labels = s.labels.index_select(0, idx);
  out.source = s.source;
  return out;
}

ImageData LoadDigits() { return LoadVendoredDigits(); }

FeatureNetOptions DigitsOptions() {
  FeatureNetOptions o;
  o.epochs = 15;
  o.batch = 64;
  o.lr = 3e-3;
  return o;
}

std::string TempPath(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("vsdm_featnet_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

class FeatureNetTest : public ::testing::Test {
 protected:
  // One net trained on the digits, shared by the tests of this suite (training is the slow part).
  static void SetUpTestSuite() {
    data_ = new ImageData(LoadDigits());
    report_ = new FeatureNetReport;
    auto net = TrainFeatureNet(*data_, DigitsOptions(), report_);
    ASSERT_TRUE(net.ok()) << net.status();
    net_ = new FeatureNet(*net);
  }
  static void TearDownTestSuite() {
    delete net_;
    delete report_;
    delete data_;
  }
  static ImageData* data_;
  static FeatureNetReport* report_;
  static FeatureNet* net_;
};
ImageData* FeatureNetTest::data_ = nullptr;
FeatureNetReport* FeatureNetTest::report_ = nullptr;
FeatureNet* FeatureNetTest::net_ = nullptr;

TEST_F(FeatureNetTest, DigitsSplitIsTheVendoredFile) {
  EXPECT_EQ(data_->train.size() + data_->test.size(), 1797);
  EXPECT_EQ(data_->test.size(), 359);
  EXPECT_LE(data_->train.images.max().item<float>(), 1.0f);
  EXPECT_GE(data_->train.images.min().item<float>(), -1.0f);
}

TEST_F(FeatureNetTest, ReachesNinetyPercentOnHeldOutDigits) {
  EXPECT_GE(report_->test_accuracy, 0.90);
  EXPECT_EQ(report_->epochs, DigitsOptions().epochs);
  EXPECT_GT(report_->train_seconds, 0.0);
  EXPECT_EQ(report_->dataset, "digits");
  // The report's accuracy is the net's accuracy on the test split.
  torch::NoGradGuard no_grad;
  const double acc =
      (*net_)->forward(data_->test.images).argmax(1).eq(data_->test.labels).to(torch::kFloat64).mean().item<double>();
  EXPECT_DOUBLE_EQ(acc, report_->test_accuracy);
}

TEST_F(FeatureNetTest, ClassifyFiguresOfRealDigitsAreNearUniform) {
  const ClassifierFigures f = ClassifyFigures(*net_, data_->test.images);
  ASSERT_EQ(f.histogram.size(), 10u);
  double sum = 0.0;
  for (double h : f.histogram) sum += h;
  EXPECT_NEAR(sum, 1.0, 1e-12);
  EXPECT_LT(f.tv_from_uniform, 0.1);
  EXPECT_GT(f.confident_fraction, 0.5);
  EXPECT_LE(f.confident_fraction, 1.0);
  // A single repeated image puts the whole histogram on one class.
  const ClassifierFigures one = ClassifyFigures(*net_, data_->test.images.narrow(0, 0, 1).repeat({20, 1, 1, 1}));
  EXPECT_NEAR(one.tv_from_uniform, 0.9, 1e-12);
}

TEST_F(FeatureNetTest, SaveLoadRoundTripGivesIdenticalLogits) {
  const std::string path = TempPath("roundtrip.pt");
  ASSERT_TRUE(SaveFeatureNet(path, *net_, *report_, "digits").ok());
  FeatureNetReport loaded_report;
  auto loaded = LoadFeatureNet(path, 1, 8, 8, 10, &loaded_report);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  torch::NoGradGuard no_grad;
  (*net_)->eval();
  EXPECT_TRUE(torch::equal((*loaded)->forward(data_->test.images), (*net_)->forward(data_->test.images)));
  EXPECT_DOUBLE_EQ(loaded_report.test_accuracy, report_->test_accuracy);
  EXPECT_DOUBLE_EQ(loaded_report.train_seconds, report_->train_seconds);
  EXPECT_EQ(loaded_report.epochs, report_->epochs);
  EXPECT_EQ(loaded_report.dataset, "digits");
  std::filesystem::remove(path);
}

TEST_F(FeatureNetTest, LoadRefusesAWrongShapeNamingTheFile) {
  const std::string path = TempPath("shape.pt");
  ASSERT_TRUE(SaveFeatureNet(path, *net_, *report_, "digits").ok());
  for (auto shape : std::vector<std::vector<int64_t>>{{1, 28, 28, 10}, {3, 8, 8, 10}, {1, 8, 8, 9}}) {
    auto r = LoadFeatureNet(path, shape[0], shape[1], shape[2], shape[3], nullptr);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status();
    EXPECT_NE(r.status().message().find("classes 10"), std::string::npos) << r.status();
  }
  std::filesystem::remove(path);
}

TEST_F(FeatureNetTest, LoadRefusesAFileThatIsNotAFeatureNet) {
  const std::string garbage = TempPath("garbage.pt");
  ASSERT_TRUE(AtomicWriteFile(garbage, "this is not a torch archive").ok());
  // A valid torch archive without the feature-net marker.
  const std::string other = TempPath("other.pt");
  {
    std::ostringstream bytes;
    torch::serialize::OutputArchive ar;
    ar.write("round", torch::tensor({3}, torch::kLong));
    ar.save_to(bytes);
    ASSERT_TRUE(AtomicWriteFile(other, bytes.str()).ok());
  }
  for (const std::string& path : {garbage, other}) {
    auto r = LoadFeatureNet(path, 1, 8, 8, 10, nullptr);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status();
    EXPECT_NE(r.status().message().find("not a feature net"), std::string::npos) << r.status();
    std::filesystem::remove(path);
  }
  auto missing = LoadFeatureNet(TempPath("missing.pt"), 1, 8, 8, 10, nullptr);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST(FeatureNetShapeTest, WorksFor8x8And28x28And32x32x3) {
  for (auto shape : std::vector<std::vector<int64_t>>{{1, 8, 8}, {1, 28, 28}, {3, 32, 32}, {1, 9, 13}}) {
    FeatureNet net(shape[0], shape[1], shape[2], 7);
    torch::Tensor x = torch::rand({5, shape[0], shape[1], shape[2]}) * 2 - 1;
    torch::Tensor f = net->Features(x);
    EXPECT_EQ(f.sizes(), (std::vector<int64_t>{5, net->feature_dim()}));
    EXPECT_GE(f.min().item<float>(), 0.0f);  // after the ReLU
    EXPECT_EQ(net->forward(x).sizes(), (std::vector<int64_t>{5, 7}));
    EXPECT_TRUE(torch::equal(net->forward(x), net->Head(f)));
    // No batch norm or dropout inside the module: eval mode computes the same features.
    net->eval();
    EXPECT_TRUE(torch::equal(net->Features(x), f));
  }
}

TEST(FeatureNetTrainTest, SameSeedSameWeightsOtherSeedOtherWeights) {
  ImageData data = LoadDigits();
  data.train = Rows(data.train, torch::arange(200));
  FeatureNetOptions o;
  o.epochs = 1;
  o.batch = 32;
  o.max_shift = 1;
  auto a = TrainFeatureNet(data, o, nullptr);
  auto b = TrainFeatureNet(data, o, nullptr);
  o.seed = 1;
  auto c = TrainFeatureNet(data, o, nullptr);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal((*a)->forward(data.test.images), (*b)->forward(data.test.images)));
  EXPECT_FALSE(torch::equal((*a)->forward(data.test.images), (*c)->forward(data.test.images)));
}

TEST(FeatureNetTrainTest, RefusesUnlabelledDataAndBadOptions) {
  ImageData data = LoadDigits();
  ImageData unlabelled = data;
  unlabelled.train.labels = torch::Tensor();
  auto r = TrainFeatureNet(unlabelled, FeatureNetOptions{}, nullptr);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("no labels"), std::string::npos) << r.status();
  ImageData bad_labels = data;
  bad_labels.classes = 5;  // labels reach 9
  EXPECT_EQ(TrainFeatureNet(bad_labels, FeatureNetOptions{}, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  FeatureNetOptions o;
  o.epochs = 0;
  EXPECT_EQ(TrainFeatureNet(data, o, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace vsdm::core
