// Context::decode_hidden: the forward pass of decode() that stops after the final norm, for
// embeddings. forward_chunk writes each chunk's normed rows to hidden_out_ and skips the output
// projection (the largest matmul of a small model) because no logits buffer is passed.
#include "edgellama/context.h"
#include "edgellama/errors.h"

namespace edgellama {

void Context::decode_hidden(const int32_t* tokens, int64_t n, float* hidden) {
  if (!hidden && n > 0) throw ArgumentError("decode_hidden: no output buffer");
  // Reset the output pointer however decode() leaves (it throws on a bad id or a full context).
  struct Reset {
    float*& p;
    ~Reset() { p = nullptr; }
  } reset{hidden_out_};
  hidden_out_ = hidden;
  decode(tokens, n, nullptr, false);
}

void Context::decode_batch_hidden(const BatchView& b, float* hidden) {
  if (!hidden && b.n > 0) throw ArgumentError("decode_batch_hidden: no output buffer");
  struct Reset {
    float*& p;
    ~Reset() { p = nullptr; }
  } reset{hidden_out_};
  hidden_out_ = hidden;
  BatchView rows = b;
  rows.want_logits = nullptr;  // no output projection
  decode_batch(rows, nullptr);
}

}  // namespace edgellama
