#include "common/port_file.h"

#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/file_util.h"

namespace vsdm {

absl::Status WritePortFile(const std::string& path, const BoundPorts& ports) {
  std::string text;
  if (ports.grpc > 0) absl::StrAppend(&text, "grpc ", ports.grpc, "\n");
  if (ports.metrics > 0) absl::StrAppend(&text, "metrics ", ports.metrics, "\n");
  return AtomicWriteFile(path, text);
}

absl::StatusOr<BoundPorts> ReadPortFile(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  BoundPorts out;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    ++line_no;
    std::vector<absl::string_view> kv = absl::StrSplit(line, ' ', absl::SkipEmpty());
    int port = 0;
    if (kv.size() != 2 || !absl::SimpleAtoi(kv[1], &port) || port <= 0 || port > 65535 ||
        (kv[0] != "grpc" && kv[0] != "metrics")) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line_no, ": want \"grpc|metrics PORT\", got \"", line, "\""));
    }
    (kv[0] == "grpc" ? out.grpc : out.metrics) = port;
  }
  return out;
}

absl::StatusOr<BoundPorts> WaitForPortFile(const std::string& path, absl::Duration timeout) {
  const absl::Time until = absl::Now() + timeout;
  while (true) {
    auto ports = ReadPortFile(path);
    if (ports.ok() || !absl::IsNotFound(ports.status())) return ports;
    if (absl::Now() >= until) {
      return absl::DeadlineExceededError(absl::StrCat(path, ": not written within ", absl::FormatDuration(timeout)));
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
}

}  // namespace vsdm
