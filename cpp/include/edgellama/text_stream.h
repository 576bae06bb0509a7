// Generated token bytes -> text that is safe to show, once per generated token: UTF-8 assembly
// (a token may end inside a multi-byte character) then stop strings (a stop string may arrive
// spread over several tokens). Python's edgellama.streaming re-exports these through
// python/bind_text_stream.cpp; generation.py feeds one token's bytes per call.
//
// All text handed in and out is UTF-8. Lengths reported in "characters" are Unicode code points,
// the unit of Python str offsets (the OpenAI text_offset field).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace edgellama {

// Incremental UTF-8 decoder that never emits part of a character. Bytes that can no longer become
// a valid character become U+FFFD at once, one per maximal subpart (Unicode ch. 3, "U+FFFD
// substitution of maximal subparts"): the same text Python's bytes.decode("utf-8",
// errors="replace") gives for the whole input, however it is split.
class Utf8Assembler {
 public:
  // Appends the characters completed by `data` to out; returns how many code points it appended.
  size_t feed(std::string_view data, std::string& out);
  // End of input: a character left incomplete becomes one U+FFFD.
  size_t finish(std::string& out);
  // Bytes held back because they may still become a character (at most 3).
  const std::string& pending() const { return pending_; }

 private:
  // final: the input ends here (an unfinished character becomes U+FFFD instead of pending)
  size_t decode(std::string_view data, bool final, std::string& out);
  std::string pending_;
};

// Holds back any tail of the text that could still begin a stop string, so no part of a stop
// string is ever emitted; the text before the earliest complete stop string is.
class StopMatcher {
 public:
  // stops: UTF-8, non-empty (Python's normalize_stop drops empty and repeated ones).
  explicit StopMatcher(std::vector<std::string> stops);
  // text: whole UTF-8 characters. Appends what may be shown now to out; returns stopped().
  // Byte-wise search equals character-wise search here: a UTF-8 string can only match at a
  // character boundary of another, and held-back tails end at one.
  bool feed(std::string_view text, std::string& out);
  // Generation ended without completing a stop string: the held-back text is real output.
  void finish(std::string& out);
  bool stopped() const { return stopped_; }
  // Index in the stop list of the stop string that ended the text (none before).
  std::optional<size_t> matched() const { return matched_; }
  const std::string& held() const { return held_; }
  const std::vector<std::string>& stops() const { return stops_; }

 private:
  size_t partial_tail(std::string_view buf) const;
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
  std::optional<size_t> matched_;
};

// Utf8Assembler then StopMatcher, with the character counts generation needs to map tokens to
// text offsets: decoded() = emitted() + characters held back by the stop matcher.
class TextStream {
 public:
  explicit TextStream(std::vector<std::string> stops) : matcher_(std::move(stops)) {}
  void feed(std::string_view data, std::string& out);
  void finish(std::string& out);
  bool stopped() const { return matcher_.stopped(); }
  size_t decoded() const { return decoded_; }
  size_t emitted() const { return emitted_; }
  const Utf8Assembler& decoder() const { return decoder_; }
  const StopMatcher& matcher() const { return matcher_; }

 private:
  Utf8Assembler decoder_;
  StopMatcher matcher_;
  size_t decoded_ = 0, emitted_ = 0;
};

// Code points in valid UTF-8 (the bytes that are not continuation bytes).
size_t count_code_points(std::string_view utf8);

}  // namespace edgellama
