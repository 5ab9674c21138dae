// Helpers shared by the libFuzzer targets of fuzz/ (issue 16): a scratch folder for the loaders
// that want a path, and a contract check that turns a broken postcondition into a crash libFuzzer
// reports (an assert would vanish under NDEBUG).
#pragma once

#include <stdlib.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace vsdm::fuzz {

// Aborts with `what` when `ok` is false: a parser that returned OK broke its own contract.
inline void Require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz contract violated: %s\n", what);
  std::abort();
}

// A fresh folder under the system temp directory (vsdm-fuzz.XXXXXX), removed with everything in
// it when the object is destroyed. One per fuzzer process (a function-local static); a crash
// leaves it behind under /tmp. Not thread-safe (libFuzzer runs inputs one at a time).
class ScratchDir {
 public:
  ScratchDir() {
    std::string templ = (std::filesystem::temp_directory_path() / "vsdm-fuzz.XXXXXX").string();
    Require(mkdtemp(templ.data()) != nullptr, "mkdtemp failed");
    path_ = templ;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  // <dir>/<name>.
  std::string Path(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }
  // Writes `size` bytes at `data` to <dir>/<name> (creating its folder); returns the path.
  std::string Write(const std::string& name, const uint8_t* data, size_t size) const {
    const std::filesystem::path path = Path(name);
    std::filesystem::create_directories(path.parent_path());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    out.close();
    Require(static_cast<bool>(out), "cannot write the fuzz input to the scratch folder");
    return path.string();
  }
  std::string Write(const std::string& name, const std::string& bytes) const {
    return Write(name, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
  // Removes <dir>/<name> (a file or a folder), if present.
  void Remove(const std::string& name) const {
    std::error_code ec;
    std::filesystem::remove_all(Path(name), ec);
  }

 private:
  std::string path_;
};

// The fuzzer process's scratch folder (each target is its own binary, so one a process).
inline const ScratchDir& Scratch() {
  static const ScratchDir dir;
  return dir;
}

}  // namespace vsdm::fuzz
