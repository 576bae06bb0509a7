// Context::copy_seq_prefix: copy the first n positions of one sequence's KV cache into another
// (context.h). The batch server uses it to share a prompt prefix that one slot already evaluated
// with a new request on another slot, instead of prefilling it again.
//
// Layout (context.h): every layer's K and V cache holds n_seq * seq_rows(il) rows of kv_width values
// of the cache's type, in blocks of kAttnBlock rows (k_cache_index / v_cache_index in kernels.h). A
// full layer keeps position p of sequence s at row s * seq_rows + p (seq_rows whole blocks), so
// the prefix is one contiguous run of whole blocks per layer and cache (the rows past n in the last
// one are not held by dst and are overwritten before they are read). A sliding-window ring layer
// keeps position p at rows p % ring_ and p % ring_ + ring_ of its region and holds only the positions
// from window_floor_ on: the positions a ring still holds up to n are copied one by one, to both
// copies.
#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "edgellama/context.h"
#include "edgellama/errors.h"
#include "kv_layout.h"

namespace edgellama {

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
  const int64_t kvw = hp.kv_width(), hd = hp.head_dim;
  const size_t k_es = kv_value_bytes(params_.type_k), v_es = kv_value_bytes(params_.type_v);
  std::vector<uint8_t> k_row(size_t(kvw) * k_es), v_row(size_t(kvw) * v_es);
  for (int64_t il = 0; il < hp.n_layer; ++il) {
    uint8_t* K = k_cache_[size_t(il)].data();
    uint8_t* V = v_cache_[size_t(il)].data();
    if (!ring_layer(il)) {
      const size_t rows = size_t(whole_attn_blocks(n)) * size_t(kvw);
      const size_t from = size_t(seq_base(il, src)) * size_t(kvw), to = size_t(seq_base(il, dst)) * size_t(kvw);
      std::memcpy(K + to * k_es, K + from * k_es, rows * k_es);
      std::memcpy(V + to * v_es, V + from * v_es, rows * v_es);
      continue;
    }
    for (int64_t pos = floor; pos < n; ++pos) {
      const int64_t from = kv_slot(il, src, pos), to = kv_slot(il, dst, pos);
      k_row_get(K, from, kvw, k_es, k_row.data());
      v_row_get(V, from, kvw, hd, v_es, v_row.data());
      for (const int64_t row : {to, to + ring_}) {  // and the ring's second copy (seq_rows)
        k_row_put(K, row, kvw, k_es, k_row.data());
        v_row_put(V, row, kvw, hd, v_es, v_row.data());
      }
    }
  }
  seq_past_[size_t(dst)] = n;
  window_floor_[size_t(dst)] = floor;
}

}  // namespace edgellama
