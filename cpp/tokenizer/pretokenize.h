// Byte-level BPE pre-tokenizers: split text into the pieces BPE merges within. Each one is a
// hand-written matcher for the regex (or regex sequence) the reference tokenizer uses, with
// leftmost-first alternation exactly like Oniguruma / PCRE, over the Unicode class tables.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace edgellama {

enum class PreTokenizer {
  // llama.cpp's fallback sequence: [\p{P}$+<=>^~|]+ | gpt-2 regex | \p{N}+ | [0-9]{3}
  Default,
  // GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  GPT2,
  // Llama 3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
  //          ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  Llama3,
  // Qwen2: the Llama 3 regex with \p{N} (one digit per piece)
  Qwen2,
  // SmolLM / StarCoder: every \p{N} isolated, then the GPT-2 regex on the stretches between
  SmolLM,
};

// Maps a tokenizer.ggml.pre value to its pre-tokenizer; false when unknown.
bool pre_tokenizer_from_name(std::string_view name, PreTokenizer* out, bool* ignore_merges);

// Splits valid UTF-8 `text` into pieces, appended to `out` as [begin, end) byte offsets that
// cover the text in order.
void pretokenize(PreTokenizer type, std::string_view text, std::vector<std::pair<uint32_t, uint32_t>>& out);

}  // namespace edgellama
