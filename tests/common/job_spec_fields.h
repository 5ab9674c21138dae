// Test helpers over the JobSpec field visitor, shared by the spec and the wire tests: a visitor
// that sets every field to a non-default, in-range value, and one that records every field.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "common/job_spec.h"
#include "nlohmann/json.hpp"

namespace vsdm::spec_fields {

// Sets every field it visits to a non-default value inside its range, distinct per field where
// the range allows (the k-th field takes the point k/64 of the way through its range; an integer
// field lo + span^(k/128), geometrically, so that the products validation bounds, such as
// train.rounds x train.steps_per_round or the rank memory, stay small), so a converter that drops
// a field or swaps two shows.
class NonDefaultSetter : public JobSpecVisitor {
 public:
  void Int(const char* path, int64_t& v, int64_t lo, int64_t hi) override {
    const int64_t old = v;
    v = lo + static_cast<int64_t>(std::pow(static_cast<double>(hi - lo) + 1.0, Frac() / 2) - 1.0);
    if (v == old) v = v < hi ? v + 1 : v - 1;
    // Bounded by another field (resources.min_trainers <= resources.trainers, which is >= 1).
    if (std::string(path) == "resources.min_trainers") v = 1;
  }
  void Double(const char*, double& v, double lo, double hi) override {
    const double old = v;
    v = lo + (hi - lo) * Frac();
    if (v == old) v = lo + (hi - lo) * 0.5 * Frac();
  }
  void Bool(const char*, bool& v) override {
    Frac();
    v = !v;
  }
  void String(const char* path, std::string& v, size_t max_len) override {
    Frac();
    v = absl::StrCat("s", k_, "-", path).substr(0, max_len);
  }
  void Choice(const char*, std::string& v, const std::vector<std::string>& choices) override {
    Frac();
    auto it = std::find(choices.begin(), choices.end(), v);
    ASSERT_NE(it, choices.end()) << "default not among the choices";
    v = choices[(it - choices.begin() + 1) % choices.size()];
  }
  void DoubleList(const char*, std::vector<double>& v, size_t, size_t max_len, double lo, double hi) override {
    const double f = Frac();
    v.assign(max_len, 0.0);
    for (size_t i = 0; i < max_len; ++i) v[i] = lo + (hi - lo) * f / static_cast<double>(i + 1);
    // Whole-number bounds mark a list of counts (model.channel_mult): keep the values whole.
    if (lo == static_cast<double>(static_cast<int64_t>(lo)) && hi == static_cast<double>(static_cast<int64_t>(hi)))
      for (size_t i = 0; i < max_len; ++i) v[i] = std::max(lo, static_cast<double>(static_cast<int64_t>(v[i] + 0.5)));
  }

 private:
  double Frac() { return static_cast<double>(++k_) / 64.0; }
  int k_ = 0;
};

// Every visited field as (dotted path, JSON value), in visiting order; written by hand, not
// by JobSpecToJson, so that it can check it.
class FieldRecorder : public JobSpecVisitor {
 public:
  std::vector<std::pair<std::string, nlohmann::json>> fields;
  void Int(const char* p, int64_t& v, int64_t, int64_t) override { fields.emplace_back(p, v); }
  void Double(const char* p, double& v, double, double) override { fields.emplace_back(p, v); }
  void Bool(const char* p, bool& v) override { fields.emplace_back(p, v); }
  void String(const char* p, std::string& v, size_t) override { fields.emplace_back(p, v); }
  void Choice(const char* p, std::string& v, const std::vector<std::string>&) override { fields.emplace_back(p, v); }
  void DoubleList(const char* p, std::vector<double>& v, size_t, size_t, double, double) override {
    fields.emplace_back(p, v);
  }
};

std::vector<std::pair<std::string, nlohmann::json>> Fields(JobSpec spec) {
  FieldRecorder r;
  VisitJobSpecFields(spec, r);
  return r.fields;
}

}  // namespace vsdm::spec_fields
