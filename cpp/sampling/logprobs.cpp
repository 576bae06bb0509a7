// Log-probabilities of a logits vector, for `logprobs=` in completions.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "edgellama/errors.h"
#include "edgellama/sampler.h"

namespace edgellama {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kPosInf = std::numeric_limits<float>::infinity();

inline float clean(float x) { return std::isnan(x) ? kNegInf : x; }

// Returns (max, log of the normalizer relative to max). For a +inf max, the normalizer counts the
// +inf entries (each gets log(1/count)).
void normalizer(const float* logits, int32_t n, const char* who, float* max_out, double* log_z) {
  if (n <= 0) throw ArgumentError(std::string(who) + ": need at least one logit, got n=" + std::to_string(n));
  float m = kNegInf;
  for (int32_t i = 0; i < n; ++i) m = std::max(m, clean(logits[i]));
  if (m == kNegInf) throw ArgumentError("all logits are -inf/NaN");
  double z = 0;
  if (m == kPosInf) {
    for (int32_t i = 0; i < n; ++i) z += logits[i] == kPosInf ? 1.0 : 0.0;
  } else {
    for (int32_t i = 0; i < n; ++i) z += std::exp(double(clean(logits[i])) - double(m));
  }
  *max_out = m;
  *log_z = std::log(z);
}

inline float logprob(float x, float m, double log_z) {
  x = clean(x);
  if (m == kPosInf) return x == kPosInf ? float(-log_z) : kNegInf;
  if (x == kNegInf) return kNegInf;
  return float(double(x) - double(m) - log_z);
}

}  // namespace

void log_softmax(const float* logits, int32_t n, float* out) {
  float m;
  double log_z;
  normalizer(logits, n, "log_softmax", &m, &log_z);
  for (int32_t i = 0; i < n; ++i) out[i] = logprob(logits[i], m, log_z);
}

std::vector<std::pair<int32_t, float>> top_logprobs(const float* logits, int32_t n, int32_t k) {
  if (k < 0) throw ArgumentError("top_logprobs: k must be >= 0, got " + std::to_string(k));
  float m;
  double log_z;
  normalizer(logits, n, "top_logprobs", &m, &log_z);
  k = std::min(k, n);
  std::vector<std::pair<int32_t, float>> all(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) all[size_t(i)] = {i, logprob(logits[i], m, log_z)};
  auto by_lp = [](const std::pair<int32_t, float>& a, const std::pair<int32_t, float>& b) {
    return a.second > b.second || (a.second == b.second && a.first < b.first);
  };
  if (k < n) std::nth_element(all.begin(), all.begin() + k, all.end(), by_lp);
  all.resize(size_t(k));
  std::sort(all.begin(), all.end(), by_lp);
  return all;
}

}  // namespace edgellama
