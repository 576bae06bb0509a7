// SentencePiece BPE (tokenizer.ggml.model = "llama"), equal to sentencepiece's bpe_model Encode:
// the text (spaces escaped to U+2581) starts as one symbol per character; the adjacent pair whose
// concatenation is the highest-scoring piece is merged first (ties: leftmost), until no pair forms
// a piece. Final symbols that are not pieces fall back to <0xXX> byte tokens, else <unk>.
#include <queue>
#include <unordered_map>

#include "edgellama/vocab.h"
#include "unicode.h"

namespace edgellama {

namespace {

struct SpmSymbol {
  uint32_t start;
  uint32_t len;  // 0 once merged into its left neighbour
  int32_t prev;
  int32_t next;
};

struct SpmBigram {
  float score;
  int32_t left;
  int32_t right;
  uint32_t size;
};

struct SpmBigramLess {
  bool operator()(const SpmBigram& a, const SpmBigram& b) const {
    // std::priority_queue pops the greatest: highest score, then leftmost
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

// Pieces a merge may produce and that the tokenizer emits directly (sentencepiece's pieces_).
bool is_mergeable(TokenType t) {
  return t == TokenType::Normal || t == TokenType::UserDefined || t == TokenType::Unused;
}

}  // namespace

void Vocab::tokenize_spm(std::string_view raw, std::vector<int32_t>& out) const {
  std::string s;
  s.reserve(raw.size() + raw.size() / 2);
  for (char c : raw) {
    if (c == ' ') {
      s += "\xE2\x96\x81";
    } else {
      s.push_back(c);
    }
  }
  if (s.empty()) return;

  std::vector<SpmSymbol> sym;
  sym.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    uint32_t cp;
    size_t len = unicode::decode_one(s, i, &cp);
    if (len == 0) len = 1;
    const int32_t idx = int32_t(sym.size());
    sym.push_back({uint32_t(i), uint32_t(len), idx - 1, -1});
    i += len;
  }
  for (size_t i = 0; i + 1 < sym.size(); ++i) sym[i].next = int32_t(i + 1);

  std::priority_queue<SpmBigram, std::vector<SpmBigram>, SpmBigramLess> queue;
  auto try_add = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const uint32_t size = sym[size_t(l)].len + sym[size_t(r)].len;
    const int32_t id = index_.find(std::string_view(s).substr(sym[size_t(l)].start, size));
    if (id < 0 || !is_mergeable(type_[size_t(id)])) return;
    queue.push({score_[size_t(id)], l, r, size});
  };
  for (size_t i = 0; i + 1 < sym.size(); ++i) try_add(int32_t(i), int32_t(i + 1));

  // Unused pieces can be merge results but are not emitted: remember how they were formed.
  std::unordered_map<uint64_t, uint32_t> unused_split;  // (start << 32 | len) -> left length

  while (!queue.empty()) {
    const SpmBigram bg = queue.top();
    queue.pop();
    SpmSymbol& l = sym[size_t(bg.left)];
    SpmSymbol& r = sym[size_t(bg.right)];
    if (l.len == 0 || r.len == 0 || l.len + r.len != bg.size) continue;  // stale
    const uint32_t left_len = l.len;
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) sym[size_t(r.next)].prev = bg.left;
    const int32_t id = index_.find(std::string_view(s).substr(l.start, l.len));
    if (type_[size_t(id)] == TokenType::Unused)
      unused_split.emplace((uint64_t(l.start) << 32) | l.len, left_len);
    try_add(l.prev, bg.left);
    try_add(bg.left, l.next);
  }

  // Emit, splitting unused pieces back into their halves and unknown characters into bytes.
  auto emit = [&](auto&& self, uint32_t start, uint32_t len) -> void {
    const std::string_view w = std::string_view(s).substr(start, len);
    const int32_t id = index_.find(w);
    if (id >= 0) {
      const TokenType t = type_[size_t(id)];
      if (t == TokenType::Normal || t == TokenType::UserDefined) {
        out.push_back(id);
        return;
      }
      if (t == TokenType::Unused) {
        auto sp = unused_split.find((uint64_t(start) << 32) | len);
        if (sp != unused_split.end()) {
          self(self, start, sp->second);
          self(self, start + sp->second, len - sp->second);
          return;
        }
      }
    }
    for (char c : w) {
      const int32_t b = byte_token_[uint8_t(c)];
      if (b >= 0) {
        out.push_back(b);
      } else if (unk_ >= 0) {
        out.push_back(unk_);
      }
    }
  };
  for (int32_t i = 0; i >= 0 && i < int32_t(sym.size()); i = sym[size_t(i)].next) {
    if (sym[size_t(i)].len) emit(emit, sym[size_t(i)].start, sym[size_t(i)].len);
  }
}

}  // namespace edgellama
