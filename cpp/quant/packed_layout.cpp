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
};

const PackedType* find(GGMLType t) {
  for (const PackedType& p : kPacked)
    if (p.type == t) return &p;
  return nullptr;
}

// A block's bytes as runs of units: {GGUF offset, packed offset p(offset), unit (2 or 4), count}; a
// run's units are consecutive in both layouts.
struct Run {
  size_t offset, packed, unit, count;
};
std::vector<Run> runs_of(const PackedType& p) {
  std::vector<Run> runs;
  size_t o = 0;
  while (o < p.block_bytes) {
    const bool half = (p.n_half > 0 && p.half_at[0] == o) || (p.n_half > 1 && p.half_at[1] == o);
    const size_t unit = half ? 2 : 4;
    const size_t packed = packed_unit_offset(p.type, o);
    if (!runs.empty() && runs.back().unit == 4 && unit == 4 && runs.back().packed + 4 * runs.back().count == packed)
      ++runs.back().count;
    else
      runs.push_back({o, packed, unit, 1});
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

// to_group: rows -> group, else group -> rows (only rows [r0, r1) of the group; rows[0] = row r0).
void transfer(GGMLType t, uint8_t* rows, size_t row_bytes, uint8_t* group, int r0, int r1, bool to_group) {
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
          const size_t o = run.offset + 4 * k, po = run.packed + 4 * k;
          for (int h = 0; h < kPackRows; h += 4) {
            uint8_t* rp[4];
            uint8_t* gp[4];
            for (int i = 0; i < 4; ++i) {
              rp[i] = rb + size_t(h + i) * row_bytes + o;  // row h+i, units k..k+3
              gp[i] = gb + G * (po + 4 * size_t(i)) + 4 * size_t(h);  // unit k+i, rows h..h+3
            }
            if (to_group)
              transpose4x4(rp, gp);
            else
              transpose4x4(gp, rp);
          }
        }
      }
      for (; k < run.count; ++k) {
        const size_t o = run.offset + run.unit * k, po = run.packed + run.unit * k;
        for (int r = r0; r < r1; ++r) {
          uint8_t* row = rb + size_t(r - r0) * row_bytes + o;
          uint8_t* packed = gb + G * po + size_t(r) * run.unit;
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
