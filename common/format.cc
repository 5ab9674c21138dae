#include "common/format.h"

#include <algorithm>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace vsdm {

std::string FormatDuration(double s) {
  if (!(s > 0)) s = 0;
  if (s < 60) return absl::StrFormat("%.0fs", s);
  const int n = static_cast<int>(s);
  if (s < 3600) return absl::StrFormat("%dm%02ds", n / 60, n % 60);
  return absl::StrFormat("%dh%02dm", n / 3600, (n % 3600) / 60);
}

std::string FormatBytes(double bytes) {
  if (!(bytes > 0)) bytes = 0;
  if (bytes < 1024) return absl::StrFormat("%.0f B", bytes);
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  size_t u = 0;
  double v = bytes / 1024;
  while (v >= 1024 && u + 1 < std::size(kUnits)) v /= 1024, ++u;
  return v < 10 ? absl::StrFormat("%.1f %s", v, kUnits[u]) : absl::StrFormat("%.0f %s", v, kUnits[u]);
}

namespace {

// The length of the valid UTF-8 sequence starting at s[i] (its code point in *cp), or 0 when the
// bytes there are not one (overlong forms and surrogates included).
size_t DecodeUtf8(std::string_view s, size_t i, uint32_t* cp) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  uint32_t v = c & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) {
    const unsigned char x = b(i + k);
    if (x < (k == 1 ? lo : 0x80) || x > (k == 1 ? hi : 0xBF)) return 0;
    v = (v << 6) | (x & 0x3F);
  }
  *cp = v;
  return n;
}

// C1 controls and the bidirectional embeddings, overrides and isolates.
bool IsUnsafeCodePoint(uint32_t cp) {
  return (cp >= 0x80 && cp <= 0x9F) || (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

// The escaped text of at most `max_bytes` bytes of `input`; *cut when some was left off.
std::string EscapeBody(std::string_view input, size_t max_bytes, bool* cut) {
  std::string out;
  size_t i = 0;
  while (i < input.size()) {
    uint32_t cp = 0;
    const size_t n = DecodeUtf8(input, i, &cp);
    if (i + std::max<size_t>(n, 1) > max_bytes) break;
    if (n == 0) {
      absl::StrAppend(&out, absl::StrFormat("\\x%02x", static_cast<unsigned char>(input[i])));
      i += 1;
      continue;
    }
    if (n == 1) {
      const char c = input[i];
      switch (c) {
        case '\\':
          out += "\\\\";
          break;
        case '"':
          out += "\\\"";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        default:
          if (cp < 0x20 || cp == 0x7F)
            absl::StrAppend(&out, absl::StrFormat("\\x%02x", cp));
          else
            out += c;
      }
    } else if (IsUnsafeCodePoint(cp)) {
      absl::StrAppend(&out, absl::StrFormat("\\u{%04X}", cp));
    } else {
      out.append(input.substr(i, n));
    }
    i += n;
  }
  *cut = i < input.size();
  return out;
}

}  // namespace

std::string EscapeInput(std::string_view input, size_t max_bytes) {
  bool cut = false;
  std::string out = EscapeBody(input, max_bytes, &cut);
  if (cut) absl::StrAppend(&out, "\u2026 (", input.size(), " bytes)");
  return out;
}

std::string QuoteInput(std::string_view input, size_t max_bytes) {
  bool cut = false;
  const std::string body = EscapeBody(input, max_bytes, &cut);
  if (!cut) return absl::StrCat("\"", body, "\"");
  return absl::StrCat("\"", body, "\u2026\" (", input.size(), " bytes)");
}

bool HasControlCharacters(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    uint32_t cp = 0;
    const size_t n = DecodeUtf8(text, i, &cp);
    if (n == 0 || cp < 0x20 || cp == 0x7F || IsUnsafeCodePoint(cp)) return true;
    i += n;
  }
  return false;
}

}  // namespace vsdm
