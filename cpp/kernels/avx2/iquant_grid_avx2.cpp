// AVX2 kernels of the grid i-quants (IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M): the shared
// loop (../iquant_grid_gemm.h: unpack a super-block once, use it for up to 16 tokens) with a vector
// unpacking and a 256-value dot product in AVX2.
//   Unpacking: the scale numbers and d come from the shared header (scales_<type>); the levels are
// built 32 at a time: four 8-value grid points (or eight 4-value IQ3 points) loaded from
// edgellama/iq_grids.h into one vector, times the +-1 sign bytes (kIqSignBytes, via sign_epi8); IQ1:
// sign_epi8(8, grid) + the +-1 delta bytes. The GridBlock is the scalar unpacking's byte for byte
// (test_kernels.py compares every ISA's results with the scalar kernel's).
//   Single tokens (decode) take a fused path instead (fused_<type>: the same integer sum straight from
// the packed block, no GridBlock in memory). IQ2_* / IQ3_*: the grid values are positive, so the signs
// go onto the activations and maddubs takes the grid bytes as its unsigned operand; IQ1_*: maddubs
// of the unsigned q + 9 and a correction of 9 x the activations' 16-value sums (bsums). 10-25% less
// time than unpack + dot (2048 x 2048, noisy machine); the results are the same bits
// (test_iq_grids.py::test_simd_bits_equal_scalar). The products go through maddubs
// (unsigned x signed) as |q| x (a * sign(q)); no pair sum saturates (|q| <= 62, |a| <= 127:
// 2 * 62 * 127 < 32767), the 16-value group scales 2 ls + 1 (<= 31) are applied by madd, and the
// int32 total is the scalar reference's exactly, so the results are the scalar kernel's bits.
// The avx512 set takes these entries (dispatch.cpp's merge_over).
#include <immintrin.h>

#include "../entry_points.h"
#include "../iquant_grid_gemm.h"

namespace edgellama {
namespace {  // internal linkage (see entry_points.h)
namespace grid_avx2 {

using namespace iq;

inline __m256i set4(uint64_t v0, uint64_t v1, uint64_t v2, uint64_t v3) {
  return _mm256_set_epi64x(int64_t(v3), int64_t(v2), int64_t(v1), int64_t(v0));
}
inline void store32(int8_t* q, __m256i v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), v); }
// 32 levels: 4 grid points (8 values each) times 4 sign bytes (kIqSignBytes / kIqKsignBytes words).
inline void put32(int8_t* q, __m256i grid, uint64_t s0, uint64_t s1, uint64_t s2, uint64_t s3) {
  store32(q, _mm256_sign_epi8(grid, set4(s0, s1, s2, s3)));
}
// 32 sign factors (+-1 bytes) of 4 plain sign bytes (IQ2_S, IQ3_S), expanded in registers: byte i of
// the vector tests bit i % 8 of sign byte i / 8; -1 where set, else +1.
inline __m256i sign_factors(const uint8_t* sign_bits) {
  const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,  //
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201ull));
  const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(int(load_u32(sign_bits))), spread);
  return _mm256_or_si256(_mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit), _mm256_set1_epi8(1));
}
inline void put32(int8_t* q, __m256i grid, const uint8_t* sign_bits) {
  store32(q, _mm256_sign_epi8(grid, sign_factors(sign_bits)));
}
// The sign bytes of 32 values from 4 x 7 stored sign bits (IQ2_XXS, IQ3_XXS: bits 0..27 of aux).
inline __m256i ksigns32(uint32_t aux) {
  return set4(kIqKsignBytes[aux & 127], kIqKsignBytes[(aux >> 7) & 127], kIqKsignBytes[(aux >> 14) & 127],
              kIqKsignBytes[(aux >> 21) & 127]);
}
inline void put32_ksigns(int8_t* q, __m256i grid, uint32_t aux) { store32(q, _mm256_sign_epi8(grid, ksigns32(aux))); }
// IQ1: 8 * grid (grid in -1, 0, 1) + delta bytes (+-1).
inline void put32_iq1(int8_t* q, __m256i grid, __m256i delta) {
  store32(q, _mm256_add_epi8(_mm256_sign_epi8(_mm256_set1_epi8(8), grid), delta));
}

void unpack_iq2_xxs(const void* p, GridBlock* u) {
  const block_iq2_xxs* b = static_cast<const block_iq2_xxs*>(p);
  scales_iq2_xxs(p, u);
  for (int j = 0; j < 8; ++j) {
    const uint32_t idx = load_u32(b->qs + 4 * j), aux = load_u32(b->qs + 4 * j + 2);
    const __m256i g = set4(kIq2xxsGrid[idx & 255], kIq2xxsGrid[(idx >> 8) & 255], kIq2xxsGrid[(idx >> 16) & 255],
                           kIq2xxsGrid[idx >> 24]);
    put32_ksigns(u->q + 32 * j, g, aux);
  }
}

void unpack_iq2_xs(const void* p, GridBlock* u) {
  const block_iq2_xs* b = static_cast<const block_iq2_xs*>(p);
  scales_iq2_xs(p, u);
  for (int k = 0; k < 32; k += 4) {
    const uint16_t* qs = b->qs + k;
    const __m256i g = set4(kIq2xsGrid[qs[0] & 511], kIq2xsGrid[qs[1] & 511], kIq2xsGrid[qs[2] & 511],
                           kIq2xsGrid[qs[3] & 511]);
    put32(u->q + 8 * k, g, kIqKsignBytes[qs[0] >> 9], kIqKsignBytes[qs[1] >> 9], kIqKsignBytes[qs[2] >> 9],
          kIqKsignBytes[qs[3] >> 9]);
  }
}

void unpack_iq2_s(const void* p, GridBlock* u) {
  const block_iq2_s* b = static_cast<const block_iq2_s*>(p);
  scales_iq2_s(p, u);
  for (int k = 0; k < 32; k += 4) {
    const uint8_t* qs = b->qs + k;
    const unsigned qh = b->qh[k / 4];  // 2 high index bits for each of the 4 grid points
    const __m256i g = set4(kIq2sGrid[qs[0] | ((qh << 8) & 0x300)], kIq2sGrid[qs[1] | ((qh << 6) & 0x300)],
                           kIq2sGrid[qs[2] | ((qh << 4) & 0x300)], kIq2sGrid[qs[3] | ((qh << 2) & 0x300)]);
    put32(u->q + 8 * k, g, b->qs + 32 + k);
  }
}

void unpack_iq3_xxs(const void* p, GridBlock* u) {
  const block_iq3_xxs* b = static_cast<const block_iq3_xxs*>(p);
  scales_iq3_xxs(p, u);
  for (int j = 0; j < 8; ++j) {
    const uint8_t* i = b->qs + 8 * j;
    const __m256i g = _mm256_set_epi32(int(kIq3xxsGrid[i[7]]), int(kIq3xxsGrid[i[6]]), int(kIq3xxsGrid[i[5]]),
                                       int(kIq3xxsGrid[i[4]]), int(kIq3xxsGrid[i[3]]), int(kIq3xxsGrid[i[2]]),
                                       int(kIq3xxsGrid[i[1]]), int(kIq3xxsGrid[i[0]]));
    const uint32_t aux = load_u32(b->qs + QK_K / 4 + 4 * j);
    put32_ksigns(u->q + 32 * j, g, aux);
  }
}

void unpack_iq3_s(const void* p, GridBlock* u) {
  const block_iq3_s* b = static_cast<const block_iq3_s*>(p);
  scales_iq3_s(p, u);
  const __m256i bit_of_lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int k = 0; k < 64; k += 8) {
    // 8 grid indices: qs[k + l] | bit l of qh[k / 8] << 8, then one gather from the 512-entry grid
    // (faster here than 8 scalar index computations + inserts; IQ3_XXS's plain byte indices are not:
    // measured on a Xeon with AVX-512, min thread CPU time, loaded machine)
    const __m128i lo = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b->qs + k));
    const __m256i hi = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(b->qh[k / 8]), bit_of_lane), _mm256_set1_epi32(1));
    const __m256i idx = _mm256_or_si256(_mm256_cvtepu8_epi32(lo), _mm256_slli_epi32(hi, 8));
    const __m256i g = _mm256_i32gather_epi32(reinterpret_cast<const int*>(kIq3sGrid), idx, 4);
    put32(u->q + 4 * k, g, b->signs + k / 2);
  }
}

void unpack_iq1_s(const void* p, GridBlock* u) {
  const block_iq1_s* b = static_cast<const block_iq1_s*>(p);
  scales_iq1_s(p, u);
  for (int j = 0; j < 8; ++j) {
    const unsigned qh = b->qh[j];
    const uint8_t* qs = b->qs + 4 * j;
    const __m256i g = set4(kIq1sGrid[qs[0] | ((qh << 8) & 0x700)], kIq1sGrid[qs[1] | ((qh << 5) & 0x700)],
                           kIq1sGrid[qs[2] | ((qh << 2) & 0x700)], kIq1sGrid[qs[3] | ((qh >> 1) & 0x700)]);
    put32_iq1(u->q + 32 * j, g, _mm256_set1_epi8(char(1 - 2 * int(qh >> 15))));
  }
}

void unpack_iq1_m(const void* p, GridBlock* u) {
  const block_iq1_m* b = static_cast<const block_iq1_m*>(p);
  scales_iq1_m(p, u);
  for (int k = 0; k < 32; k += 4) {
    const uint8_t* qs = b->qs + k;
    const unsigned h0 = b->qh[k / 2], h1 = b->qh[k / 2 + 1];  // nibbles k .. k + 3
    const __m256i g = set4(kIq1sGrid[qs[0] | ((h0 << 8) & 0x700)], kIq1sGrid[qs[1] | ((h0 << 4) & 0x700)],
                           kIq1sGrid[qs[2] | ((h1 << 8) & 0x700)], kIq1sGrid[qs[3] | ((h1 << 4) & 0x700)]);
    // delta signs: bits 3, 7 of h0 and h1 = bits 3, 7, 11, 15 of the 16 bits h0 | h1 << 8, one per 64-bit lane
    const __m256i sign_bit = _mm256_setr_epi64x(0x08, 0x80, 0x800, 0x8000);
    const __m256i set = _mm256_cmpeq_epi64(_mm256_and_si256(_mm256_set1_epi64x(int64_t(h0 | (h1 << 8))), sign_bit), sign_bit);
    const __m256i delta = _mm256_or_si256(set, _mm256_set1_epi8(1));
    put32_iq1(u->q + 8 * k, g, delta);
  }
}

// Fused decode (see gemm_grid): the grid values of IQ2_* / IQ3_* are positive, so the signs go onto the
// activations (sign_epi8) and maddubs takes the grid bytes as its unsigned operand.
inline __m256i dot32_grid(__m256i grid, __m256i signs, const int8_t* a, __m256i sc) {
  const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a));
  return _mm256_madd_epi16(_mm256_maddubs_epi16(grid, _mm256_sign_epi8(x, signs)), sc);
}
inline int32_t hsum_epi32(__m256i v) {
  const __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  const __m128i s2 = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  return _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32(s2, _MM_SHUFFLE(2, 3, 0, 1))));
}

int32_t fused_iq3_xxs(const void* p, const block_q8_K* ab, uint16_t* d) {
  const int8_t* a = ab->qs;
  const block_iq3_xxs* b = static_cast<const block_iq3_xxs*>(p);
  *d = b->d;
  __m256i acc = _mm256_setzero_si256();
  for (int j = 0; j < 8; ++j) {
    const uint8_t* i = b->qs + 8 * j;
    const __m256i g = _mm256_set_epi32(int(kIq3xxsGrid[i[7]]), int(kIq3xxsGrid[i[6]]), int(kIq3xxsGrid[i[5]]),
                                       int(kIq3xxsGrid[i[4]]), int(kIq3xxsGrid[i[3]]), int(kIq3xxsGrid[i[2]]),
                                       int(kIq3xxsGrid[i[1]]), int(kIq3xxsGrid[i[0]]));
    const uint32_t aux = load_u32(b->qs + QK_K / 4 + 4 * j);
    const __m256i s = ksigns32(aux);
    acc = _mm256_add_epi32(acc, dot32_grid(g, s, a + 32 * j, _mm256_set1_epi16(int16_t(2 * (aux >> 28) + 1))));
  }
  return hsum_epi32(acc);
}

int32_t fused_iq2_xxs(const void* p, const block_q8_K* ab, uint16_t* d) {
  const int8_t* a = ab->qs;
  const block_iq2_xxs* b = static_cast<const block_iq2_xxs*>(p);
  *d = b->d;
  __m256i acc = _mm256_setzero_si256();
  for (int j = 0; j < 8; ++j) {
    const uint32_t idx = load_u32(b->qs + 4 * j), aux = load_u32(b->qs + 4 * j + 2);
    const __m256i g = set4(kIq2xxsGrid[idx & 255], kIq2xxsGrid[(idx >> 8) & 255], kIq2xxsGrid[(idx >> 16) & 255],
                           kIq2xxsGrid[idx >> 24]);
    const __m256i s = ksigns32(aux);
    acc = _mm256_add_epi32(acc, dot32_grid(g, s, a + 32 * j, _mm256_set1_epi16(int16_t(2 * (aux >> 28) + 1))));
  }
  return hsum_epi32(acc);
}

// Group scales 2 ls + 1 of 32 values whose two 16-value halves have the 4-bit numbers of byte sc
// (low nibble: first half).
inline __m256i scales_2x16(uint8_t sc) {
  return _mm256_set_m128i(_mm_set1_epi16(int16_t(2 * (sc >> 4) + 1)), _mm_set1_epi16(int16_t(2 * (sc & 15) + 1)));
}

int32_t fused_iq2_xs(const void* p, const block_q8_K* ab, uint16_t* d) {
  const int8_t* a = ab->qs;
  const block_iq2_xs* b = static_cast<const block_iq2_xs*>(p);
  *d = b->d;
  __m256i acc = _mm256_setzero_si256();
  for (int j = 0; j < 8; ++j) {
    const uint16_t* qs = b->qs + 4 * j;
    const __m256i g = set4(kIq2xsGrid[qs[0] & 511], kIq2xsGrid[qs[1] & 511], kIq2xsGrid[qs[2] & 511],
                           kIq2xsGrid[qs[3] & 511]);
    const __m256i s = set4(kIqKsignBytes[qs[0] >> 9], kIqKsignBytes[qs[1] >> 9], kIqKsignBytes[qs[2] >> 9],
                           kIqKsignBytes[qs[3] >> 9]);
    acc = _mm256_add_epi32(acc, dot32_grid(g, s, a + 32 * j, scales_2x16(b->scales[j])));
  }
  return hsum_epi32(acc);
}

int32_t fused_iq2_s(const void* p, const block_q8_K* ab, uint16_t* d) {
  const int8_t* a = ab->qs;
  const block_iq2_s* b = static_cast<const block_iq2_s*>(p);
  *d = b->d;
  __m256i acc = _mm256_setzero_si256();
  for (int j = 0; j < 8; ++j) {
    const uint8_t* qs = b->qs + 4 * j;
    const unsigned qh = b->qh[j];
    const __m256i g = set4(kIq2sGrid[qs[0] | ((qh << 8) & 0x300)], kIq2sGrid[qs[1] | ((qh << 6) & 0x300)],
                           kIq2sGrid[qs[2] | ((qh << 4) & 0x300)], kIq2sGrid[qs[3] | ((qh << 2) & 0x300)]);
    acc = _mm256_add_epi32(acc, dot32_grid(g, sign_factors(b->qs + 32 + 4 * j), a + 32 * j, scales_2x16(b->scales[j])));
  }
  return hsum_epi32(acc);
}

int32_t fused_iq3_s(const void* p, const block_q8_K* ab, uint16_t* d) {
  const int8_t* a = ab->qs;
  const block_iq3_s* b = static_cast<const block_iq3_s*>(p);
  *d = b->d;
  const __m256i bit_of_lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256i acc = _mm256_setzero_si256();
  for (int j = 0; j < 8; ++j) {
    const __m128i lo = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b->qs + 8 * j));
    const __m256i hi = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(b->qh[j]), bit_of_lane), _mm256_set1_epi32(1));
    const __m256i idx = _mm256_or_si256(_mm256_cvtepu8_epi32(lo), _mm256_slli_epi32(hi, 8));
    const __m256i g = _mm256_i32gather_epi32(reinterpret_cast<const int*>(kIq3sGrid), idx, 4);
    const int ls = (b->scales[j / 2] >> (4 * (j % 2))) & 15;
    acc = _mm256_add_epi32(acc, dot32_grid(g, sign_factors(b->signs + 4 * j), a + 32 * j, _mm256_set1_epi16(int16_t(2 * ls + 1))));
  }
  return hsum_epi32(acc);
}

// IQ1: the levels q = 8 grid + delta (grid -1, 0, 1; delta +-1) are signed, but u = q + 9 (0..18) is
// not: sum q a = sum u a - 9 sum a, with maddubs(u, a) and the activations' 16-value sums (bsums), so
// no abs / sign per token. The scales multiply each 16-value group's (sum u a - 9 bsum).
inline __m256i iq1_u(__m256i grid, __m256i delta_plus_9) {
  return _mm256_add_epi8(_mm256_sign_epi8(_mm256_set1_epi8(8), grid), delta_plus_9);
}
inline int32_t iq1_finish(__m256i acc, const block_q8_K* ab, const __m256i sc16) {
  // sum_j sc_j * 9 * bsum_j, subtracted: madd of the 16 bsums with the 16 group scales
  const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ab->bsums));
  const __m256i corr = _mm256_madd_epi16(bsums, sc16);
  return hsum_epi32(acc) - 9 * hsum_epi32(corr);
}

int32_t fused_iq1_s(const void* p, const block_q8_K* ab, uint16_t* d) {
  const block_iq1_s* b = static_cast<const block_iq1_s*>(p);
  *d = b->d;
  __m256i acc = _mm256_setzero_si256();
  for (int j = 0; j < 8; ++j) {
    const unsigned qh = b->qh[j];
    const uint8_t* qs = b->qs + 4 * j;
    const __m256i g = set4(kIq1sGrid[qs[0] | ((qh << 8) & 0x700)], kIq1sGrid[qs[1] | ((qh << 5) & 0x700)],
                           kIq1sGrid[qs[2] | ((qh << 2) & 0x700)], kIq1sGrid[qs[3] | ((qh >> 1) & 0x700)]);
    const __m256i u = iq1_u(g, _mm256_set1_epi8(char(9 + 1 - 2 * int(qh >> 15))));
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ab->qs + 32 * j));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(int16_t(2 * ((qh >> 12) & 7) + 1))));
  }
  // the 16 group scales in registers (each 32-value scale twice): 2 ((qh >> 12) & 7) + 1 per qh word
  const __m128i qh8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b->qh));
  const __m128i s8 = _mm_add_epi16(_mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(qh8, 12), _mm_set1_epi16(7)), 1), _mm_set1_epi16(1));
  const __m256i s32 = _mm256_cvtepu16_epi32(s8);
  return iq1_finish(acc, ab, _mm256_or_si256(s32, _mm256_slli_epi32(s32, 16)));
}

int32_t fused_iq1_m(const void* p, const block_q8_K* ab, uint16_t* d) {
  const block_iq1_m* b = static_cast<const block_iq1_m*>(p);
  *d = iq1_m_d(b);
  uint16_t words[4];
  std::memcpy(words, b->scales, 8);
  int16_t sc[16];
  for (int m = 0; m < 16; ++m) sc[m] = int16_t(2 * ((words[m / 4] >> (3 * (m % 4))) & 7) + 1);
  const __m256i sign_bit = _mm256_setr_epi64x(0x08, 0x80, 0x800, 0x8000);
  __m256i acc = _mm256_setzero_si256();
  for (int j = 0; j < 8; ++j) {
    const uint8_t* qs = b->qs + 4 * j;
    const unsigned h0 = b->qh[2 * j], h1 = b->qh[2 * j + 1];
    const __m256i g = set4(kIq1sGrid[qs[0] | ((h0 << 8) & 0x700)], kIq1sGrid[qs[1] | ((h0 << 4) & 0x700)],
                           kIq1sGrid[qs[2] | ((h1 << 8) & 0x700)], kIq1sGrid[qs[3] | ((h1 << 4) & 0x700)]);
    // delta + 9 bytes: 8 where the delta sign bit is set (-1), else 10 (+1)
    const __m256i neg = _mm256_cmpeq_epi64(_mm256_and_si256(_mm256_set1_epi64x(int64_t(h0 | (h1 << 8))), sign_bit), sign_bit);
    const __m256i u = iq1_u(g, _mm256_sub_epi8(_mm256_set1_epi8(10), _mm256_and_si256(neg, _mm256_set1_epi8(2))));
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ab->qs + 32 * j));
    const __m256i scales = _mm256_set_m128i(_mm_set1_epi16(sc[2 * j + 1]), _mm_set1_epi16(sc[2 * j]));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), scales));
  }
  // the 16 group scales in registers (a vector load of the sc[] stores would stall on store forwarding):
  // lane m = bits 3 (m % 4) .. +2 of word m / 4, isolated by a multiply (left shift by 13 - 3 (m % 4))
  // and a right shift by 13
  const __m256i w4 = _mm256_broadcastq_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b->scales)));
  const __m256i spread = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3,  //
                                          4, 5, 4, 5, 4, 5, 4, 5, 6, 7, 6, 7, 6, 7, 6, 7);
  const __m256i shift = _mm256_setr_epi16(8192, 1024, 128, 16, 8192, 1024, 128, 16, 8192, 1024, 128, 16, 8192, 1024,
                                          128, 16);
  const __m256i ls = _mm256_srli_epi16(_mm256_mullo_epi16(_mm256_shuffle_epi8(w4, spread), shift), 13);
  return iq1_finish(acc, ab, _mm256_add_epi16(_mm256_slli_epi16(ls, 1), _mm256_set1_epi16(1)));
}

}  // namespace grid_avx2

int32_t dot_grid_avx2(const iq::GridBlock& u, const int8_t* a) {
  __m256i acc = _mm256_setzero_si256();
  for (int c = 0; c < 8; ++c) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(u.q + 32 * c));
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 32 * c));
    const __m256i pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(q), _mm256_sign_epi8(x, q));
    // int16 lanes 0..7 hold values 32c..32c+15 (group 2c), lanes 8..15 group 2c + 1
    const __m256i sc = _mm256_set_m128i(_mm_set1_epi16(int16_t(2 * u.ls[2 * c + 1] + 1)),
                                        _mm_set1_epi16(int16_t(2 * u.ls[2 * c] + 1)));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, sc));
  }
  return grid_avx2::hsum_epi32(acc);
}

}  // namespace

// Types with a fused decode path here.
#define EL_GRID_FUSED(ns, type) EL_GRID_FUSED_##type
#define EL_GRID_FUSED_iq3_xxs grid_avx2::fused_iq3_xxs
#define EL_GRID_FUSED_iq2_xxs grid_avx2::fused_iq2_xxs
#define EL_GRID_FUSED_iq2_xs grid_avx2::fused_iq2_xs
#define EL_GRID_FUSED_iq2_s grid_avx2::fused_iq2_s
#define EL_GRID_FUSED_iq3_s grid_avx2::fused_iq3_s
#define EL_GRID_FUSED_iq1_s grid_avx2::fused_iq1_s
#define EL_GRID_FUSED_iq1_m grid_avx2::fused_iq1_m
EL_GRID_GEMMS(avx2, grid_avx2, dot_grid_avx2)

}  // namespace edgellama
