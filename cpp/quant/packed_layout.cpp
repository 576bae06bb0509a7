#include "edgellama/packed_layout.h"

#include <cstring>
#include <vector>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace edgellama {

namespace {

// Where each packable type keeps its fp16 fields (2-byte units); every other byte of the block is
// in 4-byte units. Offsets are those of ggml's block structs (quant_blocks.h).
struct PackedType {
  GGMLType type;
  size_t block_bytes;
  int n_half;
  size_t half_at[2];
};
constexpr PackedType kPacked[] = {
    {GGMLType::Q4_0, 18, 1, {0, 0}},    // d qs[16]
    {GGMLType::Q4_1, 20, 2, {0, 2}},    // d m qs[16]
    {GGMLType::Q5_0, 22, 1, {0, 0}},    // d qh[4] qs[16]
    {GGMLType::Q5_1, 24, 2, {0, 2}},    // d m qh[4] qs[16]
    {GGMLType::Q8_0, 34, 1, {0, 0}},    // d qs[32]
    {GGMLType::Q2_K, 84, 2, {80, 82}},  // scales[16] qs[64] d dmin
    {GGMLType::Q3_K, 110, 1, {108, 0}}, // hmask[32] qs[64] scales[12] d
    {GGMLType::Q4_K, 144, 2, {0, 2}},   // d dmin scales[12] qs[128]
    {GGMLType::Q5_K, 176, 2, {0, 2}},   // d dmin scales[12] qh[32] qs[128]
    {GGMLType::Q6_K, 210, 1, {208, 0}}, // ql[128] qh[64] scales[16] d
    {GGMLType::IQ4_NL, 18, 1, {0, 0}},  // d qs[16] (Q4_0's layout; packed kernel: avx512 only)
    {GGMLType::IQ4_XS, 136, 2, {0, 2}}, // d scales_h scales_l[4] qs[128] (packed kernel: avx512 only)
};

const PackedType* find(GGMLType t) {
  for (const PackedType& p : kPacked)
    if (p.type == t) return &p;
  return nullptr;
}

// A block's bytes as runs of units: {offset, unit (2 or 4), count}.
struct Run {
  size_t offset, unit, count;
};
std::vector<Run> runs_of(const PackedType& p) {
  std::vector<Run> runs;
  size_t o = 0;
  while (o < p.block_bytes) {
    const bool half = (p.n_half > 0 && p.half_at[0] == o) || (p.n_half > 1 && p.half_at[1] == o);
    const size_t unit = half ? 2 : 4;
    if (!runs.empty() && runs.back().unit == 4 && unit == 4)
      ++runs.back().count;
    else
      runs.push_back({o, unit, 1});
    o += unit;
  }
  return runs;
}

// The 4 x 4 transposition of 32-bit words: out row i = word i of each of the 4 input rows (its own
// inverse). Moves 4 units of 4 rows between the two layouts at once.
inline void transpose4x4(const uint8_t* const* in, uint8_t* const* out) {
#if defined(__SSE2__)
  const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in[0]));
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in[1]));
  const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in[2]));
  const __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in[3]));
  const __m128i ab0 = _mm_unpacklo_epi32(a, b), ab1 = _mm_unpackhi_epi32(a, b);
  const __m128i cd0 = _mm_unpacklo_epi32(c, d), cd1 = _mm_unpackhi_epi32(c, d);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out[0]), _mm_unpacklo_epi64(ab0, cd0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out[1]), _mm_unpackhi_epi64(ab0, cd0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out[2]), _mm_unpacklo_epi64(ab1, cd1));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out[3]), _mm_unpackhi_epi64(ab1, cd1));
#else
  uint32_t w[4][4];
  for (int i = 0; i < 4; ++i) std::memcpy(w[i], in[i], 16);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) std::memcpy(out[i] + 4 * j, &w[j][i], 4);
#endif
}

// Q6_K (packed_layout.h): per 4-byte word, bytewise, (ql[64h+4g], ql[64h+32+4g], qh[32h+4g]) <-> (A, B, C).
inline void q6k_encode(uint32_t ql0, uint32_t ql1, uint32_t qh, uint32_t* a, uint32_t* b, uint32_t* c) {
  *a = (ql0 & 0x0F0F0F0Fu) | ((qh & 0x03030303u) << 4) | ((qh & 0x30303030u) << 2);  // q1 | hi(q3) << 6
  *b = (ql1 & 0x0F0F0F0Fu) | ((qh & 0x0C0C0C0Cu) << 2) | (qh & 0xC0C0C0C0u);         // q2 | hi(q4) << 6
  *c = ((ql0 >> 4) & 0x0F0F0F0Fu) | (ql1 & 0xF0F0F0F0u);                                // lo(q3) | lo(q4) << 4
}
inline void q6k_decode(uint32_t a, uint32_t b, uint32_t c, uint32_t* ql0, uint32_t* ql1, uint32_t* qh) {
  *ql0 = (a & 0x0F0F0F0Fu) | ((c & 0x0F0F0F0Fu) << 4);
  *ql1 = (b & 0x0F0F0F0Fu) | (c & 0xF0F0F0F0u);
  *qh = ((a >> 4) & 0x03030303u) | ((b >> 2) & 0x0C0C0C0Cu) | ((a >> 2) & 0x30303030u) | (b & 0xC0C0C0C0u);
}

inline uint32_t load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline void store32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

// Q6_K's transfer (its own order and encoding), rows [r0, r1) of the group.
void transfer_q6k(uint8_t* rows, size_t row_bytes, uint8_t* group, int r0, int r1, bool to_group) {
  constexpr size_t B = 210, G = kPackRows;
  const size_t nb = row_bytes / B;
  for (size_t b = 0; b < nb; ++b) {
    uint8_t* gb = group + b * G * B;
    for (int r = r0; r < r1; ++r) {
      uint8_t* row = rows + size_t(r - r0) * row_bytes + b * B;
      for (size_t w = 0; w < 4; ++w) {  // scales
        uint8_t* packed = gb + G * (kQ6PackedScales + 4 * w) + 4 * size_t(r);
        to_group ? std::memcpy(packed, row + 192 + 4 * w, 4) : std::memcpy(row + 192 + 4 * w, packed, 4);
      }
      uint8_t* pd = gb + G * kQ6PackedD + 2 * size_t(r);
      to_group ? std::memcpy(pd, row + 208, 2) : std::memcpy(row + 208, pd, 2);
      for (int h = 0; h < 2; ++h) {
        for (int g = 0; g < 8; ++g) {
          uint8_t* t = gb + G * q6k_packed_triple(h, g) + 4 * size_t(r);  // A; B at +32, C at +64
          uint8_t* ql0 = row + 64 * h + 4 * g;
          uint8_t* ql1 = ql0 + 32;
          uint8_t* qh = row + 128 + 32 * h + 4 * g;
          uint32_t x, y, z;
          if (to_group) {
            q6k_encode(load32(ql0), load32(ql1), load32(qh), &x, &y, &z);
            store32(t, x), store32(t + 4 * G, y), store32(t + 8 * G, z);
          } else {
            q6k_decode(load32(t), load32(t + 4 * G), load32(t + 8 * G), &x, &y, &z);
            store32(ql0, x), store32(ql1, y), store32(qh, z);
          }
        }
      }
    }
  }
}

// to_group: rows -> group, else group -> rows (only rows [r0, r1) of the group; rows[0] = row r0).
void transfer(GGMLType t, uint8_t* rows, size_t row_bytes, uint8_t* group, int r0, int r1, bool to_group) {
  if (t == GGMLType::Q6_K) return transfer_q6k(rows, row_bytes, group, r0, r1, to_group);
  const PackedType& p = *find(t);
  static thread_local GGMLType cached_type = GGMLType::F32;
  static thread_local std::vector<Run> runs;
  if (cached_type != t || runs.empty()) {
    runs = runs_of(p);
    cached_type = t;
  }
  const size_t nb = row_bytes / p.block_bytes, G = kPackRows;
  const bool whole = r0 == 0 && r1 == kPackRows;
  for (size_t b = 0; b < nb; ++b) {
    uint8_t* gb = group + b * G * p.block_bytes;
    uint8_t* rb = rows + b * p.block_bytes;
    for (const Run& run : runs) {
      size_t k = 0;
      if (whole && run.unit == 4) {
        for (; k + 4 <= run.count; k += 4) {
          const size_t o = run.offset + 4 * k;
          for (int h = 0; h < kPackRows; h += 4) {
            uint8_t* rp[4];
            uint8_t* gp[4];
            for (int i = 0; i < 4; ++i) {
              rp[i] = rb + size_t(h + i) * row_bytes + o;  // row h+i, units k..k+3
              gp[i] = gb + G * (o + 4 * size_t(i)) + 4 * size_t(h);  // unit k+i, rows h..h+3
            }
            if (to_group)
              transpose4x4(rp, gp);
            else
              transpose4x4(gp, rp);
          }
        }
      }
      for (; k < run.count; ++k) {
        const size_t o = run.offset + run.unit * k;
        for (int r = r0; r < r1; ++r) {
          uint8_t* row = rb + size_t(r - r0) * row_bytes + o;
          uint8_t* packed = gb + G * o + size_t(r) * run.unit;
          if (to_group)
            std::memcpy(packed, row, run.unit);
          else
            std::memcpy(row, packed, run.unit);
        }
      }
    }
  }
}

}  // namespace

bool packable(GGMLType t) { return find(t) != nullptr; }

void pack_group(GGMLType t, const uint8_t* rows, size_t row_bytes, uint8_t* out) {
  transfer(t, const_cast<uint8_t*>(rows), row_bytes, out, 0, kPackRows, true);
}

void unpack_row(GGMLType t, const uint8_t* group, size_t row_bytes, int r, uint8_t* row_out) {
  transfer(t, row_out, row_bytes, const_cast<uint8_t*>(group), r, r + 1, false);
}

void unpack_group(GGMLType t, const uint8_t* group, size_t row_bytes, uint8_t* rows_out) {
  transfer(t, rows_out, row_bytes, const_cast<uint8_t*>(group), 0, kPackRows, false);
}

}  // namespace edgellama
