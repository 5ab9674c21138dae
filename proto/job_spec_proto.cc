#include "proto/job_spec_proto.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/message.h>
#include <google/protobuf/unknown_field_set.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

namespace vsdm {
namespace {
using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::UnknownFieldSet;

// What a JobSpec field of one visitor kind must be on the wire.
struct WireKind {
  FieldDescriptor::CppType type;
  bool repeated;
  const char* name;  // for messages
};
constexpr WireKind kInt{FieldDescriptor::CPPTYPE_INT64, false, "optional int64"};
constexpr WireKind kDouble{FieldDescriptor::CPPTYPE_DOUBLE, false, "optional double"};
constexpr WireKind kBool{FieldDescriptor::CPPTYPE_BOOL, false, "optional bool"};
constexpr WireKind kString{FieldDescriptor::CPPTYPE_STRING, false, "optional string"};
constexpr WireKind kDoubleList{FieldDescriptor::CPPTYPE_DOUBLE, true, "repeated double"};

// The descriptors from `root` down to the field at dotted `path`: every segment but the last a
// singular message field, the last one of `kind` (a singular one with presence, so that an unset
// field can take its default). INTERNAL naming the path when job.proto has no such field.
absl::StatusOr<std::vector<const FieldDescriptor*>> FieldChain(const Descriptor& root, const char* path,
                                                               WireKind kind) {
  const auto missing = [&](const std::string& why) {
    return absl::InternalError(
        absl::StrCat("job.proto: ", root.full_name(), ".", path, " (", kind.name, ", a JobSpec field) ", why));
  };
  std::vector<std::string> parts = absl::StrSplit(path, '.');
  std::vector<const FieldDescriptor*> chain;
  const Descriptor* d = &root;
  for (size_t i = 0; i < parts.size(); ++i) {
    const FieldDescriptor* f = d->FindFieldByName(parts[i]);
    if (f == nullptr) return missing(absl::StrCat("is missing: ", d->full_name(), " has no field ", parts[i]));
    chain.push_back(f);
    if (i + 1 < parts.size()) {
      if (f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE || f->is_repeated())
        return missing(absl::StrCat("is missing: ", f->full_name(), " is not a message"));
      d = f->message_type();
    }
  }
  const FieldDescriptor* f = chain.back();
  if (f->cpp_type() != kind.type || f->is_repeated() != kind.repeated || (!kind.repeated && !f->has_presence()))
    return missing(absl::StrCat("is declared otherwise: ", f->DebugString()));
  return chain;
}

// Checks every field's wire counterpart; records the first missing one.
class SchemaChecker : public JobSpecVisitor {
 public:
  explicit SchemaChecker(const Descriptor& root) : root_(root) {}
  absl::Status status;
  void Int(const char* p, int64_t&, int64_t, int64_t) override { Check(p, kInt); }
  void Double(const char* p, double&, double, double) override { Check(p, kDouble); }
  void Bool(const char* p, bool&) override { Check(p, kBool); }
  void String(const char* p, std::string&, size_t) override { Check(p, kString); }
  void Choice(const char* p, std::string&, const std::vector<std::string>&) override { Check(p, kString); }
  void DoubleList(const char* p, std::vector<double>&, size_t, size_t, double, double) override {
    Check(p, kDoubleList);
  }

 private:
  void Check(const char* p, WireKind kind) {
    if (auto chain = FieldChain(root_, p, kind); !chain.ok() && status.ok()) status = chain.status();
  }
  const Descriptor& root_;
};

// The message holding the field at `path`, created on the way, and the field; {nullptr, nullptr}
// when job.proto lacks it (CheckJobSpecProtoSchema() says so).
std::pair<Message*, const FieldDescriptor*> Mutable(Message* m, const char* path, WireKind kind) {
  auto chain = FieldChain(*m->GetDescriptor(), path, kind);
  if (!chain.ok()) return {nullptr, nullptr};
  for (size_t i = 0; i + 1 < chain->size(); ++i) m = m->GetReflection()->MutableMessage(m, (*chain)[i]);
  return {m, chain->back()};
}

class ToProto : public JobSpecVisitor {
 public:
  explicit ToProto(v1::JobSpec* out) : out_(out) {}
  void Int(const char* p, int64_t& v, int64_t, int64_t) override {
    if (auto [m, f] = Mutable(out_, p, kInt); f) m->GetReflection()->SetInt64(m, f, v);
  }
  void Double(const char* p, double& v, double, double) override {
    if (auto [m, f] = Mutable(out_, p, kDouble); f) m->GetReflection()->SetDouble(m, f, v);
  }
  void Bool(const char* p, bool& v) override {
    if (auto [m, f] = Mutable(out_, p, kBool); f) m->GetReflection()->SetBool(m, f, v);
  }
  void String(const char* p, std::string& v, size_t) override { Str(p, v); }
  void Choice(const char* p, std::string& v, const std::vector<std::string>&) override { Str(p, v); }
  void DoubleList(const char* p, std::vector<double>& v, size_t, size_t, double, double) override {
    if (auto [m, f] = Mutable(out_, p, kDoubleList); f) {
      m->GetReflection()->ClearField(m, f);
      for (double x : v) m->GetReflection()->AddDouble(m, f, x);
    }
  }

 private:
  void Str(const char* p, const std::string& v) {
    if (auto [m, f] = Mutable(out_, p, kString); f) m->GetReflection()->SetString(m, f, v);
  }
  v1::JobSpec* out_;
};

// Reads the set fields; a JobSpec field job.proto lacks makes `status` INTERNAL.
class FromProto : public JobSpecVisitor {
 public:
  explicit FromProto(const v1::JobSpec& in) : in_(in) {}
  absl::Status status;
  void Int(const char* p, int64_t& v, int64_t, int64_t) override {
    if (auto [m, f] = Find(p, kInt); m) v = m->GetReflection()->GetInt64(*m, f);
  }
  void Double(const char* p, double& v, double, double) override {
    if (auto [m, f] = Find(p, kDouble); m) v = m->GetReflection()->GetDouble(*m, f);
  }
  void Bool(const char* p, bool& v) override {
    if (auto [m, f] = Find(p, kBool); m) v = m->GetReflection()->GetBool(*m, f);
  }
  void String(const char* p, std::string& v, size_t) override {
    if (auto [m, f] = Find(p, kString); m) v = m->GetReflection()->GetString(*m, f);
  }
  void Choice(const char* p, std::string& v, const std::vector<std::string>&) override {
    if (auto [m, f] = Find(p, kString); m) v = m->GetReflection()->GetString(*m, f);
  }
  void DoubleList(const char* p, std::vector<double>& v, size_t, size_t, double, double) override {
    auto [m, f] = Find(p, kDoubleList);
    if (m == nullptr) return;
    const int n = m->GetReflection()->FieldSize(*m, f);
    if (n == 0) return;
    v.clear();
    for (int i = 0; i < n; ++i) v.push_back(m->GetReflection()->GetRepeatedDouble(*m, f, i));
  }

 private:
  // The message and field when the field is set (a repeated one: its message is), else
  // {nullptr, nullptr}.
  std::pair<const Message*, const FieldDescriptor*> Find(const char* p, WireKind kind) {
    auto chain = FieldChain(*in_.GetDescriptor(), p, kind);
    if (!chain.ok()) {
      if (status.ok()) status = chain.status();
      return {nullptr, nullptr};
    }
    const Message* m = &in_;
    for (size_t i = 0; i + 1 < chain->size(); ++i) {
      if (!m->GetReflection()->HasField(*m, (*chain)[i])) return {nullptr, nullptr};
      m = &m->GetReflection()->GetMessage(*m, (*chain)[i]);
    }
    const FieldDescriptor* f = chain->back();
    if (!f->is_repeated() && !m->GetReflection()->HasField(*m, f)) return {nullptr, nullptr};
    return {m, f};
  }
  const v1::JobSpec& in_;
};

// Every JobSpec field's dotted path.
class PathRecorder : public JobSpecVisitor {
 public:
  std::set<std::string> paths;
  void Int(const char* p, int64_t&, int64_t, int64_t) override { paths.insert(p); }
  void Double(const char* p, double&, double, double) override { paths.insert(p); }
  void Bool(const char* p, bool&) override { paths.insert(p); }
  void String(const char* p, std::string&, size_t) override { paths.insert(p); }
  void Choice(const char* p, std::string&, const std::vector<std::string>&) override { paths.insert(p); }
  void DoubleList(const char* p, std::vector<double>&, size_t, size_t, double, double) override { paths.insert(p); }
};

// Refuses what `m` (at dotted `path`, "" for the root) carries that JobSpecFromProto would not
// read: fields this binary's job.proto does not declare (unknown fields, e.g. from a newer
// client), and declared fields that are no JobSpec field; recursively through set sub-messages.
absl::Status RefuseUnread(const Message& m, const std::string& path, const std::set<std::string>& known) {
  const std::string shown = path.empty() ? "spec" : absl::StrCat("spec.", path);
  const UnknownFieldSet& unknown = m.GetReflection()->GetUnknownFields(m);
  if (!unknown.empty()) {
    std::vector<int> numbers;
    for (int i = 0; i < unknown.field_count() && numbers.size() < 8; ++i) numbers.push_back(unknown.field(i).number());
    return absl::InvalidArgumentError(
        absl::StrCat(shown, ": unknown field number", numbers.size() > 1 ? "s " : " ", absl::StrJoin(numbers, ", "),
                     " (this server's job.proto has no such field; from a newer client? it would be ignored)"));
  }
  std::vector<const FieldDescriptor*> fields;
  m.GetReflection()->ListFields(m, &fields);
  for (const FieldDescriptor* f : fields) {
    const std::string p = path.empty() ? f->name() : absl::StrCat(path, ".", f->name());
    if (known.count(p)) continue;
    const bool section =
        f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && !f->is_repeated() &&
        std::any_of(known.begin(), known.end(), [&](const std::string& k) { return absl::StartsWith(k, p + "."); });
    if (!section)
      return absl::InvalidArgumentError(
          absl::StrCat("spec.", p, ": field number ", f->number(), " is not a JobSpec field this server reads"));
    VSDM_RETURN_IF_ERROR(RefuseUnread(m.GetReflection()->GetMessage(m, f), p, known));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckJobSpecProtoSchema(const google::protobuf::Descriptor& job_spec) {
  JobSpec spec;
  SchemaChecker checker(job_spec);
  VisitJobSpecFields(spec, checker);
  return checker.status;
}

v1::JobSpec JobSpecToProto(const JobSpec& spec) {
  JobSpec copy = spec;
  v1::JobSpec out;
  ToProto w(&out);
  VisitJobSpecFields(copy, w);
  return out;
}

absl::StatusOr<JobSpec> JobSpecFromProto(const v1::JobSpec& proto, const JobSpecLimits& limits) {
  JobSpec spec;
  PathRecorder known;
  VisitJobSpecFields(spec, known);
  VSDM_RETURN_IF_ERROR(RefuseUnread(proto, "", known.paths));
  FromProto r(proto);
  VisitJobSpecFields(spec, r);
  if (!r.status.ok()) return r.status;
  if (absl::Status s = ValidateJobSpec(spec, limits); !s.ok())
    return absl::InvalidArgumentError(absl::StrCat("spec.", s.message()));
  return spec;
}

std::string SpecHash(const v1::JobSpec& spec) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream raw(&bytes);
    google::protobuf::io::CodedOutputStream out(&raw);
    out.SetSerializationDeterministic(true);
    spec.SerializeToCodedStream(&out);
  }
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return absl::StrFormat("%016x", h);
}

}  // namespace vsdm
