// Note [Live rank logs] (service.proto), the agent's side: each turn the new bytes of every
// running rank's log file go to the coordinator (AppendLog), at most chunk_bytes a call and
// within a per-rank budget (a token bucket: `rate` bytes a second, `burst` at once), so a rank
// that floods its log costs the coordinator bounded memory and the agent bounded time. Bytes
// past the budget are skipped (the oldest of what is new: the newest lines are what a reader
// wants); the gap in offsets tells the reader how many. When a rank exits, what is left goes at
// once, past the budget (up to final_bytes: its last lines say why it ended). Rank logs are only
// appended to; one that shrank (replaced) is read again from its start, and the coordinator takes
// of it only what lies past the end it holds.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "vsdm/v1/service.pb.h"

namespace vsdm::worker {

struct LogForwardOptions {
  int64_t chunk_bytes = 64 << 10;
  double rate = 64 << 10;  // bytes per second, per rank
  double burst = 512 << 10;
  int64_t final_bytes = 256 << 10;
};

// Where one rank's forwarding stands.
struct LogCursor {
  int64_t sent = 0;     // bytes of the file the coordinator has (or that were skipped)
  double tokens = -1;   // the budget left; < 0: not started (a full burst)
  absl::Time refilled;  // when `tokens` was last topped up
  bool done = false;    // the coordinator refused this rank's logs (its attempt is over): stop
};

// The next AppendLog of the file at `path` from `cursor` (worker_id and attempt_id, rank left
// for the caller to fill), or nullopt when nothing is new or the budget is spent. May move
// cursor.sent past bytes it skips. After the call succeeds, Commit(cursor, request).
// `final` (the rank has exited): no rate limit, at most final_bytes of what is left.
std::optional<v1::AppendLogRequest> NextLogChunk(const std::string& path, LogCursor& cursor, absl::Time now, bool final,
                                                 const LogForwardOptions& options = {});
void CommitLogChunk(LogCursor& cursor, const v1::AppendLogRequest& sent);

}  // namespace vsdm::worker
