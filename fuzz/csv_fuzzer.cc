// libFuzzer target: the wide-CSV series loader of core/series_data.h (LoadSeriesData on
// series:<file>). The input is written as <scratch>/in.csv. An optional first line
//   #opts context=2;horizon=1;columns=a,b;log1p=auto;test_start=2020-01-05;eval_stride=1
// (removed before writing) sets the SeriesOptions the spec would, so the fuzzer explores those
// too; without it the options are context 2, horizon 1, log1p auto, stride 1.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "core/series_data.h"
#include "fuzz/fuzz_util.h"
#include "fuzz/image_contract.h"

namespace {
// Applies "key=value;..." to `o`. Integers are clamped to [-2, 64] (the loader's own range checks
// are what is under test, not a loop over a billion origins).
void ApplyOpts(absl::string_view line, vsdm::core::SeriesOptions* o) {
  for (absl::string_view kv : absl::StrSplit(line, ';')) {
    const size_t eq = kv.find('=');
    if (eq == absl::string_view::npos) continue;
    const absl::string_view key = kv.substr(0, eq);
    const std::string value(kv.substr(eq + 1));
    int64_t n = 0;
    const bool is_int = absl::SimpleAtoi(value, &n);
    n = std::clamp<int64_t>(n, -2, 64);
    if (key == "context" && is_int) o->context = n;
    if (key == "horizon" && is_int) o->horizon = n;
    if (key == "eval_stride" && is_int) o->eval_stride = n;
    if (key == "columns") o->columns = value;
    if (key == "log1p") o->log1p = value;
    if (key == "test_start") o->test_start = value;
  }
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  vsdm::fuzz::InitTorchForFuzzing();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  vsdm::core::SeriesOptions options;
  options.context = 2;
  options.horizon = 1;
  options.eval_stride = 1;
  if (absl::StartsWith(text, "#opts ")) {
    const size_t nl = text.find('\n');
    ApplyOpts(absl::string_view(text).substr(6, nl == std::string::npos ? std::string::npos : nl - 6), &options);
    text.erase(0, nl == std::string::npos ? text.size() : nl + 1);
  }
  options.dataset = "series:" + vsdm::fuzz::Scratch().Write("in.csv", text);
  absl::StatusOr<vsdm::core::SeriesData> s = vsdm::core::LoadSeriesData(options);
  vsdm::fuzz::Scratch().Remove("in.csv");
  if (!s.ok()) return 0;
  using vsdm::fuzz::Require;
  const int64_t steps = s->steps(), dim = s->dim();
  Require(dim > 0 && steps > 0 && s->values.sizes() == s->raw.sizes() && s->values.size(1) == dim,
          "values/raw are not [T, D]");
  Require(torch::isfinite(s->values).all().item<bool>() && torch::isfinite(s->mean).all().item<bool>() &&
              torch::isfinite(s->std).all().item<bool>() && (s->std > 0).all().item<bool>(),
          "non-finite standardised values, mean or std, or a non-positive std");
  Require(0 < s->test_start && s->test_start < steps, "test_start outside the rows");
  Require(!s->train_origins.empty() && !s->test_origins.empty(), "no training or no test window");
  Require(s->dates.empty() || static_cast<int64_t>(s->dates.size()) == steps, "dates do not match the rows");
  // The windows of the first and last origins of each span, and the way back to original units.
  for (const std::vector<int64_t>* origins : {&s->train_origins, &s->test_origins}) {
    const torch::Tensor w = s->Windows(std::vector<int64_t>{origins->front(), origins->back()});
    Require(w.size(0) == 2 && w.size(1) == s->packed_width(), "Windows is not [n, packed_width()]");
  }
  Require(s->ToOriginal(s->values).sizes() == s->raw.sizes(), "ToOriginal changed the shape");
  return 0;
}
