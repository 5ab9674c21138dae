// libFuzzer target: the IDX loaders of core/image_data.h. The input is written as
// <scratch>/fuzz-images-idx3-ubyte (gzip or not: the loader inflates by magic) beside a fixed valid
// labels file holding 2 labels, read with ReadImages (which also reads the sibling labels), and
// then read again as a labels file with ReadIdxLabels.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/image_data.h"
#include "fuzz/fuzz_util.h"
#include "fuzz/image_contract.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  vsdm::fuzz::InitTorchForFuzzing();
  // magic 0x00000801, n = 2, labels 3 and 7.
  vsdm::fuzz::Scratch().Write("fuzz-labels-idx1-ubyte", std::string("\x00\x00\x08\x01\x00\x00\x00\x02\x03\x07", 10));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = vsdm::fuzz::Scratch().Write("fuzz-images-idx3-ubyte", data, size);
  absl::StatusOr<vsdm::core::ImageSet> set = vsdm::core::ReadImages(path);
  if (set.ok()) {
    vsdm::fuzz::CheckImageSet(*set);
    vsdm::fuzz::Require(set->has_labels() && set->size() == 2, "IDX images accepted without the sibling labels");
  }
  absl::StatusOr<torch::Tensor> labels = vsdm::core::ReadIdxLabels(path);
  if (labels.ok()) {
    vsdm::fuzz::Require(labels->dim() == 1 && labels->scalar_type() == torch::kInt64, "labels are not [N] int64");
  }
  vsdm::fuzz::Scratch().Remove("fuzz-images-idx3-ubyte");
  return 0;
}
