// Saving and restoring a Context's KV cache (llama-cpp-python's save_state/load_state and its
// prompt caches). Layout, all little-endian host order (a state is not portable across machines):
// Sequence 0 only (the single-sequence API; the server's other slots are not saved).
//   "EDGEKV02"  int64 n_layer  int64 kv_width  int32 type_k  int32 type_v  int64 n_past
//               int64 window_lo
//   then per layer, in position order: K rows, then V rows (each row kv_width values in the
//   cache's type) of positions 0..n_past-1, or window_lo..n_past-1 for a sliding-window layer
//   (a ring buffer no longer holds the earlier ones; window_lo = 0 without windowed layers).
// Only stored positions are written, so a state is as large as the prompt, not as n_ctx.
// "EDGEKV01" states (no window_lo, every layer from 0) still load.
#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "edgellama/context.h"
#include "edgellama/errors.h"
#include "kv_layout.h"

namespace edgellama {

namespace {

constexpr char kMagicV1[8] = {'E', 'D', 'G', 'E', 'K', 'V', '0', '1'};
constexpr char kMagic[8] = {'E', 'D', 'G', 'E', 'K', 'V', '0', '2'};

struct StateHeaderV1 {
  char magic[8];
  int64_t n_layer;
  int64_t kv_width;
  int32_t type_k;
  int32_t type_v;
  int64_t n_past;
};

struct StateHeader {
  StateHeaderV1 v1;
  int64_t window_lo;
};

}  // namespace

size_t Context::state_size() const {
  const HParams& hp = model_->hparams();
  const size_t row = size_t(hp.kv_width()) * (kv_value_bytes(params_.type_k) + kv_value_bytes(params_.type_v));
  size_t rows = 0;
  for (int64_t il = 0; il < hp.n_layer; ++il)
    rows += size_t(seq_past_[0] - (hp.layer_swa[size_t(il)] ? window_floor_[0] : 0));
  return sizeof(StateHeader) + rows * row;
}

void Context::save_state(uint8_t* out, size_t size) const {
  if (size < state_size())
    throw ArgumentError("save_state: buffer of " + std::to_string(size) + " bytes, need " +
                        std::to_string(state_size()));
  const HParams& hp = model_->hparams();
  StateHeader h{};
  std::memcpy(h.v1.magic, kMagic, sizeof kMagic);
  h.v1.n_layer = hp.n_layer;
  h.v1.kv_width = hp.kv_width();
  h.v1.type_k = int32_t(params_.type_k);
  h.v1.type_v = int32_t(params_.type_v);
  h.v1.n_past = seq_past_[0];
  h.window_lo = std::min(window_floor_[0], seq_past_[0]);
  std::memcpy(out, &h, sizeof h);
  uint8_t* p = out + sizeof h;
  const int64_t kvw = hp.kv_width();
  const size_t k_es = kv_value_bytes(params_.type_k), k_row = size_t(kvw) * k_es;
  const size_t v_es = kv_value_bytes(params_.type_v), v_row = size_t(kvw) * v_es;
  for (int64_t il = 0; il < hp.n_layer; ++il) {
    const int64_t lo = hp.layer_swa[size_t(il)] ? h.window_lo : 0;
    for (int64_t pos = lo; pos < seq_past_[0]; ++pos, p += k_row)  // position-major in the file
      k_row_get(k_cache_[size_t(il)].data(), kv_slot(il, 0, pos), kvw, k_es, p);
    for (int64_t pos = lo; pos < seq_past_[0]; ++pos, p += v_row)
      v_row_get(v_cache_[size_t(il)].data(), kv_slot(il, 0, pos), kvw, hp.head_dim, v_es, p);
  }
}

void Context::load_state(const uint8_t* data, size_t size) {
  StateHeader h{};
  if (size < sizeof h.v1) throw ArgumentError("load_state: " + std::to_string(size) + " bytes is too short for a state");
  std::memcpy(&h.v1, data, sizeof h.v1);
  size_t header = sizeof h;
  if (std::memcmp(h.v1.magic, kMagicV1, sizeof kMagicV1) == 0) {
    header = sizeof h.v1;  // every layer from position 0
  } else if (std::memcmp(h.v1.magic, kMagic, sizeof kMagic) == 0) {
    if (size < sizeof h) throw ArgumentError("load_state: " + std::to_string(size) + " bytes is too short for a state");
    std::memcpy(&h, data, sizeof h);
  } else {
    throw ArgumentError("load_state: not an edgellama KV state (bad magic)");
  }
  const HParams& hp = model_->hparams();
  if (h.v1.n_layer != hp.n_layer || h.v1.kv_width != hp.kv_width())
    throw ArgumentError("load_state: the state is for a model with " + std::to_string(h.v1.n_layer) + " layers x " +
                        std::to_string(h.v1.kv_width) + " KV width, this one has " + std::to_string(hp.n_layer) +
                        " x " + std::to_string(hp.kv_width()));
  if (h.v1.type_k != int32_t(params_.type_k) || h.v1.type_v != int32_t(params_.type_v))
    throw ArgumentError("load_state: the state's KV cache types (type_k/type_v) differ from this context's");
  const int64_t n_past = h.v1.n_past;
  if (n_past < 0 || n_past > params_.n_ctx)
    throw ArgumentError("load_state: the state holds " + std::to_string(n_past) + " tokens, more than n_ctx " +
                        std::to_string(params_.n_ctx));
  // The windowed layers must hold at least the window before n_past (what the next token reads).
  if (h.window_lo < 0 || h.window_lo > std::max<int64_t>(0, n_past - hp.n_swa + 1))
    throw ArgumentError("load_state: the state's sliding-window layers start at position " +
                        std::to_string(h.window_lo) + ", which leaves out part of the window before " +
                        std::to_string(n_past));
  const size_t k_row = size_t(hp.kv_width()) * kv_value_bytes(params_.type_k);
  const size_t v_row = size_t(hp.kv_width()) * kv_value_bytes(params_.type_v);
  size_t expect = header;
  for (int64_t il = 0; il < hp.n_layer; ++il)
    expect += size_t(n_past - (hp.layer_swa[size_t(il)] ? h.window_lo : 0)) * (k_row + v_row);
  if (size != expect)
    throw ArgumentError("load_state: the state has " + std::to_string(size) + " bytes, expected " +
                        std::to_string(expect));
  // A ring keeps the last ring_ of the stored positions (a smaller ring than the saving context's).
  const int64_t keep_lo = ring_ > 0 ? std::max(h.window_lo, n_past - ring_) : h.window_lo;
  const int64_t kvw = hp.kv_width();
  const size_t k_es = kv_value_bytes(params_.type_k), v_es = kv_value_bytes(params_.type_v);
  const uint8_t* p = data + header;
  for (int64_t il = 0; il < hp.n_layer; ++il) {
    const bool windowed = hp.layer_swa[size_t(il)];
    const int64_t lo = windowed ? h.window_lo : 0;
    for (int64_t pos = lo; pos < n_past; ++pos, p += k_row) {  // position-major in the file
      if (windowed && pos < keep_lo) continue;
      const int64_t row = kv_slot(il, 0, pos);
      k_row_put(k_cache_[size_t(il)].data(), row, kvw, k_es, p);
      if (ring_layer(il)) k_row_put(k_cache_[size_t(il)].data(), row + ring_, kvw, k_es, p);
    }
    for (int64_t pos = lo; pos < n_past; ++pos, p += v_row) {
      if (windowed && pos < keep_lo) continue;
      const int64_t row = kv_slot(il, 0, pos);
      v_row_put(v_cache_[size_t(il)].data(), row, kvw, hp.head_dim, v_es, p);
      if (ring_layer(il)) v_row_put(v_cache_[size_t(il)].data(), row + ring_, kvw, hp.head_dim, v_es, p);
    }
  }
  seq_past_[0] = n_past;
  window_floor_[0] = keep_lo;
}

}  // namespace edgellama
