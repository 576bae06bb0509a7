#include "pretokenize.h"

#include "unicode.h"

namespace edgellama {

namespace {

using Range = std::pair<uint32_t, uint32_t>;

struct Text {
  std::vector<uint32_t> cps;
  std::vector<uint8_t> fl;
  std::vector<uint32_t> offsets;

  bool is_l(size_t i) const { return fl[i] & unicode::kLetter; }
  bool is_n(size_t i) const { return fl[i] & unicode::kNumber; }
  bool is_s(size_t i) const { return fl[i] & unicode::kSpace; }
  // [^\s\p{L}\p{N}]
  bool is_other(size_t i) const { return (fl[i] & (unicode::kLetter | unicode::kNumber | unicode::kSpace)) == 0; }
  bool is_crlf(size_t i) const { return cps[i] == '\r' || cps[i] == '\n'; }
};

// A matcher returns the length (in code points) of the match starting at pos, or 0 for none.
using Matcher = size_t (*)(const Text&, size_t pos, size_t end);

uint32_t ascii_lower(uint32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

// 's|'t|'re|'ve|'m|'ll|'d, case-sensitive or (ASCII) case-insensitive.
size_t match_contraction(const Text& t, size_t pos, size_t end, bool icase) {
  if (t.cps[pos] != '\'' || pos + 1 >= end) return 0;
  auto low = [&](size_t i) { return icase ? ascii_lower(t.cps[i]) : t.cps[i]; };
  const uint32_t a = low(pos + 1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (pos + 2 >= end) return 0;
  const uint32_t b = low(pos + 2);
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

// \s+(?!\S)|\s+ at a whitespace code point.
size_t match_space_run(const Text& t, size_t pos, size_t end) {
  size_t q = pos;
  while (q < end && t.is_s(q)) ++q;
  if (q == end || q - pos == 1) return q - pos;
  return q - pos - 1;  // leave the last space to prefix the following non-space
}

// ' ?X+' for a class predicate X.
template <typename Pred>
size_t match_opt_space_run(const Text& t, size_t pos, size_t end, Pred x) {
  size_t start;
  if (t.cps[pos] == ' ' && pos + 1 < end && x(pos + 1)) {
    start = pos + 1;
  } else if (x(pos)) {
    start = pos;
  } else {
    return 0;
  }
  size_t q = start;
  while (q < end && x(q)) ++q;
  return q - pos;
}

size_t match_gpt2(const Text& t, size_t pos, size_t end) {
  if (size_t n = match_contraction(t, pos, end, false)) return n;
  if (size_t n = match_opt_space_run(t, pos, end, [&](size_t i) { return t.is_l(i); })) return n;
  if (size_t n = match_opt_space_run(t, pos, end, [&](size_t i) { return t.is_n(i); })) return n;
  if (size_t n = match_opt_space_run(t, pos, end, [&](size_t i) { return t.is_other(i); })) return n;
  if (t.is_s(pos)) return match_space_run(t, pos, end);
  return 0;
}

template <size_t kMaxDigits>
size_t match_llama3(const Text& t, size_t pos, size_t end) {
  if (size_t n = match_contraction(t, pos, end, true)) return n;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  {
    size_t start = pos;
    if (!t.is_l(pos) && !t.is_n(pos) && !t.is_crlf(pos) && pos + 1 < end && t.is_l(pos + 1)) start = pos + 1;
    if (t.is_l(start)) {
      size_t q = start;
      while (q < end && t.is_l(q)) ++q;
      return q - pos;
    }
  }
  // \p{N}{1,k}
  if (t.is_n(pos)) {
    size_t q = pos;
    while (q < end && q - pos < kMaxDigits && t.is_n(q)) ++q;
    return q - pos;
  }
  // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
  if (size_t n = match_opt_space_run(t, pos, end, [&](size_t i) { return t.is_other(i); })) {
    size_t q = pos + n;
    while (q < end && t.is_crlf(q)) ++q;
    return q - pos;
  }
  if (t.is_s(pos)) {
    // \s*[\r\n]+ : the longest whitespace prefix ending in CR or LF
    size_t q = pos;
    size_t last_nl = SIZE_MAX;
    while (q < end && t.is_s(q)) {
      if (t.is_crlf(q)) last_nl = q;
      ++q;
    }
    if (last_nl != SIZE_MAX) return last_nl + 1 - pos;
    return match_space_run(t, pos, end);
  }
  return 0;
}

// \p{N}
size_t match_one_number(const Text& t, size_t pos, size_t) { return t.is_n(pos) ? 1 : 0; }

// \p{N}+
size_t match_number_run(const Text& t, size_t pos, size_t end) {
  size_t q = pos;
  while (q < end && t.is_n(q)) ++q;
  return q - pos;
}

// [\p{P}\$\+<=>\^~\|]+
size_t match_punct_run(const Text& t, size_t pos, size_t end) {
  auto p = [&](size_t i) {
    const uint32_t c = t.cps[i];
    return (t.fl[i] & unicode::kPunct) || c == '$' || c == '+' || c == '<' || c == '=' || c == '>' ||
           c == '^' || c == '~' || c == '|';
  };
  size_t q = pos;
  while (q < end && p(q)) ++q;
  return q - pos;
}

// [0-9][0-9][0-9]
size_t match_three_digits(const Text& t, size_t pos, size_t end) {
  if (end - pos < 3) return 0;
  for (size_t i = pos; i < pos + 3; ++i)
    if (t.cps[i] < '0' || t.cps[i] > '9') return 0;
  return 3;
}

// One regex stage with "isolated" behaviour: matches and the gaps between them both become pieces.
void split_stage(const Text& t, const std::vector<Range>& in, Matcher m, std::vector<Range>& out) {
  out.clear();
  for (const auto& [b, e] : in) {
    size_t gap = b, pos = b;
    while (pos < e) {
      const size_t n = m(t, pos, e);
      if (n == 0) {
        ++pos;
        continue;
      }
      if (gap < pos) out.emplace_back(uint32_t(gap), uint32_t(pos));
      out.emplace_back(uint32_t(pos), uint32_t(pos + n));
      pos += n;
      gap = pos;
    }
    if (gap < e) out.emplace_back(uint32_t(gap), uint32_t(e));
  }
}

}  // namespace

bool pre_tokenizer_from_name(std::string_view name, PreTokenizer* out, bool* ignore_merges) {
  *ignore_merges = false;
  if (name == "default") {
    *out = PreTokenizer::Default;
  } else if (name == "gpt2" || name == "gpt-2" || name == "mpt" || name == "olmo") {
    *out = PreTokenizer::GPT2;
  } else if (name == "llama-bpe" || name == "llama3" || name == "llama-v3" || name == "falcon3") {
    *out = PreTokenizer::Llama3;
    *ignore_merges = true;  // Llama 3's tokenizer.json sets "ignore_merges": true
  } else if (name == "dbrx" || name == "smaug-bpe") {
    *out = PreTokenizer::Llama3;
  } else if (name == "qwen2" || name == "stablelm2" || name == "deepseek-r1-qwen") {
    *out = PreTokenizer::Qwen2;
  } else if (name == "smollm" || name == "starcoder" || name == "refact" || name == "command-r" ||
             name == "codeshell") {
    *out = PreTokenizer::SmolLM;
  } else {
    return false;
  }
  return true;
}

void pretokenize(PreTokenizer type, std::string_view text, std::vector<std::pair<uint32_t, uint32_t>>& out) {
  if (text.empty()) return;
  thread_local Text t;
  unicode::decode(text, t.cps, t.offsets);
  const size_t n = t.cps.size();
  t.fl.resize(n);
  for (size_t i = 0; i < n; ++i) t.fl[i] = unicode::flags(t.cps[i]);

  std::vector<Range> a{{0u, uint32_t(n)}}, b;
  auto stage = [&](Matcher m) {
    split_stage(t, a, m, b);
    a.swap(b);
  };
  switch (type) {
    case PreTokenizer::Default:
      stage(match_punct_run);
      stage(match_gpt2);
      stage(match_number_run);
      stage(match_three_digits);
      break;
    case PreTokenizer::GPT2: stage(match_gpt2); break;
    case PreTokenizer::Llama3: stage(match_llama3<3>); break;
    case PreTokenizer::Qwen2: stage(match_llama3<1>); break;
    case PreTokenizer::SmolLM:
      stage(match_one_number);
      stage(match_gpt2);
      break;
  }
  for (const auto& [cb, ce] : a) out.emplace_back(t.offsets[cb], t.offsets[ce]);
}

}  // namespace edgellama
