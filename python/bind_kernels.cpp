// ISA dispatch and direct access to each ISA's kernels, for tests and micro-benchmarks.
//   isa() -> str                         the level matmul uses (EDGELLAMA_ISA or the best one)
//   available_isas() -> list[str]        levels this CPU can run
//   kernel_coverage(isa) -> {type: (gemm, packed)}  which computable weight types a set has kernels for
//   kernel_quantize_activation(isa, act_type, x) -> bytes     act_type: "q8_0"/"q8_1" (ActQ8x32) or "q8_K"
//   kernel_vec_dot(isa, weight_type, weight_bytes, x) -> float one row . x (x quantized by that isa)
//   kernel_gemm(isa, weight_type, weight_bytes, x[n_tokens, n_in]) -> y[n_tokens, n_rows]
//   kernel_matmul(weight_type, weight_bytes, x, n_threads, precision, isa, repeats, name, packed, n_layers)
//                                        -> (y, wall_seconds, thread_cpu_seconds); name / n_layers: the residual policy
//   kernel_attention(isa, q[n_tok, group, hd], k[n_pos, hd], v[n_pos, hd], n_keys0, scale) -> out like q
//                                        one fast-path attention tile; k/v float16 or float32
//   kernel_silu_mul(isa, g, u) -> g / (1 + exp(-g)) * u   the fast-path SwiGLU gate
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <vector>

#include "bindings.h"
#include "../cpp/kernels/scalar/gemm_rows8_ref.h"
#include "../cpp/runtime/kv_layout.h"
#include "edgellama/errors.h"
#include "edgellama/kernels.h"
#include "edgellama/matmul.h"
#include "edgellama/packed_layout.h"
#include "edgellama/thread_pool.h"
#include "edgellama/weight_arena.h"

using namespace edgellama;

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

const KernelSet& kernels_named(const std::string& isa) {
  const KernelSet* k = kernels_for(isa);
  if (!k) throw ArgumentError("ISA '" + isa + "' is not available here");
  return *k;
}

const TypeTraits& weight_traits(const py::object& type) {
  const TypeTraits* t = nullptr;
  if (py::isinstance<py::int_>(type)) {
    t = find_type_traits(type.cast<uint32_t>());
  } else {
    const std::string name = py::str(type);
    size_t n = 0;
    const TypeTraits* all = all_type_traits(&n);
    for (size_t i = 0; i < n; ++i)
      if (name == all[i].name) t = &all[i];
  }
  if (!t) throw ArgumentError("unknown tensor type " + std::string(py::str(type)));
  return *t;
}

struct Prepared {
  const TypeTraits* t;
  ActFormat fmt;
  int64_t n_in, n_rows, n_tokens;
  size_t row_bytes, act_stride;
  std::vector<uint8_t> act;
};

// Validates shapes and quantizes x with the given kernels.
Prepared prepare(const KernelSet& ks, const py::object& type, const py::bytes& wbytes, const FloatArray& x) {
  Prepared p;
  p.t = &weight_traits(type);
  p.fmt = act_format(p.t->type);
  if (p.fmt == ActFormat::None || !ks.gemm[int(p.t->type)])
    throw ArgumentError(std::string("no kernel for weight type ") + p.t->name);
  if (x.ndim() != 2) throw ArgumentError("x must be 2-D [n_tokens, n_in]");
  p.n_tokens = x.shape(0);
  p.n_in = x.shape(1);
  if (p.n_in <= 0 || !row_size_checked(*p.t, p.n_in, &p.row_bytes) || p.n_in % act_block_size(p.fmt) != 0)
    throw ArgumentError("n_in " + std::to_string(p.n_in) + " is not a multiple of the block size");
  const std::string_view w = wbytes;
  if (w.size() % p.row_bytes != 0) throw ArgumentError("weight bytes are not a whole number of rows");
  p.n_rows = int64_t(w.size() / p.row_bytes);
  if (p.fmt == ActFormat::F32) {
    p.act_stride = size_t(p.n_in) * 4;
    p.act.assign(reinterpret_cast<const uint8_t*>(x.data()),
                 reinterpret_cast<const uint8_t*>(x.data()) + size_t(p.n_tokens) * p.act_stride);
  } else {
    p.act_stride = act_row_bytes(p.fmt, p.n_in);
    p.act.assign(size_t(p.n_tokens) * p.act_stride, 0);
    const QuantizeActFn q = p.fmt == ActFormat::Q8x32 ? ks.quantize_q8x32 : ks.quantize_q8k;
    for (int64_t t = 0; t < p.n_tokens; ++t) q(x.data() + t * p.n_in, p.act.data() + size_t(t) * p.act_stride, p.n_in);
  }
  return p;
}

py::array_t<float> gemm_py(const std::string& isa, const py::object& type, const py::bytes& wbytes, FloatArray x) {
  const KernelSet& ks = kernels_named(isa);
  Prepared p = prepare(ks, type, wbytes, x);
  py::array_t<float> y({p.n_tokens, p.n_rows});
  const uint8_t* w = reinterpret_cast<const uint8_t*>(std::string_view(wbytes).data());
  float* out = y.mutable_data();
  {
    py::gil_scoped_release release;
    ks.gemm[int(p.t->type)](p.n_in, w, p.row_bytes, p.n_rows, p.act.data(), p.act_stride, p.n_tokens, out,
                            size_t(p.n_rows));
  }
  return y;
}

// A WeightView over Python bytes holding whole rows of n_in values of `type` (bytes must outlive it).
// n_layers > 0 places a "blk.N." weight in a stack of that many blocks, as a model does at load.
WeightView weight_view(const py::object& type, const py::bytes& wbytes, int64_t n_in, const std::string& name,
                       int n_layers = 0) {
  const TypeTraits& t = weight_traits(type);
  size_t row_bytes = 0;
  if (n_in <= 0 || !row_size_checked(t, n_in, &row_bytes)) throw ArgumentError("bad n_in for this type");
  const std::string_view wv = wbytes;
  if (wv.size() % row_bytes != 0) throw ArgumentError("weight bytes are not a whole number of rows");
  WeightView w;
  w.name = name;
  w.role = edgellama::tensor_role_from_name(name);  // the name picks the residual policy, as in a model
  if (n_layers > 0) {
    int layer = -1;
    if (std::sscanf(name.c_str(), "blk.%d.", &layer) != 1 || layer < 0 || layer >= n_layers)
      throw ArgumentError("n_layers needs a name 'blk.N.…' with 0 <= N < n_layers, got '" + name + "'");
    w.layer = layer;
    w.n_layers = n_layers;
  }
  w.traits = &t;
  w.ne[0] = n_in;
  w.ne[1] = int64_t(wv.size() / row_bytes);
  w.data = reinterpret_cast<const uint8_t*>(wv.data());
  w.row_bytes = row_bytes;
  return w;
}

// w's rows packed into *buf (packed_layout.h, as Model does at load); w then points there.
// In a WeightArena, as a loaded model keeps its packed weights (huge pages where the OS gives them),
// so that kernel timings see the memory decode sees.
std::unique_ptr<WeightArena> pack_view(WeightView* w) {
  const GGMLType t = w->traits->type;
  if (!packable(t)) throw ArgumentError(std::string("type ") + w->traits->name + " has no packed layout");
  const size_t total = size_t(w->n_out()) * w->row_bytes, group = size_t(kPackRows) * w->row_bytes;
  auto buf = std::make_unique<WeightArena>(total);
  std::memcpy(buf->data(), w->data, total);  // tail rows stay as they are
  for (int64_t g = 0; g < w->n_out() / kPackRows; ++g) pack_group(t, w->data + size_t(g) * group, w->row_bytes, buf->data() + size_t(g) * group);
  w->data = buf->data();
  w->pack = kPackRows;
  return buf;
}

// Read bandwidth probe: n_threads threads each sum their share of a buffer of n_bytes (16-byte
// loads, 4 independent accumulators), repeated; returns the best GB/s (the roofline for decode).
// The buffer is a WeightArena, the memory a model's packed weights live in (huge pages where the OS
// gives them). Zen 4 VM, quiet (load < 0.5): 30.5 / 32.5 GB/s with 1 / 2 threads; 24.7 / 31.7 from 4 KiB pages.
double read_bandwidth(size_t n_bytes, int n_threads, int repeats) {
  const size_t n = n_bytes / sizeof(uint64_t) / 8 * 8;
  WeightArena arena(n * sizeof(uint64_t));
  uint64_t* const buf = reinterpret_cast<uint64_t*>(arena.data());
  for (size_t i = 0; i < n; ++i) buf[i] = i;  // touch every page
  ThreadPool pool(n_threads);
  std::vector<uint64_t> sink(size_t(pool.size()) * 8);
  double best = 0.0;
  for (int r = 0; r < std::max(repeats, 1); ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.parallel_for(pool.size(), [&](int64_t ith, int) {
      int64_t b, e;
      split_range(int64_t(n / 8), ith, pool.size(), &b, &e);
      uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (int64_t i = b * 8; i < e * 8; i += 8) {
        s0 += buf[size_t(i)] ^ buf[size_t(i) + 4];
        s1 += buf[size_t(i) + 1] ^ buf[size_t(i) + 5];
        s2 += buf[size_t(i) + 2] ^ buf[size_t(i) + 6];
        s3 += buf[size_t(i) + 3] ^ buf[size_t(i) + 7];
      }
      sink[size_t(ith) * 8] = s0 + s1 + s2 + s3;
    });
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, double(n * sizeof(uint64_t)) / dt / 1e9);
  }
  return best;
}

py::array_t<float> attention_py(const std::string& isa, FloatArray q, const py::array& k, const py::array& v,
                                int64_t n_keys0, float scale, float softcap, int64_t window) {
  const KernelSet& ks = kernels_named(isa);
  const AttnTileFn tile = ks.attn_tile ? ks.attn_tile : kScalarKernels.attn_tile;  // as the forward pass does
  if (q.ndim() != 3) throw ArgumentError("q must be 3-D [n_tok, group, head_dim]");
  const int64_t n_tok = q.shape(0), group = q.shape(1), hd = q.shape(2);
  if (n_tok <= 0 || group <= 0 || hd <= 0) throw ArgumentError("empty q");
  if (isa != "scalar" && hd % 8 != 0) throw ArgumentError("SIMD attention kernels need head_dim % 8 == 0");
  if (n_keys0 < 1) throw ArgumentError("n_keys0 must be >= 1");
  if (!(softcap >= 0) || window < 0) throw ArgumentError("softcap and window must be >= 0");
  auto check_kv = [&](const py::array& x, const char* what) {
    if (x.ndim() != 2 || x.shape(1) != hd || x.shape(0) < n_keys0 + n_tok - 1)
      throw ArgumentError(std::string(what) + " must be [>= n_keys0 + n_tok - 1, head_dim]");
    if (!(x.flags() & py::array::c_style)) throw ArgumentError(std::string(what) + " must be C-contiguous");
    if (x.dtype().is(py::dtype::of<float>())) return false;
    if (x.dtype().kind() == 'f' && x.dtype().itemsize() == 2) return true;
    throw ArgumentError(std::string(what) + " must be float16 or float32");
  };
  const bool k16 = check_kv(k, "k"), v16 = check_kv(v, "v");
  py::array_t<float> out({n_tok, group, hd});
  std::vector<float> scratch(attn_scratch_floats(hd, n_tok * group));
  AttnTileArgs a;
  a.head_dim = hd;
  a.n_tok = n_tok;
  a.group = group;
  a.q = q.data();
  a.out = out.mutable_data();
  a.tok_stride = group * hd;
  a.n_keys0 = n_keys0;
  // K in the cache's block layout (k_cache_index, kv_width = head_dim); the unused slots of the last
  // block hold NaN bytes, as a cache may hold anything past its last position
  const size_t k_es = k16 ? 2 : 4;
  const int64_t k_rows = k.shape(0);
  std::vector<uint8_t> k_blocks(size_t(whole_attn_blocks(k_rows) * hd) * k_es, 0xFF);
  for (int64_t p = 0; p < k_rows; ++p)
    k_row_put(k_blocks.data(), p, hd, k_es, static_cast<const uint8_t*>(k.data()) + size_t(p * hd) * k_es);
  a.k = k_blocks.data();
  // V likewise (v_cache_index with one head: whole blocks of position-major rows, NaN padding)
  const size_t v_es = v16 ? 2 : 4;
  std::vector<uint8_t> v_blocks(size_t(whole_attn_blocks(v.shape(0)) * hd) * v_es, 0xFF);
  for (int64_t p = 0; p < v.shape(0); ++p)
    v_row_put(v_blocks.data(), p, hd, hd, v_es, static_cast<const uint8_t*>(v.data()) + size_t(p * hd) * v_es);
  a.v = v_blocks.data();
  a.k_block_stride = size_t(hd * kAttnBlock) * k_es;
  a.v_block_stride = size_t(hd * kAttnBlock) * v_es;
  a.k_f16 = k16;
  a.v_f16 = v16;
  a.scale = scale;
  a.softcap = softcap;
  a.window = window;
  a.scratch = scratch.data();
  {
    py::gil_scoped_release release;
    tile(a);
  }
  return out;
}

}  // namespace

void bind_kernels(py::module_& m) {
  // Resolve the dispatch now: a bad EDGELLAMA_ISA is an import error with a clear message.
  active_kernels();
  m.def("isa", [] { return std::string(active_kernels().name); });
  m.def("available_isas", [] { return available_isas(); });
  // Which weight types a kernel set computes: {type name: (has gemm, has packed gemm)} for every type
  // the trait table can compute with (to_float != nullptr); tests check that no such type falls back
  // silently to the exact path on any set.
  m.def("kernel_coverage", [](const std::string& isa) {
    const KernelSet& ks = kernels_named(isa);
    size_t n = 0;
    const TypeTraits* all = all_type_traits(&n);
    py::dict out;
    for (size_t i = 0; i < n; ++i) {
      if (all[i].to_float == nullptr) continue;
      const int id = int(all[i].type);
      const bool in_range = id >= 0 && id < kMaxTypeId;
      out[py::str(all[i].name)] = py::make_tuple(in_range && ks.gemm[id] != nullptr, in_range && ks.gemm_packed[id] != nullptr);
    }
    return out;
  }, py::arg("isa"));

  m.def(
      "kernel_quantize_activation",
      [](const std::string& isa, const std::string& act_type, FloatArray x) {
        const KernelSet& ks = kernels_named(isa);
        ActFormat f;
        if (act_type == "q8_0" || act_type == "q8_1" || act_type == "Q8_0" || act_type == "Q8_1")
          f = ActFormat::Q8x32;
        else if (act_type == "q8_K" || act_type == "q8_k" || act_type == "Q8_K")
          f = ActFormat::Q8K;
        else
          throw ArgumentError("act_type must be q8_0, q8_1 or q8_K, got '" + act_type + "'");
        const int64_t n = x.size();
        if (n % act_block_size(f) != 0)
          throw ArgumentError("length " + std::to_string(n) + " is not a multiple of " +
                              std::to_string(act_block_size(f)));
        std::string out(act_row_bytes(f, n), '\0');
        (f == ActFormat::Q8x32 ? ks.quantize_q8x32 : ks.quantize_q8k)(x.data(), out.data(), n);
        return py::bytes(out);
      },
      py::arg("isa"), py::arg("act_type"), py::arg("x"));

  m.def(
      "kernel_vec_dot",
      [](const std::string& isa, const py::object& type, const py::bytes& w, FloatArray x) {
        FloatArray x2 = x.reshape({py::ssize_t(1), py::ssize_t(x.size())});
        py::array_t<float> y = gemm_py(isa, type, w, x2);
        if (y.size() != 1) throw ArgumentError("kernel_vec_dot: weight_bytes must hold exactly one row");
        return y.at(0, 0);
      },
      py::arg("isa"), py::arg("weight_type"), py::arg("weight_bytes"), py::arg("activations"));

  m.def(
      "read_bandwidth",
      [](size_t n_bytes, int n_threads, int repeats) {
        py::gil_scoped_release release;
        return read_bandwidth(n_bytes, n_threads, repeats);
      },
      py::arg("n_bytes") = size_t(512) << 20, py::arg("n_threads") = 1, py::arg("repeats") = 5,
      "Best read bandwidth in GB/s over `repeats` passes of n_threads threads over an n_bytes buffer.");

  m.def("kernel_attention", &attention_py, py::arg("isa"), py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("n_keys0"), py::arg("scale"), py::arg("softcap") = 0.0f, py::arg("window") = 0);

  m.def(
      "kernel_silu_mul",
      [](const std::string& isa, FloatArray g, FloatArray u) {
        const KernelSet& ks = kernels_named(isa);
        if (g.ndim() != 1 || u.ndim() != 1 || g.size() != u.size()) throw ArgumentError("g and u: 1-D, same length");
        const SiluMulFn f = ks.silu_mul ? ks.silu_mul : kScalarKernels.silu_mul;
        py::array_t<float> out(g.size());
        std::copy(g.data(), g.data() + g.size(), out.mutable_data());
        f(out.mutable_data(), u.data(), g.size());
        return out;
      },
      py::arg("isa"), py::arg("g"), py::arg("u"));

  m.def(
      "kernel_gemm_rows8_ref",
      [](const py::object& type, const py::bytes& wbytes, FloatArray x) {
        // Scalar reference of the AVX2 rows8 arithmetic (activations quantized by the scalar kernels).
        Prepared p = prepare(kScalarKernels, type, wbytes, x);
        const GemmRefFn f = gemm_rows8_ref(p.t->type);
        if (!f) throw ArgumentError(std::string("no rows8 reference for ") + p.t->name);
        py::array_t<float> y({p.n_tokens, p.n_rows});
        f(p.n_in, reinterpret_cast<const uint8_t*>(std::string_view(wbytes).data()), p.row_bytes, p.n_rows, p.act.data(),
          p.act_stride, p.n_tokens, y.mutable_data(), size_t(p.n_rows));
        return y;
      },
      py::arg("weight_type"), py::arg("weight_bytes"), py::arg("x"));

  m.def("kernel_gemm", &gemm_py, py::arg("isa"), py::arg("weight_type"), py::arg("weight_bytes"), py::arg("x"));

  m.def(
      "kernel_matmul",
      [](const py::object& type, const py::bytes& wbytes, FloatArray x, int n_threads, const std::string& precision,
         const std::string& isa, int repeats, const std::string& name, bool packed, int n_layers) {
        if (x.ndim() != 2) throw ArgumentError("x must be 2-D [n_tokens, n_in]");
        const int64_t n_tokens = x.shape(0), n_in = x.shape(1);
        WeightView w = weight_view(type, wbytes, n_in, name, n_layers);
        std::unique_ptr<WeightArena> packed_copy;
        if (packed) packed_copy = pack_view(&w);
        const KernelSet* ks = isa.empty() ? &active_kernels() : &kernels_named(isa);
        const MatmulPrecision prec = precision == "exact" ? MatmulPrecision::Exact : MatmulPrecision::Fast;
        if (precision != "exact" && precision != "fast") throw ArgumentError("precision must be 'fast' or 'exact'");
        py::array_t<float> y({n_tokens, w.ne[1]});
        float* out = y.mutable_data();
        std::vector<double> times, cpu_times;  // wall, and CPU time of the calling thread
        {
          py::gil_scoped_release release;
          ThreadPool pool(n_threads > 0 ? n_threads : physical_core_count());
          MatmulScratch scratch;
          scratch.reserve(pool.size(), n_in, n_tokens);
          for (int i = 0; i < std::max(repeats, 1); ++i) {
            timespec c0, c1;
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
            const auto t0 = std::chrono::steady_clock::now();
            matmul(w, x.data(), n_tokens, out, pool, scratch, prec, ks);
            times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
            cpu_times.push_back(double(c1.tv_sec - c0.tv_sec) + 1e-9 * double(c1.tv_nsec - c0.tv_nsec));
          }
        }
        return py::make_tuple(y, times, cpu_times);
      },
      py::arg("weight_type"), py::arg("weight_bytes"), py::arg("x"), py::arg("n_threads") = 1,
      py::arg("precision") = "fast", py::arg("isa") = "", py::arg("repeats") = 1,
      py::arg("name") = "kernel_matmul", py::arg("packed") = false, py::arg("n_layers") = 0);

  m.def(
      "kernel_pack_rows",
      [](const py::object& type, const py::bytes& wbytes, int64_t n_in) {
        WeightView w = weight_view(type, wbytes, n_in, "w");
        const size_t total = size_t(w.n_out()) * w.row_bytes;
        const std::unique_ptr<WeightArena> packed = pack_view(&w);
        return py::bytes(reinterpret_cast<const char*>(packed->data()), total);
      },
      py::arg("weight_type"), py::arg("weight_bytes"), py::arg("n_in"),
      "The rows in the packed layout the model uses at load (edgellama/packed_layout.h).");

  // Several weights on one input through matmul_shared_input (tests compare with kernel_matmul).
  m.def(
      "kernel_matmul_shared",
      [](const std::vector<std::tuple<py::object, py::bytes, std::string>>& weights, FloatArray x, int n_threads) {
        if (x.ndim() != 2) throw ArgumentError("x must be 2-D [n_tokens, n_in]");
        if (weights.empty() || weights.size() > size_t(kMaxSharedInput))
          throw ArgumentError("1.." + std::to_string(kMaxSharedInput) + " weights");
        const int64_t n_tokens = x.shape(0), n_in = x.shape(1);
        std::vector<WeightView> views;
        std::vector<py::array_t<float>> ys;
        std::vector<MatmulOutput> outs;
        for (const auto& [type, wbytes, name] : weights) {
          views.push_back(weight_view(type, wbytes, n_in, name));
          ys.emplace_back(std::vector<py::ssize_t>{n_tokens, views.back().ne[1]});
        }
        for (size_t i = 0; i < views.size(); ++i) outs.push_back({&views[i], ys[i].mutable_data()});
        {
          py::gil_scoped_release release;
          ThreadPool pool(n_threads > 0 ? n_threads : physical_core_count());
          MatmulScratch scratch;
          scratch.reserve(pool.size(), n_in, n_tokens);
          matmul_shared_input(outs.data(), int(outs.size()), x.data(), n_tokens, pool, scratch, MatmulPrecision::Fast);
        }
        return ys;
      },
      py::arg("weights"), py::arg("x"), py::arg("n_threads") = 1);
}
