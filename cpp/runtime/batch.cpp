// Context's multi-sequence API (batch.h): validation, chunking into n_batch rows, per-sequence
// rollback. The forward pass itself is Context::forward_chunk, shared with the single-sequence
// decode (which is the special case "every row is sequence 0, appended").
#include <string>
#include <vector>

#include "edgellama/context.h"
#include "edgellama/errors.h"

namespace edgellama {

void Context::check_seq(int64_t seq, const char* what) const {
  if (seq < 0 || seq >= params_.n_seq)
    throw ArgumentError(std::string(what) + ": sequence id " + std::to_string(seq) + " is outside 0.." +
                        std::to_string(params_.n_seq - 1) + " (n_seq=" + std::to_string(params_.n_seq) + ")");
}

int64_t Context::n_past_seq(int64_t seq) const {
  check_seq(seq, "n_past_seq");
  return seq_past_[size_t(seq)];
}

void Context::truncate_seq(int64_t seq, int64_t n) {
  check_seq(seq, "truncate_seq");
  const int64_t have = seq_past_[size_t(seq)];
  if (n < 0 || n > have)
    throw ArgumentError("truncate_seq: position " + std::to_string(n) + " is outside sequence " +
                        std::to_string(seq) + "'s cache (0.." + std::to_string(have) + ")");
  if (!can_truncate_seq(seq, n))
    throw ArgumentError("truncate_seq: sequence " + std::to_string(seq) + " cannot roll back from position " +
                        std::to_string(have) + " to " + std::to_string(n) + ": its sliding-window layers keep only " +
                        "positions from " + std::to_string(window_floor_[size_t(seq)]) + " on (a ring of " +
                        std::to_string(ring_) + "; decoding at " + std::to_string(n) + " needs the " +
                        std::to_string(model_->hparams().n_swa) + "-position window before it). Truncate to 0 " +
                        "and re-evaluate, or create the context with swa_full");
  seq_past_[size_t(seq)] = n;
  if (n == 0) window_floor_[size_t(seq)] = 0;
}

bool Context::can_truncate_seq(int64_t seq, int64_t n) const {
  check_seq(seq, "can_truncate_seq");
  const int64_t have = seq_past_[size_t(seq)];
  if (n < 0 || n > have) return false;
  if (n == 0 || n == have) return true;
  // Decoding position n reads keys max(0, n - window + 1)..n-1 of the windowed layers.
  return std::max<int64_t>(0, n - model_->hparams().n_swa + 1) >= window_floor_[size_t(seq)];
}

void Context::decode_batch(const BatchView& b, float* logits) {
  const int64_t n_vocab = model_->hparams().n_vocab;
  if (b.n < 0) throw ArgumentError("decode_batch: negative row count");
  if (b.n == 0) return;
  if (!b.tokens || !b.seq_ids) throw ArgumentError("decode_batch: tokens and seq_ids are required");

  // Validate everything before touching any state: the position each row will take, per sequence.
  std::vector<int64_t> next(seq_past_);
  std::vector<int64_t> pos(size_t(b.n));
  int64_t n_out = 0;
  for (int64_t i = 0; i < b.n; ++i) {
    const int32_t tok = b.tokens[i];
    const int64_t s = b.seq_ids[i];
    if (tok < 0 || tok >= n_vocab)
      throw ArgumentError("decode_batch: token id " + std::to_string(tok) + " at row " + std::to_string(i) +
                          " is outside the vocabulary (0.." + std::to_string(n_vocab - 1) + ")");
    if (s < 0 || s >= params_.n_seq)
      throw ArgumentError("decode_batch: sequence id " + std::to_string(s) + " at row " + std::to_string(i) +
                          " is outside 0.." + std::to_string(params_.n_seq - 1));
    const int64_t expect = next[size_t(s)];
    if (b.positions && b.positions[i] != expect)
      throw ArgumentError("decode_batch: row " + std::to_string(i) + " of sequence " + std::to_string(s) +
                          " has position " + std::to_string(b.positions[i]) + " but the sequence continues at " +
                          std::to_string(expect) + " (roll back with truncate_seq first)");
    if (expect >= params_.n_ctx)
      throw ArgumentError("decode_batch: context window of sequence " + std::to_string(s) + " is full (n_ctx " +
                          std::to_string(params_.n_ctx) + ")");
    pos[size_t(i)] = expect;
    next[size_t(s)] = expect + 1;
    if (b.want_logits && b.want_logits[i]) ++n_out;
  }
  if (n_out > 0 && !logits) throw ArgumentError("decode_batch: rows want logits but no output buffer was given");

  float* out = logits;
  for (int64_t start = 0; start < b.n; start += params_.n_batch) {
    const int64_t m = std::min(params_.n_batch, b.n - start);
    int64_t m_out = 0;
    for (int64_t t = 0; t < m; ++t) {
      row_seq_[size_t(t)] = b.seq_ids[start + t];
      row_pos_[size_t(t)] = pos[size_t(start + t)];
      if (b.want_logits && b.want_logits[start + t]) out_rows_[size_t(m_out++)] = t;
    }
    forward_chunk(b.tokens + start, m, m_out ? out : nullptr, out_rows_.data(), m_out);
    if (m_out) out += size_t(m_out) * size_t(n_vocab);
  }
}

}  // namespace edgellama
