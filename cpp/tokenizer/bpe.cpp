// Byte-level BPE (tokenizer.ggml.model = "gpt2"), equal to Hugging Face tokenizers' BPE model
// after ByteLevel: each pre-token's bytes start as one symbol each (the token of the byte's GPT-2
// code point); the adjacent pair with the lowest merge rank is merged first (ties: leftmost).
#include <queue>

#include "edgellama/vocab.h"
#include "pretokenize.h"
#include "unicode.h"

namespace edgellama {

namespace {

struct BpeSymbol {
  int32_t id;  // -1: the byte has no token (dropped, like HF without an unk token)
  int32_t prev;
  int32_t next;
  bool alive;
};

struct BpeBigram {
  uint32_t rank;
  int32_t left;
  int32_t right;
  int32_t left_id;
  int32_t right_id;
  int32_t merged;
};

struct BpeBigramGreater {
  bool operator()(const BpeBigram& a, const BpeBigram& b) const {
    // std::priority_queue pops the greatest: make that the lowest rank, then leftmost
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

}  // namespace

void Vocab::bpe_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    std::string mapped;
    mapped.reserve(word.size() * 2);
    for (char c : word) unicode::append_utf8(mapped, unicode::byte_to_cp(uint8_t(c)));
    const int32_t id = index_.find(mapped);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  if (word.size() == 1) {
    const int32_t id = byte_token_[uint8_t(word[0])];
    if (id >= 0) out.push_back(id);
    return;
  }
  std::vector<BpeSymbol> sym(word.size());
  for (size_t i = 0; i < word.size(); ++i)
    sym[i] = {byte_token_[uint8_t(word[i])], int32_t(i) - 1, i + 1 < word.size() ? int32_t(i + 1) : -1, true};

  std::priority_queue<BpeBigram, std::vector<BpeBigram>, BpeBigramGreater> queue;
  auto try_add = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const int32_t a = sym[size_t(l)].id, b = sym[size_t(r)].id;
    if (a < 0 || b < 0) return;
    uint32_t rank;
    int32_t merged;
    if (!merges_.find(a, b, &rank, &merged)) return;
    queue.push({rank, l, r, a, b, merged});
  };
  for (size_t i = 0; i + 1 < sym.size(); ++i) try_add(int32_t(i), int32_t(i + 1));

  while (!queue.empty()) {
    const BpeBigram bg = queue.top();
    queue.pop();
    BpeSymbol& l = sym[size_t(bg.left)];
    BpeSymbol& r = sym[size_t(bg.right)];
    if (!l.alive || !r.alive || l.next != bg.right || l.id != bg.left_id || r.id != bg.right_id) continue;
    l.id = bg.merged;
    r.alive = false;
    l.next = r.next;
    if (r.next >= 0) sym[size_t(r.next)].prev = bg.left;
    try_add(l.prev, bg.left);
    try_add(bg.left, l.next);
  }
  for (int32_t i = 0; i >= 0; i = sym[size_t(i)].next)
    if (sym[size_t(i)].id >= 0) out.push_back(sym[size_t(i)].id);
}

void Vocab::tokenize_bpe(std::string_view text, std::vector<int32_t>& out) const {
  std::vector<std::pair<uint32_t, uint32_t>> pieces;
  pretokenize(pre_, text, pieces);
  for (const auto& [b, e] : pieces) bpe_word(text.substr(b, e - b), out);
}

}  // namespace edgellama
