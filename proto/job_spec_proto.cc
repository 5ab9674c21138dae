#include "proto/job_spec_proto.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace vsdm {
namespace {
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// The message holding the last segment of `path` and that field's descriptor. With `create`,
// intermediate messages are created; without, nullptr when one is absent.
std::pair<Message*, const FieldDescriptor*> Resolve(Message* m, const char* path, bool create) {
  std::vector<std::string> parts = absl::StrSplit(path, '.');
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    const FieldDescriptor* f = m->GetDescriptor()->FindFieldByName(parts[i]);
    if (f == nullptr) return {nullptr, nullptr};
    if (!create && !m->GetReflection()->HasField(*m, f)) return {nullptr, nullptr};
    m = m->GetReflection()->MutableMessage(m, f);
  }
  return {m, m->GetDescriptor()->FindFieldByName(parts.back())};
}

class ToProto : public JobSpecVisitor {
 public:
  explicit ToProto(v1::JobSpec* out) : out_(out) {}
  void Int(const char* p, int64_t& v, int64_t, int64_t) override {
    if (auto [m, f] = Resolve(out_, p, true); f) m->GetReflection()->SetInt64(m, f, v);
  }
  void Double(const char* p, double& v, double, double) override {
    if (auto [m, f] = Resolve(out_, p, true); f) m->GetReflection()->SetDouble(m, f, v);
  }
  void Bool(const char* p, bool& v) override {
    if (auto [m, f] = Resolve(out_, p, true); f) m->GetReflection()->SetBool(m, f, v);
  }
  void String(const char* p, std::string& v, size_t) override { Str(p, v); }
  void Choice(const char* p, std::string& v, const std::vector<std::string>&) override { Str(p, v); }
  void DoubleList(const char* p, std::vector<double>& v, size_t, size_t, double, double) override {
    if (auto [m, f] = Resolve(out_, p, true); f) {
      m->GetReflection()->ClearField(m, f);
      for (double x : v) m->GetReflection()->AddDouble(m, f, x);
    }
  }

 private:
  void Str(const char* p, const std::string& v) {
    if (auto [m, f] = Resolve(out_, p, true); f) m->GetReflection()->SetString(m, f, v);
  }
  v1::JobSpec* out_;
};

class FromProto : public JobSpecVisitor {
 public:
  explicit FromProto(const v1::JobSpec& in) : in_(in) {}
  void Int(const char* p, int64_t& v, int64_t, int64_t) override {
    if (auto [m, f] = Find(p); m) v = m->GetReflection()->GetInt64(*m, f);
  }
  void Double(const char* p, double& v, double, double) override {
    if (auto [m, f] = Find(p); m) v = m->GetReflection()->GetDouble(*m, f);
  }
  void Bool(const char* p, bool& v) override {
    if (auto [m, f] = Find(p); m) v = m->GetReflection()->GetBool(*m, f);
  }
  void String(const char* p, std::string& v, size_t) override {
    if (auto [m, f] = Find(p); m) v = m->GetReflection()->GetString(*m, f);
  }
  void Choice(const char* p, std::string& v, const std::vector<std::string>&) override {
    if (auto [m, f] = Find(p); m) v = m->GetReflection()->GetString(*m, f);
  }
  void DoubleList(const char* p, std::vector<double>& v, size_t, size_t, double, double) override {
    auto [m, f] = Resolve(const_cast<v1::JobSpec*>(&in_), p, false);
    if (m == nullptr || f == nullptr) return;
    const int n = m->GetReflection()->FieldSize(*m, f);
    if (n == 0) return;
    v.clear();
    for (int i = 0; i < n; ++i) v.push_back(m->GetReflection()->GetRepeatedDouble(*m, f, i));
  }

 private:
  // The message and field when the field is set, else {nullptr, nullptr}.
  std::pair<const Message*, const FieldDescriptor*> Find(const char* p) {
    auto [m, f] = Resolve(const_cast<v1::JobSpec*>(&in_), p, false);
    if (m == nullptr || f == nullptr || !m->GetReflection()->HasField(*m, f)) return {nullptr, nullptr};
    return {m, f};
  }
  const v1::JobSpec& in_;
};

}  // namespace

v1::JobSpec JobSpecToProto(const JobSpec& spec) {
  JobSpec copy = spec;
  v1::JobSpec out;
  ToProto w(&out);
  VisitJobSpecFields(copy, w);
  return out;
}

absl::StatusOr<JobSpec> JobSpecFromProto(const v1::JobSpec& proto) {
  JobSpec spec;
  FromProto r(proto);
  VisitJobSpecFields(spec, r);
  if (absl::Status s = ValidateJobSpec(spec); !s.ok())
    return absl::InvalidArgumentError(absl::StrCat("spec.", s.message()));
  return spec;
}

}  // namespace vsdm
