// Context::copy_seq_prefix: copy the first n positions of one sequence's KV cache into another
// (context.h). The batch server uses it to share a prompt prefix that one slot already evaluated
// with a new request on another slot, instead of prefilling it again.
//
// Layout (context.h): every layer's K and V cache is [n_seq * seq_rows(il)][kv_width] values of the
// cache's type. A full layer keeps position p of sequence s at row s * n_ctx + p, so the prefix is
// one contiguous block per layer and cache. A sliding-window ring layer keeps position p at rows
// p % ring_ and p % ring_ + ring_ of its region and holds only the positions from window_floor_ on:
// the positions a ring still holds up to n are copied one by one, to both copies.
#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "edgellama/context.h"
#include "edgellama/errors.h"

namespace edgellama {

namespace {

size_t kv_value_bytes(KVType t) { return t == KVType::F16 ? 2 : 4; }

}  // namespace

void Context::copy_seq_prefix(int64_t src, int64_t dst, int64_t n) {
  check_seq(src, "copy_seq_prefix (src)");
  check_seq(dst, "copy_seq_prefix (dst)");
  const int64_t have = seq_past_[size_t(src)];
  if (n < 0 || n > have)
    throw ArgumentError("copy_seq_prefix: cannot copy " + std::to_string(n) + " positions of sequence " +
                        std::to_string(src) + ", which holds " + std::to_string(have));
  if (!can_truncate_seq(src, n))
    throw ArgumentError("copy_seq_prefix: sequence " + std::to_string(src) + "'s sliding-window layers keep only " +
                        "positions from " + std::to_string(window_floor_[size_t(src)]) + " on (a ring of " +
                        std::to_string(ring_) + "), which leaves out part of the window before position " +
                        std::to_string(n) + "; evaluate the prefix instead");
  if (src == dst) {
    truncate_seq(dst, n);
    return;
  }
  // The first position dst's sliding-window layers hold (what truncate_seq(src, n) would leave src
  // with): src's floor, or where a ring's last ring_ positions before n begin; nothing for n = 0.
  const int64_t floor = n == 0 ? 0 : std::max<int64_t>({0, window_floor_[size_t(src)], ring_ > 0 ? n - ring_ : 0});
  const HParams& hp = model_->hparams();
  const size_t k_row = size_t(hp.kv_width()) * kv_value_bytes(params_.type_k);
  const size_t v_row = size_t(hp.kv_width()) * kv_value_bytes(params_.type_v);
  for (int64_t il = 0; il < hp.n_layer; ++il) {
    for (auto [cache, row] : {std::pair{&k_cache_, k_row}, std::pair{&v_cache_, v_row}}) {
      uint8_t* base = (*cache)[size_t(il)].data();
      if (!ring_layer(il)) {
        std::memcpy(base + size_t(seq_base(il, dst)) * row, base + size_t(seq_base(il, src)) * row, size_t(n) * row);
        continue;
      }
      for (int64_t pos = floor; pos < n; ++pos) {
        uint8_t* to = base + size_t(kv_slot(il, dst, pos)) * row;
        std::memcpy(to, base + size_t(kv_slot(il, src, pos)) * row, row);
        std::memcpy(to + size_t(ring_) * row, to, row);  // the ring's second copy (seq_rows)
      }
    }
  }
  seq_past_[size_t(dst)] = n;
  window_floor_[size_t(dst)] = floor;
}

}  // namespace edgellama
