// Sampler: logit bias -> penalties -> top-k -> typical -> top-p -> min-p -> temperature -> draw.
// See edgellama/sampler.h for the contract.
#include "edgellama/sampler.h"

// SSE2 (every x86-64) for the per-token passes over the whole vocabulary; elsewhere the same loops
// run one value at a time.
#if defined(__SSE2__) || defined(_M_X64)
#define EDGELLAMA_SAMPLER_SSE2 1
#include <emmintrin.h>
#endif
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>

#include "edgellama/errors.h"
#include "edgellama/token_mask.h"
#include "../kernels/exp_poly.h"

namespace edgellama {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kPosInf = std::numeric_limits<float>::infinity();

std::string fmt(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

[[noreturn]] void bad(const char* name, const std::string& why) {
  throw ArgumentError(std::string("Sampler: ") + name + " " + why);
}

void require_finite(const char* name, float v) {
  if (!std::isfinite(v)) bad(name, "must be a finite number, got " + fmt(v));
}

void require_not_nan_nonneg(const char* name, float v) {
  if (std::isnan(v)) bad(name, "must be a number, got nan");
  if (v < 0) bad(name, "must be >= 0, got " + fmt(v));
}

}  // namespace

Sampler::Sampler(const SamplerParams& p) : params_(p), rng_(p.seed), mu_(2.0 * double(p.mirostat_tau)) {
  // temperature <= 0 is greedy; it only has to be finite.
  require_finite("temperature", p.temperature);
  // top_k: any value; <= 0 disables.
  require_not_nan_nonneg("top_p", p.top_p);  // >= 1 disables
  if (std::isnan(p.min_p)) bad("min_p", "must be a number, got nan");
  if (p.min_p > 1) bad("min_p", "must be <= 1 (a fraction of the top probability), got " + fmt(p.min_p));
  require_not_nan_nonneg("typical_p", p.typical_p);  // >= 1 disables
  require_finite("repeat_penalty", p.repeat_penalty);
  if (p.repeat_penalty <= 0) bad("repeat_penalty", "must be > 0 (1 disables it), got " + fmt(p.repeat_penalty));
  if (p.repeat_last_n < 0) bad("repeat_last_n", "must be >= 0 (0 disables penalties), got " + std::to_string(p.repeat_last_n));
  require_finite("frequency_penalty", p.frequency_penalty);
  require_finite("presence_penalty", p.presence_penalty);
  if (p.mirostat < 0 || p.mirostat > 2) bad("mirostat", "must be 0 (off), 1 or 2, got " + std::to_string(p.mirostat));
  require_finite("mirostat_tau", p.mirostat_tau);
  require_not_nan_nonneg("mirostat_tau", p.mirostat_tau);
  require_finite("mirostat_eta", p.mirostat_eta);
  require_not_nan_nonneg("mirostat_eta", p.mirostat_eta);
  if (p.mirostat_m < 1) bad("mirostat_m", "must be >= 1, got " + std::to_string(p.mirostat_m));
  if (p.n_sampleable == 0 || p.n_sampleable < -1)
    bad("n_sampleable", "must be >= 1 (or -1 for every id), got " + std::to_string(p.n_sampleable));
  for (const auto& [id, bias] : p.logit_bias) {
    if (id < 0) bad("logit_bias", "token id " + std::to_string(id) + " is negative");
    if (std::isnan(bias)) bad("logit_bias", "value for token id " + std::to_string(id) + " is nan");
    if (bias == kPosInf)
      bad("logit_bias", "value for token id " + std::to_string(id) + " is +inf (use a large finite bias to force a token)");
  }
}

void Sampler::set_seed(uint64_t seed) {
  params_.seed = seed;
  rng_.seed_with(seed);
}

void Sampler::reset() {
  history_.clear();
  history_head_ = 0;
  rng_.seed_with(params_.seed);
  mu_ = 2.0 * double(params_.mirostat_tau);
}

void Sampler::accept(int32_t token) {
  if (token < 0) throw ArgumentError("Sampler.accept: token id " + std::to_string(token) + " is negative");
  const size_t cap = size_t(params_.repeat_last_n);
  if (cap == 0) return;
  if (history_.size() < cap) {
    history_.push_back(token);
  } else {
    history_[history_head_] = token;
    history_head_ = (history_head_ + 1) % cap;
  }
}

std::vector<int32_t> Sampler::history() const {
  std::vector<int32_t> out;
  out.reserve(history_.size());
  for (size_t i = 0; i < history_.size(); ++i) out.push_back(history_[(history_head_ + i) % history_.size()]);
  return out;
}

void Sampler::ensure_scratch(int32_t n_vocab) {
  if (n_vocab <= 0) throw ArgumentError("Sampler.sample: n_vocab must be > 0, got " + std::to_string(n_vocab));
  const size_t n = size_t(n_vocab);
  if (work_.size() < n) {
    work_.resize(n);
    counts_.assign(n, 0);  // kept all-zero between calls
    cand_.reserve(n);
    cand_tmp_.reserve(n);
    prob_.resize(n);
    score_.resize(n);
    index_.reserve(n);
  }
}

void Sampler::prepare_logits(const float* logits, int32_t n_vocab, const uint32_t* allowed) {
  // Check bias ids before touching anything, so a bad call leaves no partial state behind.
  for (const auto& [id, bias] : params_.logit_bias) {
    if (id >= n_vocab)
      throw ArgumentError("Sampler.sample: logit_bias token id " + std::to_string(id) +
                          " is out of range for n_vocab " + std::to_string(n_vocab));
  }
  float* w = work_.data();
  bool any = false;
  // padding rows (ids >= n_sampleable) are -inf here, in the scratch copy every call makes anyway
  const int32_t n_real = params_.n_sampleable < 0 ? n_vocab : std::min(n_vocab, params_.n_sampleable);
  // NaN and -inf both fail `x > -inf`. A plain select, so that the compiler vectorizes it (every
  // generated token passes the whole vocabulary through here: 49152 floats took ~50 us as a
  // scalar loop with the `any` reduction in it); `any` then stops at the first real logit.
  for (int32_t i = 0; i < n_real; ++i) w[i] = logits[i] > kNegInf ? logits[i] : kNegInf;
  for (int32_t i = 0; i < n_real && !any; ++i) any = w[i] != kNegInf;
  for (int32_t i = n_real; i < n_vocab; ++i) w[i] = kNegInf;
  if (!any) throw ArgumentError("all logits are -inf/NaN");
  // The grammar mask goes first: a banned token stays -inf whatever bias or penalty follows.
  if (allowed != nullptr && apply_token_mask(w, n_vocab, allowed) == 0)
    throw ArgumentError("Sampler.sample: the allowed-token mask allows no token");

  // bias is never NaN or +inf; -inf bans the token even when its logit is +inf (inf - inf = NaN).
  for (const auto& [id, bias] : params_.logit_bias) w[id] = bias == kNegInf ? kNegInf : w[id] + bias;

  const bool penalize = !history_.empty() && (params_.repeat_penalty != 1.0f || params_.frequency_penalty != 0.0f ||
                                               params_.presence_penalty != 0.0f);
  if (penalize) {
    int32_t* cnt = counts_.data();
    for (int32_t t : history_)
      if (t < n_vocab) ++cnt[t];
    for (int32_t t : history_) {
      if (t >= n_vocab || cnt[t] == 0) continue;  // out of range, or already applied
      float x = w[t];
      if (x <= 0) {
        x *= params_.repeat_penalty;
      } else {
        x /= params_.repeat_penalty;
      }
      x -= float(cnt[t]) * params_.frequency_penalty + params_.presence_penalty;
      if (std::isnan(x)) x = kNegInf;  // cannot happen with finite params, but never let NaN through
      w[t] = x;
      cnt[t] = 0;  // restores the all-zero invariant and marks the token done
    }
  }

  any = false;
  for (int32_t i = 0; i < n_vocab && !any; ++i) any = w[i] != kNegInf;
  if (!any)
    throw ArgumentError(allowed != nullptr
                            ? "all logits are -inf/NaN after applying the allowed-token mask, logit_bias and penalties"
                            : "all logits are -inf/NaN after applying logit_bias and penalties");
}

int32_t Sampler::greedy(int32_t n_vocab) const {
  // The lowest id of the largest value (w holds no NaN: prepare_logits made them -inf), in two
  // passes: the maximum, then the first id that holds it. One dependent compare-and-select chain
  // over a 49152-token vocabulary took ~40 us per generated token; SSE2 (every x86-64) does both
  // passes 4 values at a time. max is exact, so both ways find the same id.
  const float* w = work_.data();
  int32_t i = 0;
  float m = kNegInf;
#ifdef EDGELLAMA_SAMPLER_SSE2
  __m128 m0 = _mm_set1_ps(kNegInf), m1 = m0;
  for (; i + 8 <= n_vocab; i += 8) {
    m0 = _mm_max_ps(_mm_loadu_ps(w + i), m0);
    m1 = _mm_max_ps(_mm_loadu_ps(w + i + 4), m1);
  }
  alignas(16) float lanes[4];
  _mm_store_ps(lanes, _mm_max_ps(m0, m1));
  for (float x : lanes) m = x > m ? x : m;
#endif
  for (; i < n_vocab; ++i) m = w[i] > m ? w[i] : m;
  i = 0;
#ifdef EDGELLAMA_SAMPLER_SSE2
  const __m128 vm = _mm_set1_ps(m);
  for (; i + 4 <= n_vocab; i += 4)
    if (_mm_movemask_ps(_mm_cmpeq_ps(_mm_loadu_ps(w + i), vm)) != 0) break;
#endif
  for (; i < n_vocab; ++i)
    if (w[i] == m) return i;
  return 0;  // unreachable: prepare_logits throws when every value is -inf
}

namespace {
// e^x for x <= 0 in float (x = n ln2 + r, |r| <= ln2/2, Cephes' expf polynomial, 2^n in the
// exponent field; x < -87 gives ~1.6e-38 instead of 0), one value or four (SSE2) with the same
// operations in the same order (no FMA: the build has -ffp-contract=off), so every platform gets
// the same bits. For top-p's normalizer over the whole vocabulary, where a double std::exp per
// token cost ~0.7 ms per draw on 49152 tokens. ~1 ulp: far below what moves a top-p cut.
using exp_poly::kLn2Hi;
using exp_poly::kLn2Lo;
using exp_poly::kLog2e;
using exp_poly::kMinArg;
using exp_poly::kP;

inline float exp_nonpositive(float x) {
  x = x < kMinArg ? kMinArg : x;
  const float n = std::nearbyint(x * kLog2e);
  float r = x - n * kLn2Hi;
  r = r - n * kLn2Lo;
  float p = kP[0];
  for (int i = 1; i < 6; ++i) p = p * r + kP[i];
  p = p * (r * r) + (r + 1.0f);
  const int32_t e = (int32_t(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &e, sizeof(scale));
  return p * scale;
}

#ifdef EDGELLAMA_SAMPLER_SSE2
inline __m128 exp_nonpositive4(__m128 x) {
  x = _mm_max_ps(x, _mm_set1_ps(kMinArg));
  const __m128i ni = _mm_cvtps_epi32(_mm_mul_ps(x, _mm_set1_ps(kLog2e)));  // nearest, ties to even
  const __m128 n = _mm_cvtepi32_ps(ni);
  __m128 r = _mm_sub_ps(x, _mm_mul_ps(n, _mm_set1_ps(kLn2Hi)));
  r = _mm_sub_ps(r, _mm_mul_ps(n, _mm_set1_ps(kLn2Lo)));
  __m128 p = _mm_set1_ps(kP[0]);
  for (int i = 1; i < 6; ++i) p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(kP[i]));
  p = _mm_add_ps(_mm_mul_ps(p, _mm_mul_ps(r, r)), _mm_add_ps(r, _mm_set1_ps(1.0f)));
  return _mm_mul_ps(p, _mm_castsi128_ps(_mm_slli_epi32(_mm_add_epi32(ni, _mm_set1_epi32(127)), 23)));
}
#endif

struct ByLogitDesc {
  template <class C>
  bool operator()(const C& a, const C& b) const {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  }
};
}  // namespace

void Sampler::sort_candidates() {
  if (!sorted_) std::sort(cand_.begin(), cand_.end(), ByLogitDesc());
  sorted_ = true;
}

double Sampler::weights(double temperature) {
  const size_t n = cand_.size();
  float m = kNegInf;
  for (const auto& c : cand_) m = std::max(m, c.logit);
  double sum = 0;
  if (m == kPosInf) {
    for (size_t i = 0; i < n; ++i) sum += (prob_[i] = cand_[i].logit == kPosInf ? 1.0 : 0.0);
  } else {
    const double inv_t = 1.0 / temperature;
    for (size_t i = 0; i < n; ++i) sum += (prob_[i] = std::exp((double(cand_[i].logit) - double(m)) * inv_t));
  }
  return sum;  // >= 1: the max element contributes exactly 1
}

// Builds cand_ from work_: every finite token, or with top-k only the k best. Top-k scans the
// vocabulary once keeping a heap of the k best so far (its front is the worst of them), so the
// common case costs one comparison per token instead of a partition of the whole vocabulary.
void Sampler::collect_candidates(int32_t n_vocab) {
  cand_.clear();
  const float* w = work_.data();
  const int32_t k = params_.top_k;
  if (k <= 0 || k >= n_vocab) {
    // every finite token, in id order: written unconditionally, kept by advancing (no push_back
    // capacity check and no branch per token: 49152 tokens took ~240 us that way)
    cand_.resize(size_t(n_vocab));
    Candidate* out = cand_.data();
    size_t m = 0;
    for (int32_t i = 0; i < n_vocab; ++i) {
      out[m] = {i, w[i]};
      m += w[i] != kNegInf;
    }
    cand_.resize(m);
    sorted_ = false;
    return;
  }
  const ByLogitDesc better;
  auto offer = [&](int32_t i) {
    const float x = w[i];
    if (x == kNegInf) return;
    if (cand_.size() < size_t(k)) {
      cand_.push_back({i, x});
      std::push_heap(cand_.begin(), cand_.end(), better);
    } else if (x > cand_.front().logit) {  // equal logit: i is a higher id, so not better
      std::pop_heap(cand_.begin(), cand_.end(), better);
      cand_.back() = {i, x};
      std::push_heap(cand_.begin(), cand_.end(), better);
    }
  };
  int32_t i = 0;
#ifdef EDGELLAMA_SAMPLER_SSE2
  // Once the heap is full, a token can only get in by beating its worst; four at a time are
  // checked against it first and skipped together when none does (the same offers in the same
  // order reach the heap: -inf never beats a full heap). Most of the vocabulary is skipped that
  // way (49152 tokens: ~65 -> ~20 us a token).
  for (; i < n_vocab && cand_.size() < size_t(k); ++i) offer(i);
  for (; i + 4 <= n_vocab; i += 4)
    if (_mm_movemask_ps(_mm_cmpgt_ps(_mm_loadu_ps(w + i), _mm_set1_ps(cand_.front().logit))) != 0)
      for (int j = 0; j < 4; ++j) offer(i + j);
#endif
  for (; i < n_vocab; ++i) offer(i);
  std::sort(cand_.begin(), cand_.end(), better);
  sorted_ = true;
}

void Sampler::apply_typical() {
  const double p = params_.typical_p;
  const size_t n = cand_.size();
  if (p >= 1.0 || n <= 1) return;
  const double sum = weights(1.0);
  double entropy = 0;
  for (size_t i = 0; i < n; ++i) {
    prob_[i] /= sum;
    if (prob_[i] > 0) entropy -= prob_[i] * std::log(prob_[i]);
  }
  index_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    index_[i] = int32_t(i);
    score_[i] = prob_[i] > 0 ? std::fabs(-std::log(prob_[i]) - entropy) : std::numeric_limits<double>::infinity();
  }
  const double* score = score_.data();
  const Candidate* cand = cand_.data();
  std::sort(index_.begin(), index_.end(), [score, cand](int32_t a, int32_t b) {
    return score[a] < score[b] || (score[a] == score[b] && cand[a].id < cand[b].id);
  });
  // Keep the most "typical" tokens until their mass exceeds p (at least one).
  size_t keep = n;
  double cum = 0;
  for (size_t j = 0; j < n; ++j) {
    cum += prob_[size_t(index_[j])];
    if (cum > p) {
      keep = j + 1;
      break;
    }
  }
  // The survivors stay in typical order (as llama.cpp leaves them): top-p re-sorts them by logit
  // when it truncates; otherwise the draw walks them in this order, as llama.cpp's does.
  cand_tmp_.clear();
  for (size_t j = 0; j < keep; ++j) cand_tmp_.push_back(cand_[size_t(index_[j])]);
  cand_.swap(cand_tmp_);
  sorted_ = false;
}

void Sampler::apply_top_p() {
  const double p = params_.top_p;
  const size_t n = cand_.size();
  if (p >= 1.0 || n <= 1) return;
  // Normalizer over all candidates; then walk tokens in (logit desc, id asc) order until the mass
  // reaches p. Without top-k the list is long and unsorted, so sort it a growing prefix at a time:
  // the prefix after nth_element + sort is exactly the prefix of a full sort.
  float m = kNegInf;
  for (const auto& c : cand_) m = std::max(m, c.logit);
  auto weight = [m](float x) -> double {
    if (m == kPosInf) return x == kPosInf ? 1.0 : 0.0;
    return std::exp(double(x) - double(m));
  };
  // cand_ is sorted, in id order or in typical order here: the summation order is deterministic.
  // The normalizer's terms in float (exp_nonpositive: the same bits with or without SSE2), added
  // in double in list order; the walk below weighs the few tokens it passes in double as before.
  double sum = 0;
  if (m == kPosInf) {
    for (const auto& c : cand_) sum += weight(c.logit);
  } else {
    size_t i = 0;
#ifdef EDGELLAMA_SAMPLER_SSE2
    alignas(16) float e[4];
    const __m128 vm = _mm_set1_ps(m);
    for (; i + 4 <= n; i += 4) {
      const __m128 x = _mm_setr_ps(cand_[i].logit, cand_[i + 1].logit, cand_[i + 2].logit, cand_[i + 3].logit);
      _mm_store_ps(e, exp_nonpositive4(_mm_sub_ps(x, vm)));
      for (float v : e) sum += double(v);
    }
#endif
    for (; i < n; ++i) sum += double(exp_nonpositive(cand_[i].logit - m));
  }
  const double target = p * sum;
  size_t done = sorted_ ? n : 0;  // prefix already in final order
  if (!sorted_ && m != kPosInf) {
    // Tokens within 8 of the best logit first (e^-8: each weighs < 3.4e-4 of the best): when they
    // carry the target mass, the cut falls among them, so only they are sorted (a real model's
    // distribution: a handful) instead of nth_element over the whole vocabulary (~0.2 ms at 49152).
    // Every other token's logit is below every one of theirs, so the walk and, if it ever goes
    // past them, the chunked sort below see exactly a full sort's order.
    const float t = m - 8.0f;
    const auto mid = std::partition(cand_.begin(), cand_.end(), [t](const Candidate& c) { return c.logit >= t; });
    const size_t front = size_t(mid - cand_.begin());
    double front_mass = 0;
    if (front <= 4096)  // a larger front is not sorted whole anyway: no exp per token for nothing
      for (size_t i = 0; i < front; ++i) front_mass += weight(cand_[i].logit);
    if (front <= 4096 && front_mass >= target) {
      std::sort(cand_.begin(), mid, ByLogitDesc());
      done = front;
    }
  }
  size_t chunk = 64;
  double cum = 0;
  for (size_t i = 0; i < n; ++i) {
    if (i == done) {
      const size_t end = std::min(n, done + chunk);
      if (end < n) std::nth_element(cand_.begin() + done, cand_.begin() + end, cand_.end(), ByLogitDesc());
      std::sort(cand_.begin() + done, cand_.begin() + end, ByLogitDesc());
      done = end;
      chunk *= 4;
    }
    cum += weight(cand_[i].logit);
    if (cum >= target) {
      cand_.resize(i + 1);
      sorted_ = true;
      return;
    }
  }
  sorted_ = true;  // rounding kept everything; the whole list is sorted by now
}

void Sampler::apply_min_p() {
  const double min_p = params_.min_p;
  if (min_p <= 0 || cand_.size() <= 1) return;
  float m = kNegInf;
  for (const auto& c : cand_) m = std::max(m, c.logit);
  // p_i >= min_p * p_max  <=>  logit_i - logit_max >= log(min_p)
  const double thr = std::log(min_p);
  size_t out = 0;
  for (size_t i = 0; i < cand_.size(); ++i) {
    const float x = cand_[i].logit;
    const bool keep = m == kPosInf ? x == kPosInf : double(x) - double(m) >= thr;
    if (keep) cand_[out++] = cand_[i];
  }
  cand_.resize(out);  // keeps the max, so never empty; order preserved
}

double Sampler::build_distribution(int32_t n_vocab) {
  if (params_.mirostat) return build_mirostat(n_vocab);
  collect_candidates(n_vocab);  // includes top-k
  apply_typical();
  apply_top_p();
  apply_min_p();
  return weights(double(params_.temperature));
}

int32_t Sampler::sample(const float* logits, int32_t n_vocab, const uint32_t* allowed) {
  ensure_scratch(n_vocab);
  prepare_logits(logits, n_vocab, allowed);
  if (params_.temperature <= 0) return greedy(n_vocab);
  const double sum = build_distribution(n_vocab);
  // llama.cpp's llama_sampler_dist_apply: the first candidate whose running sum reaches u * total.
  // Zero-weight candidates are skipped, so u = 0 cannot pick a token that has no probability.
  const double target = rng_.next_double() * sum;
  double cum = 0;
  const size_t n = cand_.size();
  size_t last_positive = 0;
  size_t chosen = n;
  for (size_t i = 0; i < n && chosen == n; ++i) {
    if (prob_[i] <= 0) continue;
    cum += prob_[i];
    last_positive = i;
    if (cum >= target) chosen = i;
  }
  if (chosen == n) chosen = last_positive;  // cannot happen (u < 1), but never run off the end
  if (params_.mirostat) mirostat_update(chosen, sum);
  return cand_[chosen].id;
}

void Sampler::probabilities(const float* logits, int32_t n_vocab, float* out, const uint32_t* allowed) {
  ensure_scratch(n_vocab);
  prepare_logits(logits, n_vocab, allowed);
  std::fill(out, out + n_vocab, 0.0f);
  if (params_.temperature <= 0) {
    out[greedy(n_vocab)] = 1.0f;
    return;
  }
  const double sum = build_distribution(n_vocab);
  for (size_t i = 0; i < cand_.size(); ++i) out[cand_[i].id] = float(prob_[i] / sum);
}

}  // namespace edgellama
