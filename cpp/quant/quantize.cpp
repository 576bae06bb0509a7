// Reference rounding of the float and legacy 32-value types (bit-exact with gguf-py), the generic
// scale searches, the per-type search dispatcher and the threaded matrix driver.
#include "quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "edgellama/errors.h"
#include "edgellama/fp16.h"
#include "edgellama/quant_blocks.h"
#include "edgellama/thread_pool.h"

namespace edgellama {

// ---------------------------------------------------------------------------------------------
// NumPy cast emulation. gguf-py converts float32 -> uint8/int8 with astype(), which on the
// platforms we support goes through a 32-bit integer conversion and keeps the low byte; NaN, inf
// and values outside the int32 range give 0. Writing the same thing keeps odd inputs bit-exact
// and avoids C++'s undefined float -> integer overflow.
// ---------------------------------------------------------------------------------------------
namespace {

inline int32_t np_to_i32(float v) {
  if (!(v > -2147483648.0f && v < 2147483648.0f)) return 0;
  return int32_t(v);  // truncates
}
inline uint8_t np_to_u8(float v) { return uint8_t(uint32_t(np_to_i32(v)) & 0xFF); }
inline int8_t np_to_i8(float v) { return int8_t(uint8_t(uint32_t(np_to_i32(v)) & 0xFF)); }

// gguf.quants.np_roundf: round half away from zero, written as floor(a) + floor(2 (a - floor(a))).
inline float np_roundf(float n) {
  const float a = std::fabs(n);
  const float fl = std::floor(a);
  const float b = fl + std::floor(2.0f * (a - fl));
  if (n > 0) return b;
  if (n < 0) return -b;
  return n == n ? 0.0f * b : n;  // sign(0) = 0; NaN stays NaN
}

inline float safe_inv(float d) { return d == 0.0f ? 0.0f : 1.0f / d; }

}  // namespace

void quantize_row_f32_ref(const float* x, void* y, int64_t n) { std::memcpy(y, x, size_t(n) * sizeof(float)); }

void quantize_row_f16_ref(const float* x, void* y, int64_t n) {
  uint16_t* o = static_cast<uint16_t*>(y);
  for (int64_t i = 0; i < n; ++i) o[i] = float_to_fp16(x[i]);
}

void quantize_row_bf16_ref(const float* x, void* y, int64_t n) {
  uint16_t* o = static_cast<uint16_t*>(y);
  for (int64_t i = 0; i < n; ++i) o[i] = float_to_bf16(x[i]);
}

// Signed absolute maximum: the first value whose |x| is largest (NumPy argmax picks the first).
static float signed_absmax(const float* x, int n) {
  float amax = std::fabs(x[0]), v = x[0];
  for (int j = 1; j < n; ++j) {
    const float a = std::fabs(x[j]);
    if (a > amax) {
      amax = a;
      v = x[j];
    }
  }
  return v;
}

void quantize_row_q4_0_ref(const float* x, void* y, int64_t n) {
  block_q4_0* b = static_cast<block_q4_0*>(y);
  for (int64_t i = 0; i < n / QK4_0; ++i, x += QK4_0) {
    const float max = signed_absmax(x, QK4_0);
    const float d = max / -8.0f;
    const float id = safe_inv(d);
    b[i].d = float_to_fp16(d);
    uint8_t q[QK4_0];
    for (int j = 0; j < QK4_0; ++j) q[j] = std::min<uint8_t>(15, np_to_u8(std::trunc(x[j] * id + 8.5f)));
    for (int j = 0; j < QK4_0 / 2; ++j) b[i].qs[j] = uint8_t(q[j] | (q[j + 16] << 4));
  }
}

// Smallest and largest value of a block (the offset and range of the Q4_1 / Q5_1 grids).
static void block_min_max(const float* x, int n, float* mn, float* mx) {
  *mn = *mx = x[0];
  for (int j = 1; j < n; ++j) {
    *mn = std::min(*mn, x[j]);
    *mx = std::max(*mx, x[j]);
  }
}

void quantize_row_q4_1_ref(const float* x, void* y, int64_t n) {
  block_q4_1* b = static_cast<block_q4_1*>(y);
  for (int64_t i = 0; i < n / QK4_1; ++i, x += QK4_1) {
    float mn, mx;
    block_min_max(x, QK4_1, &mn, &mx);
    const float d = (mx - mn) / 15.0f;
    const float id = safe_inv(d);
    b[i].d = float_to_fp16(d);
    b[i].m = float_to_fp16(mn);
    uint8_t q[QK4_1];
    for (int j = 0; j < QK4_1; ++j) q[j] = std::min<uint8_t>(15, np_to_u8(std::trunc((x[j] - mn) * id + 0.5f)));
    for (int j = 0; j < QK4_1 / 2; ++j) b[i].qs[j] = uint8_t(q[j] | (q[j + 16] << 4));
  }
}

static void pack_q5(const uint8_t* q, uint8_t* qh, uint8_t* qs) {
  uint32_t h = 0;
  for (int j = 0; j < 32; ++j) h |= uint32_t((q[j] >> 4) & 1) << j;
  std::memcpy(qh, &h, 4);
  for (int j = 0; j < 16; ++j) qs[j] = uint8_t((q[j] & 0xF) | ((q[j + 16] & 0xF) << 4));
}

void quantize_row_q5_0_ref(const float* x, void* y, int64_t n) {
  block_q5_0* b = static_cast<block_q5_0*>(y);
  for (int64_t i = 0; i < n / QK5_0; ++i, x += QK5_0) {
    const float max = signed_absmax(x, QK5_0);
    const float d = max / -16.0f;
    const float id = safe_inv(d);
    b[i].d = float_to_fp16(d);
    uint8_t q[QK5_0];
    for (int j = 0; j < QK5_0; ++j) q[j] = std::min<uint8_t>(31, np_to_u8(std::trunc(x[j] * id + 16.5f)));
    pack_q5(q, b[i].qh, b[i].qs);
  }
}

void quantize_row_q5_1_ref(const float* x, void* y, int64_t n) {
  block_q5_1* b = static_cast<block_q5_1*>(y);
  for (int64_t i = 0; i < n / QK5_1; ++i, x += QK5_1) {
    float mn, mx;
    block_min_max(x, QK5_1, &mn, &mx);
    const float d = (mx - mn) / 31.0f;
    const float id = safe_inv(d);
    b[i].d = float_to_fp16(d);
    b[i].m = float_to_fp16(mn);
    uint8_t q[QK5_1];
    for (int j = 0; j < QK5_1; ++j) q[j] = std::min<uint8_t>(31, np_to_u8(std::trunc((x[j] - mn) * id + 0.5f)));
    pack_q5(q, b[i].qh, b[i].qs);
  }
}

void quantize_row_q8_0_ref(const float* x, void* y, int64_t n) {
  block_q8_0* b = static_cast<block_q8_0*>(y);
  for (int64_t i = 0; i < n / QK8_0; ++i, x += QK8_0) {
    float amax = 0.0f;
    for (int j = 0; j < QK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = safe_inv(d);
    b[i].d = float_to_fp16(d);
    for (int j = 0; j < QK8_0; ++j) b[i].qs[j] = np_to_i8(np_roundf(x[j] * id));
  }
}

void quantize_row_q8_1_ref(const float* x, void* y, int64_t n) {
  block_q8_1* b = static_cast<block_q8_1*>(y);
  for (int64_t i = 0; i < n / QK8_1; ++i, x += QK8_1) {
    float amax = 0.0f;
    for (int j = 0; j < QK8_1; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = safe_inv(d);
    int sum = 0;
    for (int j = 0; j < QK8_1; ++j) {
      b[i].qs[j] = np_to_i8(np_roundf(x[j] * id));
      sum += b[i].qs[j];
    }
    b[i].d = float_to_fp16(d);
    b[i].s = float_to_fp16(float(sum) * d);
  }
}

// ---------------------------------------------------------------------------------------------
// Generic searches
// ---------------------------------------------------------------------------------------------
namespace detail {

void block_weights(int n, const float* importance, float* w) {
  if (importance) {
    double sum = 0;
    for (int i = 0; i < n; ++i) sum += importance[i];
    if (sum > 0) {
      // A small floor keeps zero-importance values from being ignored completely (and the least
      // squares systems regular) without changing the objective measurably.
      const float floor = float(sum / n * 1e-4);
      for (int i = 0; i < n; ++i) w[i] = importance[i] + floor;
      return;
    }
  }
  for (int i = 0; i < n; ++i) w[i] = 1.0f;
}

float search_sym(int n, const float* x, const float* w, int lo, int hi, int8_t* L) {
  float amax = 0.0f, vmax = 0.0f;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      vmax = x[i];
    }
  }
  if (!(amax > 1e-30f) || !std::isfinite(amax)) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  double best_score = -1.0;
  float best_s = 0.0f;
  int8_t tmp[256];
  auto try_levels = [&](const int8_t* q) -> bool {
    double slx = 0, sl2 = 0;
    for (int i = 0; i < n; ++i) {
      slx += double(w[i]) * x[i] * q[i];
      sl2 += double(w[i]) * q[i] * q[i];
    }
    if (sl2 <= 0) return false;
    const double score = slx * slx / sl2;
    if (score > best_score) {
      best_score = score;
      best_s = float(slx / sl2);
      if (q != L) std::memcpy(L, q, size_t(n));
      return true;
    }
    return false;
  };
  auto try_iscale = [&](float iscale) {
    for (int i = 0; i < n; ++i) tmp[i] = int8_t(clampi(nearest_int(iscale * x[i]), lo, hi));
    try_levels(tmp);
  };
  // Map the largest value to either end of the level range, with small perturbations.
  for (int k = -10; k <= 10; ++k) {
    try_iscale((float(lo) + 0.1f * k) / vmax);
    try_iscale((float(hi) + 0.1f * k) / vmax);
  }
  // Alternate: levels for the best scale, then the best scale for those levels.
  for (int it = 0; it < 4 && best_s != 0.0f; ++it) {
    try_iscale(1.0f / best_s);
    if (std::memcmp(tmp, L, size_t(n)) != 0) break;
  }
  return best_s;
}

float search_asym(int n, const float* x, const float* w, int nmax, bool min_le_zero, uint8_t* L, float* m_out) {
  float mn = x[0], mx = x[0];
  for (int i = 1; i < n; ++i) {
    mn = std::min(mn, x[i]);
    mx = std::max(mx, x[i]);
  }
  if (min_le_zero && mn > 0) mn = 0;
  if (!(mx > mn) || !std::isfinite(mx - mn)) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *m_out = std::isfinite(mn) ? mn : 0.0f;
    return 0.0f;
  }
  double best_err = INFINITY;
  float best_s = 0.0f, best_m = mn;
  uint8_t tmp[256];
  auto error = [&](const uint8_t* q, float s, float m) {
    double e = 0;
    for (int i = 0; i < n; ++i) {
      const double diff = double(s) * q[i] + m - x[i];
      e += w[i] * diff * diff;
    }
    return e;
  };
  auto consider = [&](const uint8_t* q, float s, float m) {
    if (!(s >= 0)) return;
    const double e = error(q, s, m);
    if (e < best_err) {
      best_err = e;
      best_s = s;
      best_m = m;
      std::memcpy(L, q, size_t(n));
    }
  };
  auto fit = [&](const uint8_t* q) {
    double sw = 0, sl = 0, sl2 = 0, sx = 0, slx = 0;
    for (int i = 0; i < n; ++i) {
      sw += w[i];
      sl += double(w[i]) * q[i];
      sl2 += double(w[i]) * q[i] * q[i];
      sx += double(w[i]) * x[i];
      slx += double(w[i]) * q[i] * x[i];
    }
    const double det = sw * sl2 - sl * sl;
    if (!(det > 0)) return;
    double s = (sw * slx - sl * sx) / det;
    double m = (sl2 * sx - sl * slx) / det;
    if (min_le_zero && m > 0) {
      m = 0;
      s = sl2 > 0 ? slx / sl2 : 0;
    }
    consider(q, float(s), float(m));
  };
  auto levels = [&](float iscale, float m) {
    for (int i = 0; i < n; ++i) tmp[i] = uint8_t(clampi(nearest_int(iscale * (x[i] - m)), 0, nmax));
  };
  // The plain min/max rounding, as is, and refitted.
  const float iscale0 = float(nmax) / (mx - mn);
  levels(iscale0, mn);
  consider(tmp, (mx - mn) / float(nmax), mn);
  fit(tmp);
  for (int k = -10; k <= 10; ++k) {
    const float target = float(nmax) + 0.1f * k;
    if (target <= 0.5f) continue;
    levels(target / (mx - mn), mn);
    fit(tmp);
  }
  for (int it = 0; it < 4 && best_s > 0; ++it) {
    const double before = best_err;
    levels(1.0f / best_s, best_m);
    fit(tmp);
    if (!(best_err < before)) break;
  }
  *m_out = best_m;
  return best_s;
}

double finish_sym(int n, const float* x, const float* w, float dl, int lo, int hi, int8_t* L) {
  const float id = dl != 0.0f ? 1.0f / dl : 0.0f;
  double e = 0;
  for (int i = 0; i < n; ++i) {
    L[i] = int8_t(clampi(nearest_int(x[i] * id), lo, hi));
    const double diff = double(dl * float(L[i])) - x[i];
    e += w[i] * diff * diff;
  }
  return e;
}

double finish_asym(int n, const float* x, const float* w, float dl, float ml, int nmax, uint8_t* L) {
  const float id = dl != 0.0f ? 1.0f / dl : 0.0f;
  double e = 0;
  for (int i = 0; i < n; ++i) {
    L[i] = uint8_t(clampi(nearest_int((x[i] + ml) * id), 0, nmax));
    const double diff = double(dl * float(L[i]) - ml) - x[i];
    e += w[i] * diff * diff;
  }
  return e;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Search variants of the legacy types: best scale (and offset) per 32-value block, then the levels
// re-chosen for the half-precision scale that is actually stored.
// ---------------------------------------------------------------------------------------------
namespace {

using namespace detail;

void search_q4_0(const float* x, void* y, int64_t n, const float* imp) {
  block_q4_0* b = static_cast<block_q4_0*>(y);
  float w[32];
  int8_t L[32];
  for (int64_t i = 0; i < n / 32; ++i, x += 32) {
    block_weights(32, imp ? imp + i * 32 : nullptr, w);
    const float s = search_sym(32, x, w, -8, 7, L);
    b[i].d = float_to_fp16(s);
    finish_sym(32, x, w, fp16_to_float(b[i].d), -8, 7, L);
    for (int j = 0; j < 16; ++j) b[i].qs[j] = uint8_t((L[j] + 8) | ((L[j + 16] + 8) << 4));
  }
}

void search_q5_0(const float* x, void* y, int64_t n, const float* imp) {
  block_q5_0* b = static_cast<block_q5_0*>(y);
  float w[32];
  int8_t L[32];
  uint8_t q[32];
  for (int64_t i = 0; i < n / 32; ++i, x += 32) {
    block_weights(32, imp ? imp + i * 32 : nullptr, w);
    const float s = search_sym(32, x, w, -16, 15, L);
    b[i].d = float_to_fp16(s);
    finish_sym(32, x, w, fp16_to_float(b[i].d), -16, 15, L);
    for (int j = 0; j < 32; ++j) q[j] = uint8_t(L[j] + 16);
    pack_q5(q, b[i].qh, b[i].qs);
  }
}

void search_q8_0(const float* x, void* y, int64_t n, const float* imp) {
  block_q8_0* b = static_cast<block_q8_0*>(y);
  float w[32];
  int8_t L[32];
  for (int64_t i = 0; i < n / 32; ++i, x += 32) {
    block_weights(32, imp ? imp + i * 32 : nullptr, w);
    const float s = search_sym(32, x, w, -128, 127, L);
    b[i].d = float_to_fp16(s);
    finish_sym(32, x, w, fp16_to_float(b[i].d), -128, 127, L);
    std::memcpy(b[i].qs, L, 32);
  }
}

// Q4_1 / Q5_1: x = d * q + m with a free (signed) m.
template <int NMAX>
void search_q_1(const float* x, uint16_t* d_out, uint16_t* m_out, uint8_t* q, const float* w) {
  float m = 0.0f;
  const float s = search_asym(32, x, w, NMAX, false, q, &m);
  *d_out = float_to_fp16(s);
  *m_out = float_to_fp16(m);
  // dequantization computes d * q + m; finish_asym takes the offset with the opposite sign
  finish_asym(32, x, w, fp16_to_float(*d_out), -fp16_to_float(*m_out), NMAX, q);
}

void search_q4_1(const float* x, void* y, int64_t n, const float* imp) {
  block_q4_1* b = static_cast<block_q4_1*>(y);
  float w[32];
  uint8_t q[32];
  for (int64_t i = 0; i < n / 32; ++i, x += 32) {
    block_weights(32, imp ? imp + i * 32 : nullptr, w);
    search_q_1<15>(x, &b[i].d, &b[i].m, q, w);
    for (int j = 0; j < 16; ++j) b[i].qs[j] = uint8_t(q[j] | (q[j + 16] << 4));
  }
}

void search_q5_1(const float* x, void* y, int64_t n, const float* imp) {
  block_q5_1* b = static_cast<block_q5_1*>(y);
  float w[32];
  uint8_t q[32];
  for (int64_t i = 0; i < n / 32; ++i, x += 32) {
    block_weights(32, imp ? imp + i * 32 : nullptr, w);
    search_q_1<31>(x, &b[i].d, &b[i].m, q, w);
    pack_q5(q, b[i].qh, b[i].qs);
  }
}

}  // namespace

// K-quant searches live in quantize_k.cpp.
void quantize_q2_K_search(const float* x, void* y, int64_t n, const float* imp);
void quantize_q3_K_search(const float* x, void* y, int64_t n, const float* imp);
void quantize_q4_K_search(const float* x, void* y, int64_t n, const float* imp);
void quantize_q5_K_search(const float* x, void* y, int64_t n, const float* imp);
void quantize_q6_K_search(const float* x, void* y, int64_t n, const float* imp);

void quantize_row_search(GGMLType type, const float* x, void* y, int64_t n, const float* imp) {
  switch (type) {
    case GGMLType::Q4_0: return search_q4_0(x, y, n, imp);
    case GGMLType::Q4_1: return search_q4_1(x, y, n, imp);
    case GGMLType::Q5_0: return search_q5_0(x, y, n, imp);
    case GGMLType::Q5_1: return search_q5_1(x, y, n, imp);
    case GGMLType::Q8_0: return search_q8_0(x, y, n, imp);
    case GGMLType::Q2_K: return quantize_q2_K_search(x, y, n, imp);
    case GGMLType::Q3_K: return quantize_q3_K_search(x, y, n, imp);
    case GGMLType::Q4_K: return quantize_q4_K_search(x, y, n, imp);
    case GGMLType::Q5_K: return quantize_q5_K_search(x, y, n, imp);
    case GGMLType::Q6_K: return quantize_q6_K_search(x, y, n, imp);
    default: {
      const TypeTraits& t = type_traits(type);
      if (!t.from_float) throw UnsupportedError(std::string("quantize: type ") + t.name + " has no quantizer");
      t.from_float(x, y, n);
    }
  }
}

static bool is_legacy(GGMLType t) {
  return t == GGMLType::Q4_0 || t == GGMLType::Q4_1 || t == GGMLType::Q5_0 || t == GGMLType::Q5_1 ||
         t == GGMLType::Q8_0;
}

void quantize_matrix(GGMLType type, const float* x, void* y, int64_t nrows, int64_t ncols, const float* importance,
                     QuantMethod method, int n_threads) {
  const TypeTraits& t = type_traits(type);
  if (!t.from_float) throw UnsupportedError(std::string("quantize: type ") + t.name + " has no quantizer");
  size_t row_bytes = 0;
  if (nrows < 0 || !row_size_checked(t, ncols, &row_bytes))
    throw ArgumentError("quantize: a row of " + std::to_string(ncols) + " values is not a whole number of " + t.name +
                        " blocks (" + std::to_string(t.block_size) + " values each)");
  if (method == QuantMethod::kReference && importance)
    throw ArgumentError("quantize: reference rounding does not take importance weights");
  const bool search = method == QuantMethod::kSearch ||
                      (method == QuantMethod::kAuto && (!is_legacy(type) || importance != nullptr));
  if (nrows == 0 || ncols == 0) return;

  // A row of importance weights repeated for each row: the search reads one weight per value.
  auto do_rows = [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* src = x + r * ncols;
      void* dst = static_cast<uint8_t*>(y) + size_t(r) * row_bytes;
      if (search) {
        quantize_row_search(type, src, dst, ncols, importance);
      } else {
        t.from_float(src, dst, ncols);
      }
    }
  };

  int nth = n_threads > 0 ? n_threads : physical_core_count();
  const double work = double(nrows) * double(ncols);
  nth = int(std::min<double>(nth, std::max(1.0, work / 65536.0)));  // tiny tensors: fewer threads
  nth = int(std::min<int64_t>(nth, nrows));
  if (nth <= 1) {
    do_rows(0, nrows);
    return;
  }
  std::vector<std::thread> threads;
  std::exception_ptr error;
  std::mutex error_mutex;
  for (int ith = 0; ith < nth; ++ith) {
    threads.emplace_back([&, ith] {
      try {
        int64_t r0, r1;
        split_range(nrows, ith, nth, &r0, &r1);
        do_rows(r0, r1);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
      }
    });
  }
  for (auto& th : threads) th.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace edgellama
