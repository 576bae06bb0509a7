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
//   splits exactly). The unit at byte offset o of row r is stored at G*p(o) + r*unit(o), where p(o)
//   is o itself for every type except Q6_K (packed_unit_offset below: its units are stored in the
//   order its decode kernels read them).
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

// Q6_K (ql[128] qh[64] scales[16] d) stores its units in the order the decode kernels read them:
// the scales and d first, then for each group g (0..7) of 4 values in each half h of the block the
// three words that make those values: ql at 64h + 4g, ql at 64h + 32 + 4g, qh at 128 + 32h + 4g.
// In GGUF order the kernels read three streams at once plus the scales from the block's end, and the
// hardware prefetcher does not follow that: measured 3-6 GB/s without software prefetch vs 13-22 GB/s
// in this order, on the same (loaded) Zen 4. Returns p(o) for a unit's GGUF byte offset o.
constexpr size_t q6k_packed_offset(size_t o) {
  if (o >= 192) return o - 192;  // scales[16] -> 0..15, d -> 16..17
  if (o >= 128) {                 // qh: half h, group g -> third word of triple 8h + g
    const size_t h = (o - 128) / 32, g = ((o - 128) % 32) / 4;
    return 18 + 12 * (8 * h + g) + 8 + o % 4;
  }
  const size_t h = o / 64, j = (o % 64) / 32, g = (o % 32) / 4;  // ql: j = 0 for chunks 4h, 4h+2
  return 18 + 12 * (8 * h + g) + 4 * j + o % 4;
}

// p(o) of the layout comment for a packable type (the identity except Q6_K).
inline size_t packed_unit_offset(GGMLType t, size_t o) { return t == GGMLType::Q6_K ? q6k_packed_offset(o) : o; }

// Whether weights of this type can be packed (a block type whose fields split into units).
bool packable(GGMLType t);

// rows: G rows of row_bytes each (GGUF layout) -> out: the packed group (G * row_bytes bytes).
void pack_group(GGMLType t, const uint8_t* rows, size_t row_bytes, uint8_t* out);
// Row r (0 <= r < G) of a packed group, back in the GGUF layout (row_bytes bytes).
void unpack_row(GGMLType t, const uint8_t* group, size_t row_bytes, int r, uint8_t* row_out);
// All G rows of a packed group back in the GGUF layout (G * row_bytes bytes).
void unpack_group(GGMLType t, const uint8_t* group, size_t row_bytes, uint8_t* rows_out);

}  // namespace edgellama
