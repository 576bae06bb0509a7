#include "edgellama/packed_layout.h"

#include <cstring>

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

// Calls f(offset, unit) for the units of one block, in order.
template <class F>
void for_each_unit(const PackedType& p, F&& f) {
  size_t o = 0;
  while (o < p.block_bytes) {
    const bool half = (p.n_half > 0 && p.half_at[0] == o) || (p.n_half > 1 && p.half_at[1] == o);
    const size_t unit = half ? 2 : 4;
    f(o, unit);
    o += unit;
  }
}

// dir = true: rows -> group; false: group -> rows (only rows [r0, r1)).
void transfer(GGMLType t, uint8_t* rows, size_t row_bytes, uint8_t* group, int r0, int r1, bool to_group) {
  const PackedType& p = *find(t);
  const size_t nb = row_bytes / p.block_bytes, G = kPackRows;
  for (size_t b = 0; b < nb; ++b) {
    uint8_t* gb = group + b * G * p.block_bytes;
    for_each_unit(p, [&](size_t o, size_t unit) {
      for (int r = r0; r < r1; ++r) {
        uint8_t* row = rows + size_t(r - r0) * row_bytes + b * p.block_bytes + o;
        uint8_t* packed = gb + G * o + size_t(r) * unit;
        if (to_group)
          std::memcpy(packed, row, unit);
        else
          std::memcpy(row, packed, unit);
      }
    });
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
