// Vocab: loading and validation of the GGUF tokenizer keys, special-token partitioning, pieces and
// detokenization. The two tokenizers themselves are in spm.cpp and bpe.cpp.
#include "edgellama/vocab.h"

#include <algorithm>
#include <cstdio>

#include "edgellama/errors.h"
#include "edgellama/gguf.h"
#include "pretokenize.h"
#include "unicode.h"

namespace edgellama {

namespace {

const char* kSpaceMark = "\xE2\x96\x81";  // U+2581, SentencePiece's space

std::string printable(std::string_view s, size_t max_len = 40) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max_len; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", c);
      out += buf;
    } else {
      out.push_back(char(c));
    }
  }
  if (s.size() > max_len) out += "...";
  return out;
}

std::string type_desc(const GGUFValue& v) {
  std::string t = gguf_type_name(v.type);
  if (v.is_array()) t += std::string("[") + gguf_type_name(v.array_type) + "]";
  return t;
}

// Parses "<0xXX>"; -1 when the text is not of that form.
int parse_byte_token(std::string_view s) {
  if (s.size() != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return -1;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(s[3]), lo = hex(s[4]);
  return (hi < 0 || lo < 0) ? -1 : hi * 16 + lo;
}

uint64_t fnv1a(uint64_t h, std::string_view s) {
  for (char c : s) h = (h ^ uint8_t(c)) * 0x100000001b3ULL;
  return h;
}
constexpr uint64_t kFnvBasis = 0xcbf29ce484222325ULL;

}  // namespace

namespace detail {

void TokenIndex::build(const StringArena& texts) {
  texts_ = &texts;
  size_t cap = 16;
  while (cap < texts.size() * 2) cap <<= 1;
  mask_ = cap - 1;
  slots_.assign(cap, Slot{-1, 0});
  for (size_t id = 0; id < texts.size(); ++id) {
    const std::string_view t = texts[id];
    const uint64_t h = fnv1a(kFnvBasis, t);
    const uint32_t tag = uint32_t(h >> 32);
    size_t i = size_t(h) & mask_;
    bool dup = false;
    for (; slots_[i].id >= 0; i = (i + 1) & mask_) {
      if (slots_[i].tag == tag && texts[size_t(slots_[i].id)] == t) {
        dup = true;
        break;
      }
    }
    if (!dup) slots_[i] = Slot{int32_t(id), tag};
  }
}

int32_t TokenIndex::find(std::string_view a, std::string_view b) const {
  if (slots_.empty()) return -1;
  const uint64_t h = fnv1a(fnv1a(kFnvBasis, a), b);
  const uint32_t tag = uint32_t(h >> 32);
  for (size_t i = size_t(h) & mask_;; i = (i + 1) & mask_) {
    const Slot sl = slots_[i];
    if (sl.id < 0) return -1;
    if (sl.tag != tag) continue;
    const std::string_view t = (*texts_)[size_t(sl.id)];
    if (t.size() == a.size() + b.size() && t.compare(0, a.size(), a) == 0 && t.compare(a.size(), b.size(), b) == 0)
      return sl.id;
  }
}

void MergeTable::reserve(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  mask_ = cap - 1;
  slots_.assign(cap, Slot{kEmpty, 0, 0});
  size_ = 0;
}

bool MergeTable::insert(int32_t left, int32_t right, uint32_t rank, int32_t merged) {
  const uint64_t key = (uint64_t(uint32_t(left)) << 32) | uint32_t(right);
  size_t i = hash(key) & mask_;
  for (; slots_[i].key != kEmpty; i = (i + 1) & mask_)
    if (slots_[i].key == key) return false;
  slots_[i] = Slot{key, rank, merged};
  ++size_;
  return true;
}

}  // namespace detail

std::shared_ptr<Vocab> Vocab::from_gguf(const GGUFFile& f) {
  auto key_err = [&](const std::string& key, const std::string& why) {
    return FormatError(f.where() + key + ": " + why);
  };
  std::shared_ptr<Vocab> v(new Vocab());

  // --- model ---
  const std::string k_model = "tokenizer.ggml.model";
  const GGUFValue* model = f.find(k_model);
  if (!model) throw FormatError(f.where() + k_model + " is missing: the file has no tokenizer");
  if (model->type != GGUFType::STRING) throw key_err(k_model, "expected a string, found " + type_desc(*model));
  v->model_name_ = std::string(model->as_string(f.where() + k_model));
  if (v->model_name_ == "llama") {
    v->model_ = VocabModel::SPM;
  } else if (v->model_name_ == "gpt2") {
    v->model_ = VocabModel::BPE;
  } else {
    throw UnsupportedError(f.where() + k_model + ": tokenizer model '" + printable(v->model_name_) +
                           "' is not supported (supported: 'llama' = SentencePiece BPE, 'gpt2' = byte-level BPE)");
  }

  // --- tokens ---
  const std::string k_tokens = "tokenizer.ggml.tokens";
  const GGUFValue* tokens = f.find(k_tokens);
  if (!tokens) throw FormatError(f.where() + k_tokens + " is missing");
  if (!tokens->is_array() || tokens->array_type != GGUFType::STRING)
    throw key_err(k_tokens, "expected an array of strings, found " + type_desc(*tokens));
  const size_t n = tokens->array_size();
  if (n == 0) throw key_err(k_tokens, "the vocabulary is empty");
  if (n > size_t(INT32_MAX)) throw key_err(k_tokens, "too many tokens (" + std::to_string(n) + ")");
  {
    size_t bytes = 0;
    for (size_t i = 0; i < n; ++i) bytes += tokens->string_at(i).size();
    if (bytes >= size_t(UINT32_MAX)) throw key_err(k_tokens, "the token texts are too large");
    v->text_.reserve(n, bytes);
    for (size_t i = 0; i < n; ++i) v->text_.push_back(tokens->string_at(i));
  }

  // --- scores (optional, default 0) ---
  const std::string k_scores = "tokenizer.ggml.scores";
  v->score_.assign(n, 0.0f);
  if (const GGUFValue* s = f.find(k_scores)) {
    if (!s->is_array() || (s->array_type != GGUFType::FLOAT32 && s->array_type != GGUFType::FLOAT64))
      throw key_err(k_scores, "expected an array of float32, found " + type_desc(*s));
    if (s->array_size() != n)
      throw key_err(k_scores, "has " + std::to_string(s->array_size()) + " entries but there are " +
                                  std::to_string(n) + " tokens");
    const std::string what = f.where() + k_scores;
    for (size_t i = 0; i < n; ++i) {
      v->score_[i] = float(s->float_at(i, what));
      if (v->score_[i] != v->score_[i])  // NaN would break the merge order
        throw key_err(k_scores, "the score of token " + std::to_string(i) + " is NaN");
    }
  }

  // --- token types (optional, default Normal) ---
  const std::string k_types = "tokenizer.ggml.token_type";
  v->type_.assign(n, TokenType::Normal);
  if (const GGUFValue* t = f.find(k_types)) {
    if (!t->is_array() || !gguf_is_integer_type(t->array_type))
      throw key_err(k_types, "expected an array of int32, found " + type_desc(*t));
    if (t->array_size() != n)
      throw key_err(k_types, "has " + std::to_string(t->array_size()) + " entries but there are " +
                                 std::to_string(n) + " tokens");
    const std::string what = f.where() + k_types;
    for (size_t i = 0; i < n; ++i) {
      const int64_t x = t->int_at(i, what);
      if (x < 0 || x > 6)
        throw key_err(k_types, "token " + std::to_string(i) + " has type " + std::to_string(x) +
                                   " (valid: 0..6)");
      v->type_[i] = TokenType(int32_t(x));
    }
  }

  // --- text -> id (the first token wins when two share a text) ---
  v->index_.build(v->text_);

  // --- special ids ---
  const bool spm = v->model_ == VocabModel::SPM;
  auto get_id = [&](const char* name, int32_t fallback) -> int32_t {
    const std::string key = std::string("tokenizer.ggml.") + name;
    const GGUFValue* x = f.find(key);
    if (!x) return fallback;
    if (x->is_array() || !x->is_integer()) throw key_err(key, "expected an integer, found " + type_desc(*x));
    const int64_t id = x->as_int(f.where() + key);
    if (id < 0 || id >= int64_t(n))
      throw key_err(key, "token id " + std::to_string(id) + " is out of range (the vocabulary has " +
                             std::to_string(n) + " tokens)");
    return int32_t(id);
  };
  // llama.cpp's SentencePiece defaults when the keys are absent: <unk>=0, <s>=1, </s>=2.
  v->unk_ = get_id("unknown_token_id", spm && n > 0 ? 0 : -1);
  v->bos_ = get_id("bos_token_id", spm && n > 1 ? 1 : -1);
  v->eos_ = get_id("eos_token_id", spm && n > 2 ? 2 : -1);
  v->eot_ = get_id("eot_token_id", -1);
  v->pad_ = get_id("padding_token_id", -1);
  const int32_t eom = get_id("eom_token_id", -1);

  // --- pre-tokenizer and merges (BPE) ---
  if (!spm) {
    const std::string k_pre = "tokenizer.ggml.pre";
    v->pre_name_ = "default";
    if (const GGUFValue* p = f.find(k_pre)) {
      if (p->type != GGUFType::STRING) throw key_err(k_pre, "expected a string, found " + type_desc(*p));
      v->pre_name_ = std::string(p->as_string(f.where() + k_pre));
    }
    if (!pre_tokenizer_from_name(v->pre_name_, &v->pre_, &v->ignore_merges_))
      throw UnsupportedError(f.where() + k_pre + ": pre-tokenizer '" + printable(v->pre_name_) +
                             "' is not supported (supported: default, gpt2, llama-bpe, qwen2, smollm and aliases)");

    const std::string k_merges = "tokenizer.ggml.merges";
    const GGUFValue* m = f.find(k_merges);
    if (!m) throw FormatError(f.where() + k_merges + " is missing (required for the gpt2 tokenizer model)");
    if (!m->is_array() || m->array_type != GGUFType::STRING)
      throw key_err(k_merges, "expected an array of strings, found " + type_desc(*m));
    const size_t nm = m->array_size();
    if (nm > size_t(INT32_MAX)) throw key_err(k_merges, "too many merges");
    v->merges_.reserve(nm);
    for (size_t r = 0; r < nm; ++r) {
      const std::string_view s = m->string_at(r);
      const size_t sp = s.size() > 1 ? s.find(' ', 1) : std::string_view::npos;
      if (sp == std::string_view::npos)
        throw key_err(k_merges, "merge " + std::to_string(r) + " '" + printable(s) + "' is not of the form 'left right'");
      const std::string_view left = s.substr(0, sp), right = s.substr(sp + 1);
      auto lookup = [&](std::string_view x, std::string_view y) {
        const int32_t id = v->index_.find(x, y);
        if (id < 0)
          throw key_err(k_merges, "merge " + std::to_string(r) + " '" + printable(s) + "' refers to '" +
                                      printable(std::string(x) + std::string(y)) + "', which is not a token");
        return id;
      };
      const int32_t a = lookup(left, {}), b = lookup(right, {});
      const int32_t c = lookup(left, right);
      v->merges_.insert(a, b, uint32_t(r), c);  // a repeated pair keeps its first (lowest) rank
    }
  }

  // --- flags ---
  v->add_space_prefix_ = f.get_bool("tokenizer.ggml.add_space_prefix", spm);
  // add_bos defaults as in llama.cpp: on for SentencePiece and Llama 3, when there is a BOS token
  v->add_bos_ = f.get_bool("tokenizer.ggml.add_bos_token", (spm || v->ignore_merges_) && v->bos_ >= 0);
  v->add_eos_ = f.get_bool("tokenizer.ggml.add_eos_token", false);
  if (v->add_bos_ && v->bos_ < 0)
    throw FormatError(f.where() + "tokenizer.ggml.add_bos_token is true but the vocabulary has no BOS token");
  if (v->add_eos_ && v->eos_ < 0)
    throw FormatError(f.where() + "tokenizer.ggml.add_eos_token is true but the vocabulary has no EOS token");

  // --- byte tokens and rendered pieces ---
  std::fill(std::begin(v->byte_token_), std::end(v->byte_token_), -1);
  if (spm) {
    for (size_t i = 0; i < n; ++i) {
      if (v->type_[i] != TokenType::Byte) continue;
      const int b = parse_byte_token(v->text_[i]);
      if (b < 0)
        throw key_err(k_tokens, "token " + std::to_string(i) + " has type BYTE but its text '" +
                                    printable(v->text_[i]) + "' is not of the form <0xXX>");
      if (v->byte_token_[b] < 0) v->byte_token_[b] = int32_t(i);
    }
  } else {
    std::string ch;
    for (int b = 0; b < 256; ++b) {
      ch.clear();
      unicode::append_utf8(ch, unicode::byte_to_cp(uint8_t(b)));
      v->byte_token_[b] = v->index_.find(ch);
    }
  }
  v->piece_.reserve(n, n * 8);
  std::string p;
  for (size_t i = 0; i < n; ++i) {
    const std::string_view t = v->text_[i];
    p.clear();
    switch (v->type_[i]) {
      case TokenType::Normal:
        if (spm) {
          for (size_t k = 0; k < t.size();) {
            if (t.substr(k, 3) == kSpaceMark) {
              p.push_back(' ');
              k += 3;
            } else {
              p.push_back(t[k++]);
            }
          }
        } else {
          for (size_t k = 0; k < t.size();) {
            uint32_t cp;
            const size_t len = unicode::decode_one(t, k, &cp);
            if (len == 0) {  // not UTF-8: keep the byte
              p.push_back(t[k++]);
              continue;
            }
            const int b = unicode::cp_to_byte(cp);
            if (b >= 0) {
              p.push_back(char(b));
            } else {
              p.append(t.substr(k, len));
            }
            k += len;
          }
        }
        break;
      case TokenType::Byte:
        if (spm) {
          p.push_back(char(parse_byte_token(t)));
        } else {
          p = t;
        }
        break;
      case TokenType::Control: case TokenType::Unknown: case TokenType::UserDefined:
        p = t;
        break;
      default:
        break;  // Undefined / Unused render as nothing
    }
    v->piece_.push_back(p);
  }

  // --- end of generation ---
  static const char* kEotTexts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                    "<EOT>", "_<EOT>", "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
                                    "<end_of_utterance>"};
  if (v->eot_ < 0) {
    for (const char* t : kEotTexts) {
      const int32_t id = v->token_id(t);
      if (id >= 0 && v->type_[id] != TokenType::Normal) {
        v->eot_ = id;
        break;
      }
    }
  }
  auto add_eog = [&](int32_t id) {
    if (id >= 0 && std::find(v->eog_.begin(), v->eog_.end(), id) == v->eog_.end()) v->eog_.push_back(id);
  };
  add_eog(v->eos_);
  add_eog(v->eot_);
  add_eog(eom);
  for (const char* t : kEotTexts) {
    const int32_t id = v->token_id(t);
    if (id >= 0 && v->type_[id] != TokenType::Normal) add_eog(id);
  }
  add_eog(v->token_id("<|eom_id|>"));

  v->build_special_matcher();
  return v;
}

void Vocab::build_special_matcher() {
  for (size_t i = 0; i < text_.size(); ++i) {
    const TokenType t = type_[i];
    if (t != TokenType::Control && t != TokenType::UserDefined && t != TokenType::Unknown) continue;
    const std::string_view s = text_[i];
    if (s.empty()) continue;
    if (index_.find(s) != int32_t(i)) continue;  // duplicate text: the first token wins
    special_by_byte_[uint8_t(s[0])].push_back({s, int32_t(i), t == TokenType::UserDefined});
  }
  for (auto& bucket : special_by_byte_)
    std::stable_sort(bucket.begin(), bucket.end(),
                     [](const SpecialToken& a, const SpecialToken& b) { return a.text.size() > b.text.size(); });
}

void Vocab::check_id(int32_t id) const {
  if (id < 0 || id >= n_tokens())
    throw ArgumentError("token id " + std::to_string(id) + " is out of range (the vocabulary has " +
                        std::to_string(n_tokens()) + " tokens)");
}

std::string_view Vocab::token_text(int32_t id) const {
  check_id(id);
  return text_[size_t(id)];
}

float Vocab::token_score(int32_t id) const {
  check_id(id);
  return score_[size_t(id)];
}

TokenType Vocab::token_type(int32_t id) const {
  check_id(id);
  return type_[size_t(id)];
}

int32_t Vocab::token_id(std::string_view text) const { return index_.find(text); }

bool Vocab::is_eog(int32_t id) const {
  check_id(id);
  return std::find(eog_.begin(), eog_.end(), id) != eog_.end();
}

std::vector<int32_t> Vocab::tokenize(std::string_view text, bool add_special, bool parse_special) const {
  const size_t bad = unicode::find_invalid_utf8(text);
  if (bad != std::string_view::npos) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "tokenize: the text is not valid UTF-8 (byte 0x%02X at offset %zu)",
                  unsigned(uint8_t(text[bad])), bad);
    throw ArgumentError(buf);
  }
  if (text.size() >= size_t(UINT32_MAX)) throw ArgumentError("tokenize: the text is too long (>= 4 GiB)");

  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special && add_bos_) out.push_back(bos_);

  bool prev_special = true;  // SentencePiece: the first fragment and those after a special token get the space prefix
  size_t start = 0;
  auto flush = [&](size_t end) {
    if (end > start) {
      const std::string_view frag = text.substr(start, end - start);
      if (model_ == VocabModel::SPM) {
        if (add_space_prefix_ && prev_special) {
          std::string with_space(1, ' ');
          with_space.append(frag);
          tokenize_spm(with_space, out);
        } else {
          tokenize_spm(frag, out);
        }
      } else {
        tokenize_bpe(frag, out);
      }
      prev_special = false;
    }
  };
  for (size_t i = 0; i < text.size();) {
    const uint8_t c = uint8_t(text[i]);
    const SpecialToken* hit = nullptr;
    if ((c & 0xC0) != 0x80) {
      for (const SpecialToken& s : special_by_byte_[c]) {
        if (!s.always && !parse_special) continue;
        if (text.size() - i >= s.text.size() && text.compare(i, s.text.size(), s.text) == 0) {
          hit = &s;
          break;
        }
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    flush(i);
    out.push_back(hit->id);
    prev_special = true;
    i += hit->text.size();
    start = i;
  }
  flush(text.size());
  if (add_special && add_eos_) out.push_back(eos_);
  return out;
}

std::string Vocab::token_to_piece(int32_t id, bool special) const {
  check_id(id);
  const TokenType t = type_[size_t(id)];
  if ((t == TokenType::Control || t == TokenType::Unknown) && !special) return {};
  return std::string(piece_[size_t(id)]);
}

std::string Vocab::detokenize(const int32_t* ids, size_t n, bool special) const {
  for (size_t i = 0; i < n; ++i) check_id(ids[i]);
  std::string out;
  // sentencepiece decode: the dummy-prefix space at the start of the first piece is not text
  bool strip = model_ == VocabModel::SPM && add_space_prefix_;
  for (size_t i = 0; i < n; ++i) {
    const int32_t id = ids[i];
    const TokenType t = type_[size_t(id)];
    if ((t == TokenType::Control || t == TokenType::Unknown) && !special) continue;
    const std::string_view p = piece_[size_t(id)];
    if (strip && t == TokenType::Normal && !p.empty() && p[0] == ' ') {
      out.append(p.substr(1));
    } else {
      out += p;
    }
    strip = false;
  }
  return out;
}

std::string Vocab::detokenize_after(const int32_t* prev, size_t n_prev, const int32_t* ids, size_t n,
                                    bool special) const {
  if (n_prev == 0) return detokenize(ids, n, special);
  std::vector<int32_t> both(prev, prev + n_prev);
  both.insert(both.end(), ids, ids + n);
  const std::string before = detokenize(prev, n_prev, special);
  std::string all = detokenize(both, special);
  if (all.compare(0, before.size(), before) == 0) return all.substr(before.size());
  return detokenize(ids, n, special);
}

}  // namespace edgellama
