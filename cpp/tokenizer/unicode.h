// Unicode helpers for the tokenizers: strict UTF-8 decoding, code point classes (from the generated
// range tables) and the GPT-2 byte <-> printable code point mapping used by byte-level BPE.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace edgellama::unicode {

enum : uint8_t { kLetter = 1, kNumber = 2, kPunct = 4, kSpace = 8 };

// Class bits of a code point (kLetter | kNumber | kPunct | kSpace), 0 for none.
uint8_t flags(uint32_t cp);

// Length of the valid UTF-8 sequence at s[i..], or 0 when it is not valid UTF-8 (overlong forms,
// surrogates, > U+10FFFF, truncated). *cp receives the code point.
size_t decode_one(std::string_view s, size_t i, uint32_t* cp);

// Byte offset of the first invalid sequence, or std::string_view::npos when s is valid UTF-8.
size_t find_invalid_utf8(std::string_view s);

// Decodes valid UTF-8 (the caller validated it) into code points; offsets gets the byte offset of
// every code point plus a final s.size().
void decode(std::string_view s, std::vector<uint32_t>& cps, std::vector<uint32_t>& offsets);

void append_utf8(std::string& out, uint32_t cp);

// GPT-2 byte-level mapping: byte -> printable code point, and back (-1 when cp is not an image).
uint32_t byte_to_cp(uint8_t b);
int cp_to_byte(uint32_t cp);

}  // namespace edgellama::unicode
