// libFuzzer target: the .npy readers, core/npy.h's ReadNpy (float32/float64 arrays) and the image
// loader of core/image_data.h (ReadImages on a .npy: uint8 or float pixels). The input is written
// as <scratch>/in.npy and read by both.
#include <cstddef>
#include <cstdint>

#include "core/image_data.h"
#include "core/npy.h"
#include "fuzz/fuzz_util.h"
#include "fuzz/image_contract.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  vsdm::fuzz::InitTorchForFuzzing();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = vsdm::fuzz::Scratch().Write("in.npy", data, size);
  absl::StatusOr<torch::Tensor> array = vsdm::core::ReadNpy(path);
  if (array.ok()) {
    vsdm::fuzz::Require(array->scalar_type() == torch::kFloat32 || array->scalar_type() == torch::kFloat64,
                        "ReadNpy returned neither float32 nor float64");
    // What ReadNpy accepted, EncodeNpy must write back to an equal array.
    const std::string again = vsdm::fuzz::Scratch().Write("again.npy", vsdm::core::EncodeNpy(*array));
    absl::StatusOr<torch::Tensor> reread = vsdm::core::ReadNpy(again);
    vsdm::fuzz::Require(reread.ok() && reread->sizes() == array->sizes() &&
                            torch::equal(reread->isnan(), array->isnan()) &&
                            torch::equal(reread->nan_to_num(0), array->nan_to_num(0)),
                        "ReadNpy(EncodeNpy(x)) != x");
  }
  absl::StatusOr<vsdm::core::ImageSet> set = vsdm::core::ReadImages(path);
  if (set.ok()) vsdm::fuzz::CheckImageSet(*set);
  vsdm::fuzz::Scratch().Remove("in.npy");
  vsdm::fuzz::Scratch().Remove("again.npy");
  return 0;
}
