// Human-readable figures shared by the CLI and the training runtime, and the one way a message
// quotes what a caller sent (bounded, with control characters escaped).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace vsdm {

// "42s", "3m05s", "1h02m" (negative counts as 0).
std::string FormatDuration(double seconds);

// "512 B", "3.0 KiB", "16 GiB", "8.0 TiB": binary units, two significant digits below 10.
std::string FormatBytes(double bytes);

// How many bytes of caller input a message shows (see EscapeInput).
inline constexpr size_t kQuotedInputBytes = 64;

// Caller input made safe to put in a message, log line or terminal: at most `max_bytes` bytes of
// `input` (cut at a UTF-8 character boundary), with '\\' and '"' backslash-escaped, \n \r \t as
// such, other C0 controls, DEL and bytes that are not valid UTF-8 as \xNN, and the C1 controls
// and bidirectional overrides (U+0080..U+009F, U+202A..U+202E, U+2066..U+2069) as \u{XXXX}.
// When cut, "… (N bytes)" follows, N the whole input's size. The result is at most about
// 4 * max_bytes + 24 bytes, whatever the input.
std::string EscapeInput(std::string_view input, size_t max_bytes = kQuotedInputBytes);
// EscapeInput in double quotes: "abc", "a\x1b[2Jb", "aaaa…" (4194304 bytes). Every message that
// quotes what a caller sent (a spec value, a job id, a path) goes through this.
std::string QuoteInput(std::string_view input, size_t max_bytes = kQuotedInputBytes);

// Whether `text` holds a control character: a C0 control (including \t and \n), DEL, a C1
// control or a bidirectional override as EscapeInput lists them, or a byte sequence that is not
// valid UTF-8. Free-text fields (names, owners, paths) refuse such text.
bool HasControlCharacters(std::string_view text);

}  // namespace vsdm
