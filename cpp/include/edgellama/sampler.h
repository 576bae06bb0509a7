// Token sampling: logits -> token id, with the transformations llama.cpp users expect, applied in
// llama.cpp's default order:
//
//   logit bias -> penalties (repeat / frequency / presence over the last repeat_last_n accepted
//   tokens) -> top-k -> typical -> top-p -> min-p -> temperature -> draw from the softmax.
//
// temperature <= 0 is greedy: argmax after bias and penalties (ties -> lowest id); no RNG is used.
// top_k <= 0, typical_p >= 1, top_p >= 1, min_p <= 0 disable those stages. Truncation stages work on
// temperature-1 probabilities of the surviving candidates and always keep at least one token.
//
// Draws follow llama.cpp's dist sampler, so a seed picks the same tokens as llama.cpp and
// llama-cpp-python wherever the logits agree: one uniform double u per sampled token (also when
// only one candidate is left; none when greedy) from std::mt19937 seeded with the seed mod 2^32
// (edgellama/rng.h), and the token is the first candidate whose running weight sum reaches
// u * total, in the order the truncation stages leave them: logit desc after top-k / top-p; after
// typical, by typicality unless top-p re-sorts; id order when nothing sorts.
//
// Determinism: the RNG and its uniform double are our own code (edgellama/rng.h), and every
// ordering uses a strict total order (logit desc, then id asc), so the same seed gives the same
// tokens on every standard library. (Probabilities use std::exp/std::log in double; a libm that
// rounds differently can in principle move a draw that lands within ~1e-16 of a bucket boundary.
// Top-p's normalizer over the whole list is a float exp of our own, the same bits everywhere
// (sampler.cpp exp_nonpositive), ~1e-7 relative: it moves a top-p cut only when the mass lands that
// close to top_p.)
//
// Logits: NaN entries are treated as -inf; +inf entries share all the probability mass equally.
// If every logit is -inf/NaN, ArgumentError. The caller's logits are never modified.
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "edgellama/rng.h"

namespace edgellama {

struct SamplerParams {
  float temperature = 0.8f;
  int32_t top_k = 40;
  float top_p = 0.95f;
  float min_p = 0.05f;
  float typical_p = 1.0f;
  float repeat_penalty = 1.0f;  // > 0; positive logits are divided by it, negative ones multiplied
  int32_t repeat_last_n = 64;   // window of accepted tokens the penalties look at; 0 = no penalties
  float frequency_penalty = 0.0f;  // logit -= count * frequency_penalty
  float presence_penalty = 0.0f;   // logit -= (count > 0) * presence_penalty
  uint64_t seed = 0xFFFFFFFFu;     // mod 2^32 (std::mt19937), used as given (no "random seed" magic value here)
  std::vector<std::pair<int32_t, float>> logit_bias;  // added to logits[id]; -inf bans a token
  // Ids >= n_sampleable are never drawn, as if their logits were -inf: a GGUF's token_embd may have
  // more rows than its tokenizer has tokens (padding), and those rows have no text. -1 = all ids.
  int32_t n_sampleable = -1;
  // Mirostat (Basu et al. 2021) as llama.cpp implements it: 1 or 2 replaces top-k/typical/top-p/
  // min-p with a truncation that steers the surprise (-log2 p) of the drawn tokens towards tau,
  // learning rate eta; v1 estimates the Zipf exponent from the mirostat_m most likely tokens.
  // 0 = off. See cpp/sampling/mirostat.cpp.
  int32_t mirostat = 0;
  float mirostat_tau = 5.0f;
  float mirostat_eta = 0.1f;
  int32_t mirostat_m = 100;
};

class Sampler {
 public:
  // Throws ArgumentError naming the parameter when one is invalid.
  explicit Sampler(const SamplerParams& params);

  // Picks a token from logits[0..n_vocab). Does not modify logits. Internal scratch is sized on the
  // first call for a given (largest) n_vocab; later calls do not allocate.
  // Throws ArgumentError for n_vocab <= 0, a logit_bias id >= n_vocab, or all logits -inf/NaN.
  // `allowed` (optional): a token bitset of token_mask_words(n_vocab) words (edgellama/token_mask.h);
  // tokens whose bit is 0 are never drawn. It is applied first, before bias and penalties; a mask
  // that allows no token, or only tokens whose logits are -inf/NaN, throws ArgumentError.
  int32_t sample(const float* logits, int32_t n_vocab, const uint32_t* allowed = nullptr);

  // The distribution sample() would draw from, written to out[0..n_vocab) (0 for dropped tokens;
  // one-hot for greedy). Uses no randomness and does not change the RNG state.
  void probabilities(const float* logits, int32_t n_vocab, float* out, const uint32_t* allowed = nullptr);

  // Records a generated/prompt token for the penalties (only the last repeat_last_n are kept).
  // Throws ArgumentError for a negative id. Ids >= n_vocab of a later sample() call are ignored there.
  void accept(int32_t token);

  // Clears the token history and re-seeds the RNG with the current seed.
  void reset();
  // Sets the seed and re-seeds the RNG (history is kept).
  void set_seed(uint64_t seed);
  uint64_t seed() const { return params_.seed; }

  const SamplerParams& params() const { return params_; }
  // Mirostat's current maximum surprise (2 * tau after construction or reset()).
  double mirostat_mu() const { return mu_; }
  // The accepted tokens the penalties currently look at, oldest first.
  std::vector<int32_t> history() const;

 private:
  struct Candidate {
    int32_t id;
    float logit;
  };

  void ensure_scratch(int32_t n_vocab);
  // Copies logits into work_ (NaN -> -inf) and applies bias + penalties; throws when every entry
  // is -inf.
  void prepare_logits(const float* logits, int32_t n_vocab, const uint32_t* allowed);
  int32_t greedy(int32_t n_vocab) const;
  // Runs the truncation stages; leaves the survivors in cand_ and final weights in prob_.
  // Returns the sum of the weights.
  double build_distribution(int32_t n_vocab);

  void collect_candidates(int32_t n_vocab);  // finite tokens, top-k applied
  void apply_typical();
  void apply_top_p();
  void apply_min_p();
  // Temperature-T softmax numerators of cand_ into prob_ (relative to the max); returns their sum.
  double weights(double temperature);
  void sort_candidates();
  // Mirostat (mirostat.cpp): the truncated distribution for the current mu_ into cand_/prob_
  // (returns the weight sum), and the mu_ update after drawing candidate i.
  double build_mirostat(int32_t n_vocab);
  void mirostat_update(size_t i, double sum);

  SamplerParams params_;
  Rng rng_;

  // History ring buffer of at most repeat_last_n tokens.
  std::vector<int32_t> history_;
  size_t history_head_ = 0;  // index of the oldest entry once the buffer is full

  // Scratch, sized once per (largest) n_vocab.
  std::vector<float> work_;
  std::vector<int32_t> counts_;
  std::vector<Candidate> cand_;
  std::vector<Candidate> cand_tmp_;
  std::vector<double> prob_;
  std::vector<double> score_;
  std::vector<int32_t> index_;
  bool sorted_ = false;  // cand_ is in (logit desc, id asc) order
  double mu_ = 0;        // mirostat state
};

// out[i] = log softmax(logits)[i], computed in double. NaN entries are treated as -inf.
// Throws ArgumentError for n <= 0 or when every logit is -inf/NaN.
void log_softmax(const float* logits, int32_t n, float* out);

// The k most probable tokens as (id, log-probability), sorted by log-probability descending (ties ->
// lower id first). k is clamped to n; k < 0 throws ArgumentError.
std::vector<std::pair<int32_t, float>> top_logprobs(const float* logits, int32_t n, int32_t k);

}  // namespace edgellama
