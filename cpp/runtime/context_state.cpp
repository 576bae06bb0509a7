// Saving and restoring a Context's KV cache (llama-cpp-python's save_state/load_state and its
// prompt caches). Layout, all little-endian host order (a state is not portable across machines):
// Sequence 0 only (the single-sequence API; the server's other slots are not saved).
//   "EDGEKV01"  int64 n_layer  int64 kv_width  int32 type_k  int32 type_v  int64 n_past
//   then per layer: n_past K rows, n_past V rows (each row kv_width values in the cache's type).
// Only the first n_past rows are stored, so a state is as large as the prompt, not as n_ctx.
#include <cstring>
#include <string>

#include "edgellama/context.h"
#include "edgellama/errors.h"

namespace edgellama {

namespace {

constexpr char kMagic[8] = {'E', 'D', 'G', 'E', 'K', 'V', '0', '1'};

struct StateHeader {
  char magic[8];
  int64_t n_layer;
  int64_t kv_width;
  int32_t type_k;
  int32_t type_v;
  int64_t n_past;
};

size_t elem_size(KVType t) { return t == KVType::F16 ? 2 : 4; }

}  // namespace

size_t Context::state_size() const {
  const HParams& hp = model_->hparams();
  const size_t rows = size_t(seq_past_[0]) * size_t(hp.kv_width());
  return sizeof(StateHeader) + size_t(hp.n_layer) * rows * (elem_size(params_.type_k) + elem_size(params_.type_v));
}

void Context::save_state(uint8_t* out, size_t size) const {
  if (size < state_size())
    throw ArgumentError("save_state: buffer of " + std::to_string(size) + " bytes, need " +
                        std::to_string(state_size()));
  const HParams& hp = model_->hparams();
  StateHeader h{};
  std::memcpy(h.magic, kMagic, sizeof kMagic);
  h.n_layer = hp.n_layer;
  h.kv_width = hp.kv_width();
  h.type_k = int32_t(params_.type_k);
  h.type_v = int32_t(params_.type_v);
  h.n_past = seq_past_[0];
  std::memcpy(out, &h, sizeof h);
  uint8_t* p = out + sizeof h;
  const size_t k_bytes = size_t(seq_past_[0]) * size_t(hp.kv_width()) * elem_size(params_.type_k);
  const size_t v_bytes = size_t(seq_past_[0]) * size_t(hp.kv_width()) * elem_size(params_.type_v);
  for (int64_t il = 0; il < hp.n_layer; ++il) {
    std::memcpy(p, k_cache_[size_t(il)].data(), k_bytes);
    p += k_bytes;
    std::memcpy(p, v_cache_[size_t(il)].data(), v_bytes);
    p += v_bytes;
  }
}

void Context::load_state(const uint8_t* data, size_t size) {
  StateHeader h{};
  if (size < sizeof h) throw ArgumentError("load_state: " + std::to_string(size) + " bytes is too short for a state");
  std::memcpy(&h, data, sizeof h);
  if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0)
    throw ArgumentError("load_state: not an edgellama KV state (bad magic)");
  const HParams& hp = model_->hparams();
  if (h.n_layer != hp.n_layer || h.kv_width != hp.kv_width())
    throw ArgumentError("load_state: the state is for a model with " + std::to_string(h.n_layer) + " layers x " +
                        std::to_string(h.kv_width) + " KV width, this one has " + std::to_string(hp.n_layer) +
                        " x " + std::to_string(hp.kv_width()));
  if (h.type_k != int32_t(params_.type_k) || h.type_v != int32_t(params_.type_v))
    throw ArgumentError("load_state: the state's KV cache types (type_k/type_v) differ from this context's");
  if (h.n_past < 0 || h.n_past > params_.n_ctx)
    throw ArgumentError("load_state: the state holds " + std::to_string(h.n_past) + " tokens, more than n_ctx " +
                        std::to_string(params_.n_ctx));
  const size_t k_bytes = size_t(h.n_past) * size_t(hp.kv_width()) * elem_size(params_.type_k);
  const size_t v_bytes = size_t(h.n_past) * size_t(hp.kv_width()) * elem_size(params_.type_v);
  if (size != sizeof h + size_t(hp.n_layer) * (k_bytes + v_bytes))
    throw ArgumentError("load_state: the state has " + std::to_string(size) + " bytes, expected " +
                        std::to_string(sizeof h + size_t(hp.n_layer) * (k_bytes + v_bytes)));
  const uint8_t* p = data + sizeof h;
  for (int64_t il = 0; il < hp.n_layer; ++il) {
    std::memcpy(k_cache_[size_t(il)].data(), p, k_bytes);
    p += k_bytes;
    std::memcpy(v_cache_[size_t(il)].data(), p, v_bytes);
    p += v_bytes;
  }
  seq_past_[0] = h.n_past;
}

}  // namespace edgellama
