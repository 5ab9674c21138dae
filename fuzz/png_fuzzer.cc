// libFuzzer target: the PNG-folder loader of core/image_data.h. The input is written as the one
// file of <scratch>/png/ (in.png) and the folder read with ReadImages. Inputs whose IHDR claims
// more than 2^24 pixels but stays within the loader's 2 GiB cap (Note [Size caps] in
// image_data.cc) are skipped: by design the loader allocates the claimed size before decoding,
// which would only trip libFuzzer's memory limit. Claims above the cap are fed (they must be refused).
#include <cstddef>
#include <cstdint>

#include "core/image_data.h"
#include "fuzz/fuzz_util.h"
#include "fuzz/image_contract.h"

namespace {
// Whether the IHDR at its fixed place (width at byte 16, height at 20) claims (2^24, 2^31 / 3] pixels.
bool ClaimsAHugeImageWithinTheCap(const uint8_t* data, size_t size) {
  if (size < 24) return false;
  auto be32 = [&](size_t at) {
    return (uint64_t{data[at]} << 24) | (uint64_t{data[at + 1]} << 16) | (uint64_t{data[at + 2]} << 8) | data[at + 3];
  };
  const uint64_t pixels = be32(16) * be32(20);
  return pixels > (uint64_t{1} << 24) && pixels * 3 <= (uint64_t{1} << 31);
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  vsdm::fuzz::InitTorchForFuzzing();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (ClaimsAHugeImageWithinTheCap(data, size)) return 0;
  vsdm::fuzz::Scratch().Write("png/in.png", data, size);
  absl::StatusOr<vsdm::core::ImageSet> set = vsdm::core::ReadImages(vsdm::fuzz::Scratch().Path("png"));
  if (set.ok()) {
    vsdm::fuzz::CheckImageSet(*set);
    vsdm::fuzz::Require(set->size() == 1, "one PNG file read as more or fewer than one image");
  }
  vsdm::fuzz::Scratch().Remove("png/in.png");
  return 0;
}
