#include "worker/agent/log_forward.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <fstream>

namespace vsdm::worker {

std::optional<v1::AppendLogRequest> NextLogChunk(const std::string& path, LogCursor& cursor, absl::Time now, bool final,
                                                 const LogForwardOptions& o) {
  if (cursor.done) return std::nullopt;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  const int64_t size = static_cast<int64_t>(st.st_size);
  if (size < cursor.sent) cursor.sent = 0;  // truncated or replaced: from its start
  if (cursor.tokens < 0) {
    cursor.tokens = o.burst;
    cursor.refilled = now;
  }
  cursor.tokens =
      std::min(o.burst, cursor.tokens + o.rate * std::max(0.0, absl::ToDoubleSeconds(now - cursor.refilled)));
  cursor.refilled = now;
  const int64_t pending = size - cursor.sent;
  if (pending <= 0) return std::nullopt;
  const int64_t allowed = final ? o.final_bytes : static_cast<int64_t>(std::floor(cursor.tokens));
  if (allowed <= 0) return std::nullopt;
  if (pending > allowed && (final || pending - allowed > o.chunk_bytes))
    cursor.sent = size - allowed;  // skip the oldest
  const int64_t n = std::min({size - cursor.sent, o.chunk_bytes, allowed});
  std::ifstream in(path, std::ios::binary);
  if (!in.seekg(cursor.sent)) return std::nullopt;
  v1::AppendLogRequest req;
  std::string* data = req.mutable_data();
  data->resize(static_cast<size_t>(n));
  in.read(data->data(), n);
  data->resize(static_cast<size_t>(in.gcount()));
  if (data->empty()) return std::nullopt;
  req.set_offset(cursor.sent);
  return req;
}

void CommitLogChunk(LogCursor& cursor, const v1::AppendLogRequest& sent) {
  const auto n = static_cast<int64_t>(sent.data().size());
  cursor.sent = std::max(cursor.sent, sent.offset() + n);
  cursor.tokens = std::max(0.0, cursor.tokens - static_cast<double>(n));
}

}  // namespace vsdm::worker
