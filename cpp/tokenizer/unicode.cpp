#include "unicode.h"

#include <algorithm>
#include <array>

namespace edgellama::unicode {

namespace {

struct CategoryRange {
  uint32_t first;
  uint32_t last;
  uint8_t flags;
};

#include "unicode_tables.inc"

std::array<uint8_t, 128> make_ascii_flags() {
  std::array<uint8_t, 128> t{};
  for (const auto& r : kCategoryRanges) {
    if (r.first >= 128) break;
    for (uint32_t c = r.first; c <= r.last && c < 128; ++c) t[c] = r.flags;
  }
  return t;
}
const std::array<uint8_t, 128> kAsciiFlags = make_ascii_flags();

struct ByteMap {
  uint32_t to_cp[256];
  std::array<int16_t, 324> from_cp;  // every image is < 0x144
  ByteMap() {
    from_cp.fill(-1);
    // Printable Latin-1 bytes map to themselves; the remaining 68 bytes map, in byte order, to
    // U+0100, U+0101, ... (the GPT-2 bytes_to_unicode table).
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      to_cp[b] = printable ? uint32_t(b) : next++;
      from_cp[to_cp[b]] = int16_t(b);
    }
  }
};
const ByteMap kByteMap;

}  // namespace

uint8_t flags(uint32_t cp) {
  if (cp < 128) return kAsciiFlags[cp];
  const CategoryRange* end = kCategoryRanges + kCategoryRangeCount;
  const CategoryRange* it =
      std::upper_bound(kCategoryRanges, end, cp, [](uint32_t c, const CategoryRange& r) { return c < r.first; });
  if (it == kCategoryRanges) return 0;
  --it;
  return cp <= it->last ? it->flags : 0;
}

size_t decode_one(std::string_view s, size_t i, uint32_t* cp) {
  const size_t n = s.size();
  const uint8_t c0 = uint8_t(s[i]);
  if (c0 < 0x80) {
    *cp = c0;
    return 1;
  }
  size_t len;
  uint32_t v, min;
  if ((c0 & 0xE0) == 0xC0) {
    len = 2, v = c0 & 0x1F, min = 0x80;
  } else if ((c0 & 0xF0) == 0xE0) {
    len = 3, v = c0 & 0x0F, min = 0x800;
  } else if ((c0 & 0xF8) == 0xF0) {
    len = 4, v = c0 & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (n - i < len) return 0;
  for (size_t k = 1; k < len; ++k) {
    const uint8_t c = uint8_t(s[i + k]);
    if ((c & 0xC0) != 0x80) return 0;
    v = (v << 6) | (c & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *cp = v;
  return len;
}

size_t find_invalid_utf8(std::string_view s) {
  size_t i = 0;
  uint32_t cp;
  while (i < s.size()) {
    if (uint8_t(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const size_t len = decode_one(s, i, &cp);
    if (len == 0) return i;
    i += len;
  }
  return std::string_view::npos;
}

void decode(std::string_view s, std::vector<uint32_t>& cps, std::vector<uint32_t>& offsets) {
  cps.clear();
  offsets.clear();
  cps.reserve(s.size());
  offsets.reserve(s.size() + 1);
  size_t i = 0;
  while (i < s.size()) {
    uint32_t cp = 0xFFFD;
    size_t len = decode_one(s, i, &cp);
    if (len == 0) len = 1;  // not reached for validated input; keeps progress guaranteed
    cps.push_back(cp);
    offsets.push_back(uint32_t(i));
    i += len;
  }
  offsets.push_back(uint32_t(s.size()));
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

uint32_t byte_to_cp(uint8_t b) { return kByteMap.to_cp[b]; }

int cp_to_byte(uint32_t cp) { return cp < kByteMap.from_cp.size() ? kByteMap.from_cp[cp] : -1; }

}  // namespace edgellama::unicode
