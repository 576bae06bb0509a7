// Utf8Assembler / StopMatcher / TextStream (see edgellama/text_stream.h).
#include "edgellama/text_stream.h"

#include <algorithm>
#include <cstdint>

#include "edgellama/errors.h"

namespace edgellama {

namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// The sequence a lead byte starts: its length and the allowed range of its second byte (the
// narrowed ranges exclude overlong forms, UTF-16 surrogates and code points above U+10FFFF).
// len 0: the byte cannot start a character.
struct Lead {
  int len;
  uint8_t lo, hi;
};

Lead lead_of(uint8_t b) {
  if (b >= 0xC2 && b <= 0xDF) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b >= 0xE1 && b <= 0xEF) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

}  // namespace

size_t count_code_points(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

size_t Utf8Assembler::feed(std::string_view data, std::string& out) { return decode(data, false, out); }

size_t Utf8Assembler::finish(std::string& out) { return decode({}, true, out); }

size_t Utf8Assembler::decode(std::string_view data, bool final, std::string& out) {
  std::string buf;
  std::string_view in = data;
  if (!pending_.empty()) {
    buf = pending_ + std::string(data);
    in = buf;
    pending_.clear();
  }
  size_t chars = 0;
  const size_t n = in.size();
  size_t i = 0;
  while (i < n) {
    const uint8_t b = uint8_t(in[i]);
    if (b < 0x80) {  // ASCII: copy the run at once
      size_t j = i + 1;
      while (j < n && uint8_t(in[j]) < 0x80) ++j;
      out.append(in.substr(i, j - i));
      chars += j - i;
      i = j;
      continue;
    }
    const Lead lead = lead_of(b);
    if (lead.len == 0) {  // stray continuation byte or a byte that never starts a character
      out += kReplacement;
      ++chars;
      ++i;
      continue;
    }
    int k = 1;
    bool broken = false;
    for (; k < lead.len; ++k) {
      if (i + size_t(k) >= n) break;  // incomplete: wait for more bytes
      const uint8_t c = uint8_t(in[i + size_t(k)]);
      const uint8_t lo = k == 1 ? lead.lo : 0x80, hi = k == 1 ? lead.hi : 0xBF;
      if (c < lo || c > hi) {
        broken = true;
        break;
      }
    }
    if (broken && !final && k == 1 && b == 0xED && i + 2 == n && uint8_t(in[i + 1]) >= 0xA0 &&
        uint8_t(in[i + 1]) <= 0xBF) {
      // ED A0..BF (half of a UTF-16 surrogate's encoding) at the end of the data: CPython's
      // incremental decoder holds it back rather than replacing it now (for its surrogatepass
      // handler); do the same so chunks split exactly as Python's codec splits them. The final
      // text is the same either way.
      pending_.assign(in.substr(i));
      break;
    }
    if (broken) {  // the valid prefix is one maximal subpart; the offending byte starts afresh
      out += kReplacement;
      ++chars;
      i += size_t(k);
      continue;
    }
    if (k < lead.len) {  // the data ends inside a character
      if (final) {  // a valid but unfinished prefix: one maximal subpart
        out += kReplacement;
        ++chars;
      } else {
        pending_.assign(in.substr(i));
      }
      break;
    }
    out.append(in.substr(i, size_t(lead.len)));
    ++chars;
    i += size_t(lead.len);
  }
  return chars;
}

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  for (const std::string& s : stops_) {
    if (s.empty()) throw ArgumentError("stop strings must not be empty");
  }
}

size_t StopMatcher::partial_tail(std::string_view buf) const {
  size_t best = 0;
  for (const std::string& s : stops_) {
    for (size_t k = std::min(s.size() - 1, buf.size()); k > best; --k) {
      if (buf.substr(buf.size() - k) == std::string_view(s).substr(0, k)) {
        best = k;
        break;
      }
    }
  }
  return best;
}

bool StopMatcher::feed(std::string_view text, std::string& out) {
  if (stopped_) return true;
  if (stops_.empty()) {
    out.append(text);
    return false;
  }
  std::string buf = held_;
  buf.append(text);
  // The earliest complete stop string (the first listed on a tie). It starts inside the held
  // part or later: the held part is the longest tail that could begin one.
  size_t best = std::string::npos;
  for (size_t s = 0; s < stops_.size(); ++s) {
    const size_t at = buf.find(stops_[s]);
    if (at != std::string::npos && (best == std::string::npos || at < best)) {
      best = at;
      matched_ = s;
    }
  }
  if (best != std::string::npos) {
    held_.clear();
    stopped_ = true;
    out.append(buf, 0, best);
    return true;
  }
  const size_t keep = partial_tail(buf);
  out.append(buf, 0, buf.size() - keep);
  held_.assign(buf, buf.size() - keep, keep);
  return false;
}

void StopMatcher::finish(std::string& out) {
  if (!stopped_) out += held_;
  held_.clear();
}

void TextStream::feed(std::string_view data, std::string& out) {
  std::string text;
  decoded_ += decoder_.feed(data, text);
  const size_t before = out.size();
  matcher_.feed(text, out);
  emitted_ += count_code_points(std::string_view(out).substr(before));
}

void TextStream::finish(std::string& out) {
  std::string tail;
  decoded_ += decoder_.finish(tail);
  const size_t before = out.size();
  matcher_.feed(tail, out);
  matcher_.finish(out);
  emitted_ += count_code_points(std::string_view(out).substr(before));
}

}  // namespace edgellama
