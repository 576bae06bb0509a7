// libFuzzer harness over everything a downloaded model file reaches before and during inference:
//   GGUFFile::from_bytes (header, metadata, tensor infos)  ->  Vocab::from_gguf  ->  tokenize /
//   detokenize / token_to_piece on text taken from the input  ->  Model::load  ->  one decode step
//   when the model is small.
// Every failure must be one of our typed exceptions (edgellama::Error); anything else -- a crash,
// a sanitizer report, std::out_of_range, std::bad_alloc, std::length_error -- is a finding.
// Built and run by scripts/fuzz.sh (clang, -fsanitize=fuzzer,address,undefined).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "edgellama/context.h"
#include "edgellama/errors.h"
#include "edgellama/gguf.h"
#include "edgellama/model.h"
#include "edgellama/vocab.h"

using namespace edgellama;

namespace {

void exercise_vocab(const Vocab& v, std::string_view text) {
  for (bool add_special : {false, true}) {
    for (bool parse_special : {false, true}) {
      std::vector<int32_t> ids;
      try {
        ids = v.tokenize(text, add_special, parse_special);
      } catch (const ArgumentError&) {
        continue;  // invalid UTF-8
      }
      (void)v.detokenize(ids, parse_special);
    }
  }
  const int32_t n = v.n_tokens();
  const int32_t step = n > 4096 ? n / 4096 : 1;
  std::vector<int32_t> all;
  for (int32_t i = 0; i < n; i += step) {
    (void)v.token_to_piece(i, true);
    (void)v.is_eog(i);
    all.push_back(i);
  }
  (void)v.detokenize(all, true);
  (void)v.detokenize(all, false);
  for (int32_t bad : {-1, n, INT32_MAX, INT32_MIN}) {
    try {
      (void)v.token_to_piece(bad);
      std::abort();  // must have thrown
    } catch (const ArgumentError&) {
    }
  }
}

void exercise_model(std::shared_ptr<GGUFFile> f, const std::vector<int32_t>& tokens) {
  std::shared_ptr<Model> m = Model::load(f, false);
  const HParams& hp = m->hparams();
  // Keep each execution fast: only run the forward pass of small models.
  double weights = double(hp.n_embd) * double(hp.n_vocab) +
                   double(hp.n_layer) * double(hp.n_embd) * double(4 * hp.n_embd + 3 * hp.n_ff);
  if (weights > 2e6 || hp.n_layer > 8) return;
  ContextParams p;
  p.n_ctx = 4;
  p.n_threads = 1;
  p.n_batch = 2;
  Context ctx(m, p);
  std::vector<int32_t> ids;
  for (int32_t t : tokens)
    if (t >= 0 && t < hp.n_vocab && ids.size() < 3) ids.push_back(t);
  if (ids.empty()) ids.push_back(int32_t(hp.n_vocab - 1));
  std::vector<float> logits(ids.size() * size_t(hp.n_vocab));
  ctx.decode(ids.data(), int64_t(ids.size()), logits.data(), true);
  try {
    const int32_t bad = int32_t(hp.n_vocab);
    ctx.decode(&bad, 1, logits.data(), false);
    std::abort();
  } catch (const ArgumentError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::shared_ptr<GGUFFile> f;
  try {
    f = GGUFFile::from_bytes(data, size, "fuzz");
  } catch (const Error&) {
    return 0;
  }
  // Metadata accessors on every entry (what `edgellama info` / metadata_dict do).
  for (const auto& kv : f->metadata()) {
    const GGUFValue& v = kv.second;
    try {
      if (v.is_array()) {
        for (size_t i = 0; i < v.array_size() && i < 64; ++i) {
          if (v.array_type == GGUFType::STRING) (void)v.string_at(i);
          else if (v.array_type == GGUFType::ARRAY) (void)v.array_at(i).array_size();
          else (void)v.float_at(i, kv.first);
        }
      } else if (v.type == GGUFType::STRING) {
        (void)v.as_string(kv.first);
      } else {
        (void)v.as_float(kv.first);
      }
    } catch (const FormatError&) {
    }
  }
  // Text to tokenize: the tail of the input (arbitrary bytes, often invalid UTF-8).
  const size_t tail = size > 64 ? 64 : size;
  const std::string_view text(reinterpret_cast<const char*>(data + size - tail), tail);
  std::vector<int32_t> tokens;
  try {
    std::shared_ptr<Vocab> v = Vocab::from_gguf(*f);
    exercise_vocab(*v, text);
    exercise_vocab(*v, "Hello world! <s> </s> \xC3\xA9\xF0\x9F\x98\x80 12345  \n\t x");
    try {
      tokens = v->tokenize("hello", true, false);
    } catch (const ArgumentError&) {
    }
  } catch (const Error&) {
  }
  try {
    exercise_model(f, tokens);
  } catch (const Error&) {
  }
  return 0;
}
