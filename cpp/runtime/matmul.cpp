#include "edgellama/matmul.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "edgellama/act_reuse.h"
#include "edgellama/errors.h"
#include "edgellama/packed_layout.h"

namespace edgellama {

namespace {

// Largest activation row (any quantized format) for n values: 40 bytes per 32 values (ActQ8x32)
// exceeds 292 per 256 (block_q8_K).
size_t max_act_row_bytes(int64_t n) { return size_t((n + 31) / 32) * sizeof(ActQ8x32) + sizeof(block_q8_K); }

constexpr int64_t kTokenChunk = 256; // tokens per task: = the 16-row kernels' chunk (pp512 1 thread +1.5-2.5% over 128)
constexpr int64_t kMaxRowChunk = 256;
// Packed rows for a kernel set without a packed kernel: unpacked this many at a time into the
// task's scratch (in L2), each batch reused for every token of the task.
constexpr int64_t kUnpackRows = 2 * kPackRows;

// Bytes of one row of n values in any packable type, rounded up (Q8_0's 34 per 32 values is the most).
size_t max_packed_row_bytes(int64_t n) { return size_t((n + 31) / 32) * 34 + 64; }

// A weight row in the GGUF layout: the row itself, or (packed) a copy unpacked into buf.
const uint8_t* gguf_row(const WeightView& w, int64_t r, uint8_t* buf) {
  if (r >= w.packed_rows()) return w.row(r);
  const int64_t g = r / w.pack * w.pack;
  unpack_row(w.traits->type, w.row(g), w.row_bytes, int(r - g), buf);
  return buf;
}

// Rows [r0, r0 + nr) of w times nt activation rows (y[t * ys + r - r0]); r0 is a multiple of the
// packing group when w is packed. Packed groups go to the set's packed kernel, or are unpacked into
// buf (kUnpackRows rows) for its row kernel; rows past the last group are in the GGUF layout.
void gemm_rows(const KernelSet& ks, const WeightView& w, int64_t r0, int64_t nr, const uint8_t* a, size_t as,
               int64_t nt, float* y, size_t ys, uint8_t* buf) {
  const int type = int(w.traits->type);
  const GemmFn gemm = ks.gemm[type];
  const int64_t n_in = w.n_in(), end = r0 + nr, packed_end = std::min(end, w.packed_rows());
  int64_t r = r0;
  if (r < packed_end) {
    const bool few = ks.packed_max_tokens == 0 || nt <= ks.packed_max_tokens;
    const GemmFn packed = few ? ks.gemm_packed[type] : ks.gemm_packed_many[type];
    if (packed) {
      packed(n_in, w.row(r), w.row_bytes, packed_end - r, a, as, nt, y, ys);
      r = packed_end;
    }
    for (; r < packed_end; r += kUnpackRows) {
      const int64_t n = std::min(kUnpackRows, packed_end - r);
      for (int64_t g = 0; g < n; g += w.pack)
        unpack_group(w.traits->type, w.row(r + g), w.row_bytes, buf + size_t(g) * w.row_bytes);
      gemm(n_in, buf, w.row_bytes, n, a, as, nt, y + (r - r0), ys);
    }
    r = packed_end;
  }
  if (r < end) gemm(n_in, w.row(r), w.row_bytes, end - r, a, as, nt, y + (r - r0), ys);
}

// Matrices whose int8 activation error is amplified downstream get a residual second pass:
//   logits   : the logits projection (error goes straight into the logits)
//   kv       : K/V projections (their error is cached and seen by every later position through the
//              softmax); narrow with grouped-query attention, so nearly free
//   ffn_down : its input silu(gate)*up has the largest outliers of the layer; only in the first
//              kFfnDownFirst and last kFfnDownLast blocks (ffn_down_all: every block), see below
// Measured on SmolLM2-135M Q4_1 (30 blocks), fast vs exact over 445 positions of two English
// passages (tests/test_fast_path_accuracy.py), avx512 = avx2 / scalar kernels:
//   logits,kv                      top-1 ~96%,          KL 1.46e-3
//   logits,kv,ffn_down (default)   top-1 97.3%,         KL 1.18e-3  (ffn_down in blocks 0-1, 26-29)
//   logits,kv,ffn_down_all         top-1 97.1% / 96.0%, KL 1.05e-3  (the default until session 22)
//   + o                            top-1 98.0% / 97.5%, KL 9.4e-4
//   + o,q                          top-1 98.0% / 98.0%, KL 8.2e-4
//   + o,q,ffn_in (everything)      top-1 100%,          KL 2.8e-7  (but prefill does twice the work)
//   none                           top-1 94%,           KL 2.7e-3  (llama.cpp's own fast path: 96.2%, 2.5e-3)
// Why ffn_down only at the ends of the stack: its pass cost 26% of a TinyLlama block's MACs (prefill
// and multi-row decode are compute-bound: ~15% of pp512 and of a 4-stream server step), and its KL
// gain sits in few blocks. Per block on SmolLM2 (session 22; ffn_down residual in the listed blocks
// only, logits and K/V on): none 1.46e-3, blocks 0-14 1.44e-3, 15-29 1.27e-3, 29 alone 1.29e-3,
// 26-29 1.24e-3, 0-1 + 27-29 1.18e-3, 0-1 + 26-29 1.18e-3, 0-1 + 24-29 1.16e-3, all 1.05e-3. The last
// blocks' error goes nearly straight into the logits; the first blocks are where real models grow
// their massive activations. A per-token rule (the pass for tokens whose int8 error ||x - q(x)|| /
// ||x|| is above the median) gave 1.15e-3 for half the cost: the error is spread evenly over tokens
// (0.008-0.013 relative), so it saves less than the per-block rule. With 6 of 30 blocks (6 of 22 on
// TinyLlama) the fast path stays at 0.47x llama.cpp's KL (issue 10: <= 0.5x).
// Why not o (attn_output): it cost 9.5% of a TinyLlama layer's MACs for 10% of the KL; on real
// weights dropping it moved mean KL by 0-10% (SmolLM2 Q4_K_M 1.007e-3 -> 1.002e-3, Q6_K 1.09e-3 ->
// 1.17e-3, stories260K Q4_0 1.06e-4 -> 1.17e-4) while `none` is 3-5x.
// EDGELLAMA_RESIDUAL=comma list of logits,kv,ffn_down,ffn_down_all,o,q,ffn_in (or "none") overrides it.
// The policy is a function of the weight alone (role, block), never of the batch: a token's logits are
// the same whatever it was batched with.
constexpr int kFfnDownFirst = 2, kFfnDownLast = 4;

struct ResidualPolicy {
  bool logits = true, kv = true, ffn_down = true, ffn_down_all = false, o = false, q = false, ffn_in = false;
  ResidualPolicy() {
    const char* env = std::getenv("EDGELLAMA_RESIDUAL");
    if (!env) return;
    const std::string v = std::string(",") + env + ",";
    logits = v.find(",logits,") != std::string::npos;
    kv = v.find(",kv,") != std::string::npos;
    ffn_down_all = v.find(",ffn_down_all,") != std::string::npos;
    ffn_down = ffn_down_all || v.find(",ffn_down,") != std::string::npos;
    q = v.find(",q,") != std::string::npos;
    o = v.find(",o,") != std::string::npos;
    ffn_in = v.find(",ffn_in,") != std::string::npos;
  }
};

// Block `layer` of n_layers is among the first kFfnDownFirst or last kFfnDownLast (or its position is
// unknown: n_layers = 0, a weight outside a model).
bool at_stack_end(const WeightView& w) {
  return w.n_layers <= 0 || w.layer < kFfnDownFirst || w.layer >= w.n_layers - kFfnDownLast;
}

bool wants_residual(const WeightView& w) {
  static const ResidualPolicy p;
  switch (w.role) {
    case TensorRole::Output:
    case TensorRole::TokenEmbd: return p.logits;  // token_embd is only multiplied as the tied output
    case TensorRole::AttnK:
    case TensorRole::AttnV: return p.kv;
    case TensorRole::AttnQ: return p.q;
    case TensorRole::AttnOut: return p.o;
    case TensorRole::FfnGate:
    case TensorRole::FfnUp: return p.ffn_in;
    case TensorRole::FfnDown: return p.ffn_down_all || (p.ffn_down && at_stack_end(w));
    case TensorRole::Other: break;
  }
  return false;
}

// x - dequantize(a): the part of x the int8 activations missed.
void act_residual(ActFormat f, const float* x, const uint8_t* a, int64_t n, float* out) {
  if (f == ActFormat::Q8x32) {
    const ActQ8x32* b = reinterpret_cast<const ActQ8x32*>(a);
    for (int64_t i = 0; i < n; ++i) out[i] = x[i] - b[i / 32].d * float(b[i / 32].qs[i % 32]);
  } else {
    const block_q8_K* b = reinterpret_cast<const block_q8_K*>(a);
    for (int64_t i = 0; i < n; ++i) out[i] = x[i] - b[i / QK_K].d * float(b[i / QK_K].qs[i % QK_K]);
  }
}

void matmul_exact(const WeightView& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool,
                  MatmulScratch& scratch) {
  const int64_t n_in = w.n_in(), n_out = w.n_out();
  if (n_in > scratch.max_n_in || pool.size() > scratch.n_threads)
    scratch.reserve(std::max(pool.size(), scratch.n_threads), std::max(n_in, scratch.max_n_in),
                    std::max(n_tokens, scratch.max_tokens));
  // Rows are split into tasks; a thread dequantizes one weight row at a time into its own scratch
  // and reuses it for every token in the batch.
  const int64_t n_tasks = std::min<int64_t>(n_out, 8 * int64_t(pool.size()));
  pool.parallel_for(n_tasks, [&](int64_t task, int slot) {
    int64_t r0, r1;
    split_range(n_out, task, n_tasks, &r0, &r1);
    float* row = scratch.dequant_rows.data() + size_t(slot) * size_t(scratch.max_n_in);
    uint8_t* bytes = scratch.unpacked.data() + size_t(slot) * scratch.unpacked_per_slot;
    for (int64_t r = r0; r < r1; ++r) {
      w.traits->to_float(gguf_row(w, r, bytes), row, n_in);
      for (int64_t t = 0; t < n_tokens; ++t) y[t * n_out + r] = dot_f32(row, x + t * n_in, n_in);
    }
  });
}

}  // namespace

void MatmulScratch::reserve(int threads, int64_t n_in, int64_t tokens) {
  n_threads = std::max(threads, 1);
  max_n_in = std::max<int64_t>(n_in, 1);
  max_tokens = std::max<int64_t>(tokens, 1);
  dequant_rows.assign(size_t(n_threads) * size_t(max_n_in), 0.0f);
  // x2: the logits projection quantizes each token twice (main + residual).
  activations.assign(2 * size_t(max_tokens) * max_act_row_bytes(max_n_in), 0);
  residual.assign(size_t(n_threads) * size_t(max_n_in), 0.0f);
  tile_out.assign(size_t(n_threads) * size_t(kMaxRowChunk * 2 * kTokenChunk), 0.0f);
  unpacked_per_slot = size_t(kUnpackRows) * max_packed_row_bytes(max_n_in);
  unpacked.assign(size_t(n_threads) * unpacked_per_slot, 0);
}

void weight_row_to_float(const WeightView& w, int64_t r, float* out) {
  if (r >= w.packed_rows()) {
    w.traits->to_float(w.row(r), out, w.n_in());
    return;
  }
  std::vector<uint8_t> buf(w.row_bytes);
  w.traits->to_float(gguf_row(w, r, buf.data()), out, w.n_in());
}

float dot_f32(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int k = 0; k < 8; ++k) acc[k] += a[i + k] * b[i + k];
  }
  for (; i < n; ++i) acc[i % 8] += a[i] * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

void matmul(const WeightView& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool,
            MatmulScratch& scratch, MatmulPrecision precision, const KernelSet* kernels) {
  const MatmulOutput out{&w, y};
  matmul_shared_input(&out, 1, x, n_tokens, pool, scratch, precision, kernels);
}

void matmul_shared_input(const MatmulOutput* outs, int count, const float* x, int64_t n_tokens, ThreadPool& pool,
                         MatmulScratch& scratch, MatmulPrecision precision, const KernelSet* kernels) {
  if (n_tokens <= 0 || count <= 0) return;
  if (count > kMaxSharedInput) throw ArgumentError("matmul_shared_input: too many weights");
  const KernelSet& ks = kernels ? *kernels : active_kernels();
  const int64_t n_in = outs[0].w->n_in();
  const ActFormat fmt = act_format(outs[0].w->traits->type);
  // One shared activation buffer needs one activation format and one input width; otherwise (or on
  // the exact path, or without a kernel) each weight goes on its own.
  bool shared = precision == MatmulPrecision::Fast && fmt != ActFormat::None && n_in % act_block_size(fmt) == 0;
  for (int i = 0; shared && i < count; ++i) {
    const WeightView& w = *outs[i].w;
    shared = w.n_in() == n_in && act_format(w.traits->type) == fmt && ks.gemm[int(w.traits->type)] != nullptr;
  }
  if (!shared) {
    // One weight that cannot take the fast path: the exact one. Several: each on its own.
    if (count == 1)
      matmul_exact(*outs[0].w, x, n_tokens, outs[0].y, pool, scratch);
    else
      for (int i = 0; i < count; ++i) matmul_shared_input(&outs[i], 1, x, n_tokens, pool, scratch, precision, kernels);
    return;
  }

  // 1. Activations, once for all the weights, shared by all threads. With a residual pass (if any
  // weight wants one) each token has a main row and a residual row, adjacent.
  bool any_residual = false;
  bool residual[kMaxSharedInput];
  for (int i = 0; i < count; ++i) {
    residual[i] = fmt != ActFormat::F32 && wants_residual(*outs[i].w);
    any_residual = any_residual || residual[i];
  }
  const uint8_t* act;
  size_t act_stride;
  if (fmt == ActFormat::F32) {
    act = reinterpret_cast<const uint8_t*>(x);
    act_stride = size_t(n_in) * sizeof(float);
  } else {
    act_stride = act_row_bytes(fmt, n_in);
    if (scratch.activations.size() < 2 * size_t(n_tokens) * act_stride || pool.size() > scratch.n_threads ||
        n_in > scratch.max_n_in)
      scratch.reserve(std::max(pool.size(), scratch.n_threads), std::max(n_in, scratch.max_n_in),
                      std::max(n_tokens, scratch.max_tokens));
    uint8_t* buf = scratch.activations.data();
    const QuantizeActFn quantize = fmt == ActFormat::Q8x32 ? ks.quantize_q8x32 : ks.quantize_q8k;
    const size_t rows_per_token = any_residual ? 2 : 1;
    auto quantize_tokens = [&](int slot, int64_t t0, int64_t t1) {
      float* res = scratch.residual.data() + size_t(slot) * size_t(scratch.max_n_in);
      for (int64_t t = t0; t < t1; ++t) {
        uint8_t* row = buf + size_t(t) * rows_per_token * act_stride;
        quantize(x + t * n_in, row, n_in);
        if (any_residual) {
          act_residual(fmt, x + t * n_in, row, n_in, res);
          quantize(res, row + act_stride, n_in);
        }
      }
    };
    if (n_tokens >= 4 && pool.size() > 1) {
      const int64_t n_tasks = std::min<int64_t>(n_tokens / 2, 4 * int64_t(pool.size()));
      pool.parallel_for(n_tasks, [&](int64_t task, int slot) {
        int64_t t0, t1;
        split_range(n_tokens, task, n_tasks, &t0, &t1);
        quantize_tokens(slot, t0, t1);
      });
    } else {
      quantize_tokens(0, 0, n_tokens);
    }
    act = buf;
  }
  const size_t token_stride = any_residual ? 2 * act_stride : act_stride;

  // 2. Tasks = (weight, row chunk, token chunk) triples handed out dynamically by the pool, so both
  // cores stay busy even on 576-wide matrices and when a neighbour steals a core for a while; one
  // job covers all the weights (Q, K and V are one job in decode, not three).
  const int nth = pool.size();
  // Packed weights the set has no packed kernel for at this token count are unpacked per task: one
  // token chunk then, so that each group is unpacked once per call, not once per 64 tokens.
  bool unpacks = false;
  for (int i = 0; i < count; ++i) {
    const WeightView& w = *outs[i].w;
    const bool few = ks.packed_max_tokens == 0 || n_tokens <= ks.packed_max_tokens;
    unpacks = unpacks || (w.pack && !(few ? ks.gemm_packed : ks.gemm_packed_many)[int(w.traits->type)]);
  }
  const int64_t tc = unpacks ? n_tokens : std::min(n_tokens, kTokenChunk);
  const int64_t n_tc = (n_tokens + tc - 1) / tc;
  const int64_t want_row_chunks = nth == 1 ? 1 : std::max<int64_t>(1, (8 * nth + n_tc - 1) / n_tc);
  int64_t row_chunk[kMaxSharedInput], first_task[kMaxSharedInput + 1];
  first_task[0] = 0;
  for (int i = 0; i < count; ++i) {
    const int64_t n_out = outs[i].w->n_out();
    int64_t rc = (n_out + want_row_chunks - 1) / want_row_chunks;
    // whole groups of 16 rows: the AVX-512 kernels compute 16 rows per vector (AVX2 rows8: 8), and a
    // chunk of 36 rows would cost 48 rows of work there (a tail group repeats its last row)
    rc = std::min<int64_t>(std::max<int64_t>((rc + 15) / 16 * 16, 16), kMaxRowChunk);
    row_chunk[i] = rc;
    first_task[i + 1] = first_task[i] + (n_out + rc - 1) / rc * n_tc;
  }
  // One id for every task of this call: kernels may reuse their rewrite of these activations
  // across tasks (act_reuse.h).
  const uint64_t call_id = new_act_call_id();
  pool.parallel_for(first_task[count], [&](int64_t task, int slot) {
    const ActCallScope act_scope(call_id);
    int i = 0;
    while (task >= first_task[i + 1]) ++i;
    task -= first_task[i];
    const WeightView& w = *outs[i].w;
    float* y = outs[i].y;
    uint8_t* buf = scratch.unpacked.data() + size_t(slot) * scratch.unpacked_per_slot;
    const int64_t n_out = w.n_out(), rc = row_chunk[i];
    const int64_t r0 = (task / n_tc) * rc, t0 = (task % n_tc) * tc;
    const int64_t nr = std::min(rc, n_out - r0), nt = std::min(tc, n_tokens - t0);
    const uint8_t* a = act + size_t(t0) * token_stride;
    if (!residual[i]) {
      // Main rows only (every other row when the buffer also holds residual rows).
      gemm_rows(ks, w, r0, nr, a, token_stride, nt, y + t0 * n_out + r0, size_t(n_out), buf);
      return;
    }
    // Main and residual rows of a token are adjacent: one tiled pass computes both (at most
    // kTokenChunk tokens at a time: the size of the task's output scratch).
    float* tmp = scratch.tile_out.data() + size_t(slot) * size_t(kMaxRowChunk * 2 * kTokenChunk);
    for (int64_t s0 = 0; s0 < nt; s0 += kTokenChunk) {
      const int64_t ns = std::min(kTokenChunk, nt - s0);
      gemm_rows(ks, w, r0, nr, a + size_t(s0) * token_stride, act_stride, 2 * ns, tmp, size_t(nr), buf);
      for (int64_t t = 0; t < ns; ++t) {
        float* out = y + (t0 + s0 + t) * n_out + r0;
        const float* m = tmp + size_t(2 * t) * size_t(nr);
        const float* r = m + nr;
        for (int64_t k = 0; k < nr; ++k) out[k] = m[k] + r[k];
      }
    }
  });
}

}  // namespace edgellama
