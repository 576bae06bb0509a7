// Tokenizer vocabulary built from a GGUF file's tokenizer.ggml.* keys, with the two tokenizers
// LLaMA-family models use:
//   "llama": SentencePiece BPE (score-driven merging, U+2581 for spaces, byte fallback), equal to
//            the sentencepiece library;
//   "gpt2":  byte-level BPE (GPT-2 byte mapping, merges by rank) after a pre-tokenizer chosen by
//            tokenizer.ggml.pre, equal to Hugging Face tokenizers.
// A Vocab copies what it needs out of the GGUFFile, so it does not keep the file alive. It is
// immutable after construction, so one Vocab may be used from several threads at once.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace edgellama {

class GGUFFile;
enum class PreTokenizer;

// llama.cpp's token types (tokenizer.ggml.token_type values).
enum class TokenType : int32_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
};

enum class VocabModel { SPM, BPE };

namespace detail {

// Strings packed in one buffer: no allocation per token.
class StringArena {
 public:
  void reserve(size_t n, size_t bytes) { offsets_.reserve(n + 1); data_.reserve(bytes); }
  void push_back(std::string_view s) { data_.append(s); offsets_.push_back(uint32_t(data_.size())); }
  std::string_view operator[](size_t i) const {
    return std::string_view(data_).substr(offsets_[i], offsets_[i + 1] - offsets_[i]);
  }
  size_t size() const { return offsets_.size() - 1; }

 private:
  std::string data_;
  std::vector<uint32_t> offsets_{0};
};

// Open-addressing text -> id table over an arena's strings (the first id wins on duplicates).
class TokenIndex {
 public:
  void build(const StringArena& texts);
  // Id of the token whose text is a + b (b may be empty), or -1.
  int32_t find(std::string_view a, std::string_view b = {}) const;

 private:
  struct Slot {
    int32_t id;    // -1: empty
    uint32_t tag;  // high hash bits, to skip most string compares
  };
  const StringArena* texts_ = nullptr;
  std::vector<Slot> slots_;
  size_t mask_ = 0;
};

// Open-addressing (left id, right id) -> (rank, merged id) table.
class MergeTable {
 public:
  void reserve(size_t n);
  bool insert(int32_t left, int32_t right, uint32_t rank, int32_t merged);  // false: pair already present
  // true when the pair merges; sets rank and merged id
  bool find(int32_t left, int32_t right, uint32_t* rank, int32_t* merged) const {
    if (slots_.empty()) return false;
    const uint64_t key = (uint64_t(uint32_t(left)) << 32) | uint32_t(right);
    for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
      const Slot& sl = slots_[i];
      if (sl.key == key) {
        *rank = sl.rank;
        *merged = sl.merged;
        return true;
      }
      if (sl.key == kEmpty) return false;
    }
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t(0);
  static size_t hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return size_t(k);
  }
  struct Slot {
    uint64_t key;  // left << 32 | right; kEmpty when free
    uint32_t rank;
    int32_t merged;
  };
  std::vector<Slot> slots_;
  size_t mask_ = 0, size_ = 0;
};

}  // namespace detail

class Vocab {
 public:
  // Reads and validates tokenizer.ggml.{model, tokens, scores, token_type, merges, pre,
  // bos/eos/eot/unknown/padding_token_id, add_bos_token, add_eos_token, add_space_prefix}.
  // Throws FormatError for malformed data (wrong types, lengths, ids out of range, merges naming
  // unknown tokens) and UnsupportedError for an unknown model or pre-tokenizer.
  static std::shared_ptr<Vocab> from_gguf(const GGUFFile& file);

  Vocab(const Vocab&) = delete;
  Vocab& operator=(const Vocab&) = delete;

  // Text (UTF-8; invalid UTF-8 -> ArgumentError) to token ids. add_special adds BOS / EOS as
  // add_bos() / add_eos() say. parse_special recognises control tokens (and <unk>) written in the
  // text; user-defined tokens are always recognised, as in llama.cpp, sentencepiece and HF.
  std::vector<int32_t> tokenize(std::string_view text, bool add_special, bool parse_special) const;

  // Raw bytes of one token (may be part of a UTF-8 character). Control / unknown tokens render as
  // "" unless special is true. Out-of-range id -> ArgumentError.
  std::string token_to_piece(int32_t id, bool special = false) const;

  // Concatenated pieces; for SentencePiece vocabularies with add_space_prefix the one leading
  // space of the first text piece is removed (sentencepiece decode).
  std::string detokenize(const int32_t* ids, size_t n, bool special = false) const;
  std::string detokenize(const std::vector<int32_t>& ids, bool special = false) const {
    return detokenize(ids.data(), ids.size(), special);
  }
  // The bytes `ids` add after `prev` (one generated token's text in context: a leading space
  // that detokenize strips from a text's first piece is kept): detokenize(prev + ids) minus
  // detokenize(prev) when the latter is a prefix of it, else detokenize(ids).
  std::string detokenize_after(const int32_t* prev, size_t n_prev, const int32_t* ids, size_t n,
                               bool special = false) const;

  int32_t n_tokens() const { return int32_t(type_.size()); }
  int32_t bos() const { return bos_; }  // -1 when the vocabulary has none
  int32_t eos() const { return eos_; }
  int32_t eot() const { return eot_; }
  int32_t unk() const { return unk_; }
  int32_t pad() const { return pad_; }
  bool is_eog(int32_t id) const;  // end of generation: eos, eot, <|im_end|>, <|eot_id|>, ...
  const std::vector<int32_t>& eog_ids() const { return eog_; }

  std::string_view token_text(int32_t id) const;
  float token_score(int32_t id) const;
  TokenType token_type(int32_t id) const;
  int32_t token_id(std::string_view text) const;  // -1 when no token has this text

  VocabModel model() const { return model_; }
  const std::string& model_name() const { return model_name_; }
  const std::string& pre_name() const { return pre_name_; }  // "" for SentencePiece
  bool add_bos() const { return add_bos_; }
  bool add_eos() const { return add_eos_; }
  bool add_space_prefix() const { return add_space_prefix_; }
  size_t n_merges() const { return merges_.size(); }

 private:
  Vocab() = default;
  void check_id(int32_t id) const;
  void build_special_matcher();
  void tokenize_spm(std::string_view text, std::vector<int32_t>& out) const;
  void tokenize_bpe(std::string_view text, std::vector<int32_t>& out) const;
  void bpe_word(std::string_view word, std::vector<int32_t>& out) const;

  VocabModel model_ = VocabModel::SPM;
  std::string model_name_, pre_name_;
  PreTokenizer pre_{};
  bool ignore_merges_ = false;

  detail::StringArena text_;
  std::vector<float> score_;
  std::vector<TokenType> type_;
  detail::StringArena piece_;  // rendered bytes (control / unknown: their text, used when special)
  detail::TokenIndex index_;
  detail::MergeTable merges_;  // BPE
  int32_t byte_token_[256];  // BPE: token of the mapped code point; SPM: <0xXX> token; -1 if none

  int32_t bos_ = -1, eos_ = -1, eot_ = -1, unk_ = -1, pad_ = -1;
  bool add_bos_ = false, add_eos_ = false, add_space_prefix_ = false;
  std::vector<int32_t> eog_;

  // Special tokens matched in text: by first byte, candidates sorted longest first.
  struct SpecialToken {
    std::string_view text;
    int32_t id;
    bool always;  // user-defined: recognised without parse_special
  };
  std::vector<SpecialToken> special_by_byte_[256];
};

}  // namespace edgellama
