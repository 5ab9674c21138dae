// The wire form of the job spec: every field of the struct survives JobSpec -> proto -> JobSpec
// (the momentum block included), every JobSpec field has its counterpart in job.proto (a field
// forgotten there fails here, naming it), and a bad value set on the wire is refused naming the
// field.
#include "proto/job_spec_proto.h"

#include <gtest/gtest.h>

#include "tests/common/job_spec_fields.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>

#include <algorithm>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace vsdm {
namespace {

using spec_fields::Fields;
using spec_fields::NonDefaultSetter;

TEST(JobSpecProtoTest, EveryFieldRoundTrips) {
  JobSpec spec;
  NonDefaultSetter setter;
  VisitJobSpecFields(spec, setter);
  ASSERT_TRUE(ValidateJobSpec(spec).ok()) << ValidateJobSpec(spec);
  const auto want = Fields(spec), defaults = Fields(JobSpec());
  ASSERT_EQ(want.size(), defaults.size());
  for (size_t i = 0; i < want.size(); ++i)
    ASSERT_NE(want[i].second, defaults[i].second) << want[i].first << " kept its default";

  v1::JobSpec wire = JobSpecToProto(spec);
  EXPECT_TRUE(wire.has_momentum());
  EXPECT_EQ(wire.momentum().damping(), spec.momentum.damping);
  auto back = JobSpecFromProto(wire);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(Fields(*back), want);
}

TEST(JobSpecProtoTest, UnsetFieldsTakeTheirDefaults) {
  auto defaults = JobSpecFromProto(v1::JobSpec());
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(Fields(*defaults), Fields(JobSpec()));
  v1::JobSpec some;
  some.set_method("vsmd");
  some.mutable_momentum()->set_gamma(1.5);
  auto s = JobSpecFromProto(some);
  ASSERT_TRUE(s.ok()) << s.status();
  JobSpec want;
  want.method = "vsmd";
  want.momentum.gamma = 1.5;
  EXPECT_EQ(Fields(*s), Fields(want));
}

TEST(JobSpecProtoTest, JobProtoHasEveryJobSpecField) {
  EXPECT_TRUE(CheckJobSpecProtoSchema().ok()) << CheckJobSpecProtoSchema();
}

// job.proto as built into this binary, edited by `edit`, in a pool of its own; `edit` gets the
// file and returns false when it found nothing to change.
class EditedSchema {
 public:
  explicit EditedSchema(const std::function<bool(google::protobuf::FileDescriptorProto&)>& edit) {
    const google::protobuf::FileDescriptor* file = v1::JobSpec::descriptor()->file();
    for (int i = 0; i < file->dependency_count(); ++i) Add(*file->dependency(i));
    google::protobuf::FileDescriptorProto proto;
    file->CopyTo(&proto);
    edited_ = edit(proto);
    pool_.BuildFile(proto);
  }
  bool edited() const { return edited_; }
  const google::protobuf::Descriptor* job_spec() const { return pool_.FindMessageTypeByName("vsdm.v1.JobSpec"); }

 private:
  void Add(const google::protobuf::FileDescriptor& f) {
    for (int i = 0; i < f.dependency_count(); ++i) Add(*f.dependency(i));
    google::protobuf::FileDescriptorProto proto;
    f.CopyTo(&proto);
    pool_.BuildFile(proto);
  }
  google::protobuf::DescriptorPool pool_;
  bool edited_ = false;
};

google::protobuf::DescriptorProto* FindMessage(google::protobuf::FileDescriptorProto& f, const std::string& name) {
  for (auto& m : *f.mutable_message_type())
    if (m.name() == name) return &m;
  return nullptr;
}

google::protobuf::FieldDescriptorProto* FindField(google::protobuf::FileDescriptorProto& f, const std::string& message,
                                                  const std::string& field) {
  google::protobuf::DescriptorProto* m = FindMessage(f, message);
  if (m == nullptr) return nullptr;
  for (auto& x : *m->mutable_field())
    if (x.name() == field) return &x;
  return nullptr;
}

// Takes `optional` off message.field (drops its synthetic oneof); false when it has none.
bool DropOptional(google::protobuf::FileDescriptorProto& f, const std::string& message, const std::string& field) {
  google::protobuf::FieldDescriptorProto* x = FindField(f, message, field);
  if (x == nullptr || !x->proto3_optional()) return false;
  google::protobuf::DescriptorProto* m = FindMessage(f, message);
  const int gone = x->oneof_index();
  x->clear_oneof_index();
  x->clear_proto3_optional();
  m->mutable_oneof_decl()->erase(m->mutable_oneof_decl()->begin() + gone);
  for (auto& y : *m->mutable_field())
    if (y.has_oneof_index() && y.oneof_index() > gone) y.set_oneof_index(y.oneof_index() - 1);
  return true;
}

// Deletes message.field; false when there is none.
bool RemoveField(google::protobuf::FileDescriptorProto& f, const std::string& message, const std::string& field) {
  google::protobuf::FieldDescriptorProto* x = FindField(f, message, field);
  if (x == nullptr) return false;
  if (x->proto3_optional()) DropOptional(f, message, field);
  auto* fields = FindMessage(f, message)->mutable_field();
  fields->erase(std::find_if(fields->begin(), fields->end(), [&](const auto& y) { return y.name() == field; }));
  return true;
}

void ExpectSchemaRefused(const EditedSchema& schema, const std::string& path) {
  ASSERT_TRUE(schema.edited());
  ASSERT_NE(schema.job_spec(), nullptr);
  absl::Status s = CheckJobSpecProtoSchema(*schema.job_spec());
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
  EXPECT_NE(std::string(s.message()).find(absl::StrCat("vsdm.v1.JobSpec.", path, " ")), std::string::npos) << s;
}

TEST(JobSpecProtoTest, AJobSpecFieldMissingFromJobProtoFailsNamingIt) {
  EditedSchema unchanged([](google::protobuf::FileDescriptorProto&) { return true; });
  ASSERT_NE(unchanged.job_spec(), nullptr);
  EXPECT_TRUE(CheckJobSpecProtoSchema(*unchanged.job_spec()).ok());
  // A field forgotten in a section; a whole section forgotten.
  ExpectSchemaRefused(EditedSchema([](auto& f) { return RemoveField(f, "TrainSpec", "ema"); }), "train.ema");
  ExpectSchemaRefused(EditedSchema([](auto& f) { return RemoveField(f, "JobSpec", "momentum"); }), "momentum.beta");
  // A field of the wrong type.
  ExpectSchemaRefused(EditedSchema([](auto& f) {
                        auto* x = FindField(f, "TrainSpec", "rounds");
                        if (x == nullptr) return false;
                        x->set_type(google::protobuf::FieldDescriptorProto::TYPE_DOUBLE);
                        return true;
                      }),
                      "train.rounds");
  // A scalar without `optional`: a 0 on the wire could not be told from unset.
  ExpectSchemaRefused(EditedSchema([](auto& f) { return DropOptional(f, "SampleSpec", "n"); }), "sample.n");
}

TEST(JobSpecProtoTest, BadMomentumValueNamesTheField) {
  v1::JobSpec wire;
  wire.set_method("vsmd");
  wire.mutable_momentum()->set_gamma(0.0);
  auto s = JobSpecFromProto(wire);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.status().message()).find("momentum.gamma"), std::string::npos) << s.status();
}

// A newer client's field: the serialized spec with `extra` (a varint field `number` = 1) appended
// to the message at `path` ("" for the top level, else a sub-message such as "train").
v1::JobSpec WithNewerField(v1::JobSpec spec, const std::string& path, int number) {
  google::protobuf::Message* m = &spec;
  if (!path.empty()) {
    const auto* f = m->GetDescriptor()->FindFieldByName(path);
    m = m->GetReflection()->MutableMessage(m, f);
  }
  m->GetReflection()->MutableUnknownFields(m)->AddVarint(number, 1);
  // Through bytes, as from the wire: the field survives as an unknown one.
  v1::JobSpec back;
  EXPECT_TRUE(back.ParseFromString(spec.SerializeAsString()));
  return back;
}

TEST(JobSpecProtoTest, UnknownFieldsFromANewerClientAreRefusedNamingTheirNumber) {
  const v1::JobSpec base = JobSpecToProto(JobSpec());
  ASSERT_TRUE(JobSpecFromProto(base).ok());
  auto top = JobSpecFromProto(WithNewerField(base, "", 99));
  ASSERT_FALSE(top.ok());
  EXPECT_EQ(top.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(top.status().message(), "spec: unknown field number 99 (")) << top.status();
  auto nested = JobSpecFromProto(WithNewerField(base, "train", 42));
  ASSERT_FALSE(nested.ok());
  EXPECT_TRUE(absl::StartsWith(nested.status().message(), "spec.train: unknown field number 42 (")) << nested.status();
  auto momentum = JobSpecFromProto(WithNewerField(base, "momentum", 7000));
  EXPECT_TRUE(absl::StartsWith(momentum.status().message(), "spec.momentum: unknown field number 7000"))
      << momentum.status();
  // Raw bytes: field 200, length-delimited, appended to a valid spec.
  std::string bytes = base.SerializeAsString();
  bytes += std::string("\xc2\x0c\x02hi", 5);  // tag (200 << 3 | 2) = 1602 as a varint, length 2
  v1::JobSpec raw;
  ASSERT_TRUE(raw.ParseFromString(bytes));
  EXPECT_TRUE(absl::StartsWith(JobSpecFromProto(raw).status().message(), "spec: unknown field number 200"))
      << JobSpecFromProto(raw).status();
}

TEST(JobSpecProtoTest, TheWireAppliesTheSameBoundsAsTheYaml) {
  v1::JobSpec wire;
  wire.mutable_variational()->set_trajectories(1000000);
  wire.mutable_variational()->set_adam_batch(1);
  auto s = JobSpecFromProto(wire);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(s.status().message(),
                               "spec.variational.trajectories × variational.adam_batch: the variational rank needs"))
      << s.status();
  // A configured limit (the coordinator's --max-rank-memory) replaces the default.
  JobSpecLimits off;
  off.max_rank_memory_bytes = 0;
  EXPECT_TRUE(JobSpecFromProto(wire, off).ok());
  v1::JobSpec steps;
  steps.mutable_train()->set_rounds(1000000);
  steps.mutable_train()->set_steps_per_round(10000000);
  EXPECT_TRUE(
      absl::StartsWith(JobSpecFromProto(steps).status().message(), "spec.train.rounds × train.steps_per_round"));
  // Control characters in free text; a long value quoted bounded.
  v1::JobSpec name;
  name.set_name("job\x1b]0;pwned\x07");
  EXPECT_EQ(JobSpecFromProto(name).status().message(),
            "spec.name: must not contain control characters or invalid UTF-8, got \"job\\x1b]0;pwned\\x07\"");
  v1::JobSpec method;
  method.set_method(std::string(4 << 20, 'x'));
  EXPECT_LT(JobSpecFromProto(method).status().message().size(), 200u);
}

}  // namespace
}  // namespace vsdm
