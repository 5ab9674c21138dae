// Writes fuzz/corpus/job_spec_proto/'s seeds: each YAML spec given, parsed and converted with
// JobSpecToProto, serialised to OUT_DIR/<spec file name without .yaml>.pb.
// usage: vsdm_fuzz_write_proto_seeds OUT_DIR SPEC.yaml...
#include <cstdio>
#include <filesystem>
#include <string>

#include "common/file_util.h"
#include "common/job_spec.h"
#include "proto/job_spec_proto.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s OUT_DIR SPEC.yaml...\n", argv[0]);
    return 2;
  }
  for (int i = 2; i < argc; ++i) {
    absl::StatusOr<vsdm::JobSpec> spec = vsdm::LoadJobSpecFile(argv[i]);
    if (!spec.ok()) {
      std::fprintf(stderr, "%s: %s\n", argv[i], std::string(spec.status().message()).c_str());
      return 1;
    }
    const std::string bytes = vsdm::JobSpecToProto(*spec).SerializeAsString();
    const std::string out = (std::filesystem::path(argv[1]) / std::filesystem::path(argv[i]).stem()).string() + ".pb";
    const absl::Status written = vsdm::AtomicWriteFile(out, bytes);
    if (!written.ok()) {
      std::fprintf(stderr, "%s\n", std::string(written.message()).c_str());
      return 1;
    }
    std::printf("%s: %zu bytes\n", out.c_str(), bytes.size());
  }
  return 0;
}
