// Mirostat v1 and v2 (Basu et al., "Mirostat: a neural text decoding algorithm that directly
// controls perplexity", 2021), with llama.cpp's choices so that results carry over:
//   probabilities = softmax(logits / temperature) over every finite token (after bias/penalties);
//   v2: keep the most likely tokens whose surprise -log2 p is <= mu (at least one);
//   v1: estimate the Zipf exponent s from the m most likely tokens, keep the top
//       k = (eps * 2^mu / (1 - n_vocab^-eps))^(1/s) tokens, eps = s - 1 (at least one);
//   draw from the kept tokens renormalized; then mu -= eta * (-log2 p_drawn - tau).
// mu starts at 2 * tau. Sampler::sample() calls mirostat_update() with the drawn candidate.
#include <algorithm>
#include <cmath>

#include "edgellama/sampler.h"

namespace edgellama {

double Sampler::build_mirostat(int32_t n_vocab) {
  cand_.clear();
  const float* w = work_.data();
  for (int32_t i = 0; i < n_vocab; ++i)
    if (w[i] != -INFINITY) cand_.push_back({i, w[i]});
  sorted_ = false;
  sort_candidates();
  double sum = weights(double(params_.temperature));  // prob_[i] / sum = p_i, descending
  const size_t n = cand_.size();
  size_t keep = n;
  if (params_.mirostat == 2) {
    keep = 0;
    while (keep < n && -std::log2(prob_[keep] / sum) <= mu_) ++keep;
  } else {
    double sum_tb = 0, sum_tt = 0;
    for (size_t i = 0; i + 1 < size_t(params_.mirostat_m) && i + 1 < n; ++i) {
      if (prob_[i + 1] <= 0) break;  // the rest is zero: log ratio undefined
      const double t = std::log(double(i + 2) / double(i + 1));
      const double b = std::log(prob_[i] / prob_[i + 1]);
      sum_tb += t * b;
      sum_tt += t * t;
    }
    const double s_hat = sum_tt > 0 ? sum_tb / sum_tt : 0;
    const double eps = s_hat - 1;
    const double k = std::pow(eps * std::pow(2.0, mu_) / (1 - std::pow(double(n_vocab), -eps)), 1 / s_hat);
    // a flat or degenerate head gives no finite k: keep everything, like an untruncated draw
    keep = std::isfinite(k) && k >= 0 ? size_t(std::min(k, double(n))) : n;
  }
  keep = std::max<size_t>(keep, 1);
  cand_.resize(keep);
  sum = 0;
  for (size_t i = 0; i < keep; ++i) sum += prob_[i];
  return sum;
}

void Sampler::mirostat_update(size_t i, double sum) {
  const double surprise = -std::log2(prob_[i] / sum);
  mu_ -= double(params_.mirostat_eta) * (surprise - double(params_.mirostat_tau));
}

}  // namespace edgellama
