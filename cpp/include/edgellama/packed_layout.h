// Load-time repacking of weight matrices into row-interleaved groups (the "packed" layout).
//
// Why: a single-token (decode) kernel computes 8 rows per vector, one row per 32-bit lane. In the
// GGUF layout each row's blocks are contiguous, so every block of 8 rows has to be transposed in
// registers and its 8 fp16 scales gathered one by one — about half of the decode work. Packed once
// at load, the same vectors are plain contiguous loads and the weights stream at memory speed.
//
// The layout (kPackRows = G = 8 rows per group, B = bytes per block of the type):
//   group k holds rows [G*k, G*k + G); its bytes are G * row_bytes long, at G*k*row_bytes (the same
//   place the G rows occupy in the GGUF layout, so a packed tensor has exactly the file's size);
//   block b of the group occupies [b*G*B, (b+1)*G*B). Inside it, the block's bytes are cut into
//   units: 2 bytes for each fp16 scale field, 4 bytes everywhere else (every supported block type
//   splits exactly). The unit at byte offset o of row r is stored at G*o + r*unit(o) (Q6_K: at
//   G*p + r*unit for the p given below, and re-encoded).
// So G consecutive rows' fp16 scale at offset o are one 16-byte load (-> 8 floats), and G rows'
// 4-byte words at offset o are one 32-byte load with lane r = row r. Rows past the last whole group
// (n_rows % G) stay in the GGUF layout, where they are anyway.
//
// Only the quantized block types below are packed (packable()); float weights stream fine as rows.
#pragma once
#include <cstddef>
#include <cstdint>

#include "edgellama/quant_types.h"

namespace edgellama {

constexpr int kPackRows = 8;

// Q6_K is the exception: its packed block is laid out in the order the decode kernels read it, and
// its quants are re-encoded so that they unpack with fewer operations.
// - Order: the 4 scale words (GGUF bytes 192..207) at p = 0..15, d at 16, then for each half h (0, 1)
//   and 4-value group g (0..7) the triple of words A, B, C at p = 18 + 12 (8h + g) + {0, 4, 8}.
//   (In GGUF order the kernels read three streams at once plus the scales from the block's end, and
//   the hardware prefetcher does not follow: 3-6 GB/s without software prefetch vs 13-22 GB/s front
//   to back, measured on a loaded Zen 4.)
// - Encoding: byte l (= 4g + i) of a triple holds the four 6-bit quants q1..q4 of values
//   128h + l + {0, 32, 64, 96} (ggml: q1 = ql[64h+l] & 15 | (qh[32h+l] & 3) << 4, q2 from ql[64h+32+l]
//   and qh bits 2-3, q3 = ql[64h+l] >> 4 | qh bits 4-5, q4 = ql[64h+32+l] >> 4 | qh bits 6-7) as
//     A = q1 | (q3 >> 4) << 6,   B = q2 | (q4 >> 4) << 6,   C = (q3 & 15) | (q4 & 15) << 4,
//   so q1 = A & 63 and q2 = B & 63 take one operation each (the GGUF form needs four per quant).
constexpr size_t kQ6PackedScales = 0, kQ6PackedD = 16;
constexpr size_t q6k_packed_triple(int h, int g) { return 18 + 12 * size_t(8 * h + g); }  // + 0 A, 4 B, 8 C

// Whether weights of this type can be packed (a block type whose fields split into units).
bool packable(GGMLType t);

// rows: G rows of row_bytes each (GGUF layout) -> out: the packed group (G * row_bytes bytes).
void pack_group(GGMLType t, const uint8_t* rows, size_t row_bytes, uint8_t* out);
// Row r (0 <= r < G) of a packed group, back in the GGUF layout (row_bytes bytes).
void unpack_row(GGMLType t, const uint8_t* group, size_t row_bytes, int r, uint8_t* row_out);
// All G rows of a packed group back in the GGUF layout (G * row_bytes bytes).
void unpack_group(GGMLType t, const uint8_t* group, size_t row_bytes, uint8_t* rows_out);

}  // namespace edgellama
