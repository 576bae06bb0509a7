// The trait table itself: one row per ggml type id.
#include <limits>

#include "dequantize.h"
#include "quantize.h"
#include "edgellama/quant_types.h"

namespace edgellama {
namespace {

using T = GGMLType;

// Types with to_float == nullptr are known (so files that contain them can be listed with exact
// sizes) but not computed with; loading a model that uses them is an UnsupportedError.
const TypeTraits kTable[] = {
    // type     name      block  bytes                to_float            from_float  vec_dot_type
    {T::F32,    "F32",    1,     4,                   dequantize_f32,     quantize_row_f32_ref, T::F32},
    {T::F16,    "F16",    1,     2,                   dequantize_f16,     quantize_row_f16_ref, T::F16},
    {T::BF16,   "BF16",   1,     2,                   dequantize_bf16,    quantize_row_bf16_ref, T::BF16},
    {T::Q4_0,   "Q4_0",   32,    18,                  dequantize_q4_0,    quantize_row_q4_0_ref, T::Q8_0},
    {T::Q4_1,   "Q4_1",   32,    20,                  dequantize_q4_1,    quantize_row_q4_1_ref, T::Q8_1},
    {T::Q5_0,   "Q5_0",   32,    22,                  dequantize_q5_0,    quantize_row_q5_0_ref, T::Q8_0},
    {T::Q5_1,   "Q5_1",   32,    24,                  dequantize_q5_1,    quantize_row_q5_1_ref, T::Q8_1},
    {T::Q8_0,   "Q8_0",   32,    34,                  dequantize_q8_0,    quantize_row_q8_0_ref, T::Q8_0},
    {T::Q8_1,   "Q8_1",   32,    36,                  dequantize_q8_1,    quantize_row_q8_1_ref, T::Q8_1},
    {T::Q2_K,   "Q2_K",   256,   84,                  dequantize_q2_K,    quantize_row_q2_K_ref, T::Q8_K},
    {T::Q3_K,   "Q3_K",   256,   110,                 dequantize_q3_K,    quantize_row_q3_K_ref, T::Q8_K},
    {T::Q4_K,   "Q4_K",   256,   144,                 dequantize_q4_K,    quantize_row_q4_K_ref, T::Q8_K},
    {T::Q5_K,   "Q5_K",   256,   176,                 dequantize_q5_K,    quantize_row_q5_K_ref, T::Q8_K},
    {T::Q6_K,   "Q6_K",   256,   210,                 dequantize_q6_K,    quantize_row_q6_K_ref, T::Q8_K},
    {T::Q8_K,   "Q8_K",   256,   292,                 dequantize_q8_K,    quantize_row_q8_K_ref, T::Q8_K},
    // Non-linear / ternary / fp4 formats (edgellama/iquant_blocks.h).
    {T::IQ4_NL, "IQ4_NL", 32,    18,                  dequantize_iq4_nl,  quantize_row_iq4_nl_ref, T::Q8_0},
    {T::IQ4_XS, "IQ4_XS", 256,   136,                 dequantize_iq4_xs,  quantize_row_iq4_xs_ref, T::Q8_K},
    {T::TQ1_0,  "TQ1_0",  256,   54,                  dequantize_tq1_0,   quantize_row_tq1_0_ref, T::Q8_K},
    {T::TQ2_0,  "TQ2_0",  256,   66,                  dequantize_tq2_0,   quantize_row_tq2_0_ref, T::Q8_K},
    {T::MXFP4,  "MXFP4",  32,    17,                  dequantize_mxfp4,   quantize_row_mxfp4_ref, T::Q8_0},
    // Grid i-quants (edgellama/iquant_grid_blocks.h); quantizers in quantize_iq_grid.cpp.
    {T::IQ2_XXS, "IQ2_XXS", 256, 66,                  dequantize_iq2_xxs, quantize_row_iq2_xxs_ref, T::Q8_K},
    {T::IQ2_XS,  "IQ2_XS",  256, 74,                  dequantize_iq2_xs,  quantize_row_iq2_xs_ref, T::Q8_K},
    {T::IQ3_XXS, "IQ3_XXS", 256, 98,                  dequantize_iq3_xxs, quantize_row_iq3_xxs_ref, T::Q8_K},
    {T::IQ1_S,   "IQ1_S",   256, 50,                  dequantize_iq1_s,   quantize_row_iq1_s_ref, T::Q8_K},
    {T::IQ3_S,   "IQ3_S",   256, 110,                 dequantize_iq3_s,   quantize_row_iq3_s_ref, T::Q8_K},
    {T::IQ2_S,   "IQ2_S",   256, 82,                  dequantize_iq2_s,   quantize_row_iq2_s_ref, T::Q8_K},
    {T::IQ1_M,   "IQ1_M",   256, 56,                  dequantize_iq1_m,   quantize_row_iq1_m_ref, T::Q8_K},
    // Known to the reader only.
    {T::I8,      "I8",      1,   1,                   nullptr,            nullptr,    T::I8},
    {T::I16,     "I16",     1,   2,                   nullptr,            nullptr,    T::I16},
    {T::I32,     "I32",     1,   4,                   nullptr,            nullptr,    T::I32},
    {T::I64,     "I64",     1,   8,                   nullptr,            nullptr,    T::I64},
    {T::F64,     "F64",     1,   8,                   nullptr,            nullptr,    T::F64},
};

}  // namespace

const TypeTraits* find_type_traits(uint32_t type_id) {
  for (const TypeTraits& t : kTable) {
    if (static_cast<uint32_t>(t.type) == type_id) return &t;
  }
  return nullptr;
}

const TypeTraits& type_traits(GGMLType type) { return *find_type_traits(static_cast<uint32_t>(type)); }

const TypeTraits* all_type_traits(size_t* count) {
  *count = sizeof(kTable) / sizeof(kTable[0]);
  return kTable;
}

bool row_size_checked(const TypeTraits& t, int64_t n, size_t* bytes) {
  if (n < 0 || n % t.block_size != 0) return false;
  const uint64_t blocks = uint64_t(n / t.block_size);
  if (blocks > std::numeric_limits<uint64_t>::max() / t.type_size) return false;
  *bytes = size_t(blocks * t.type_size);
  return true;
}

}  // namespace edgellama
