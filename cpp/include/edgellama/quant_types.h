// The per-type trait table: one row per ggml tensor type. Adding a weight type means adding a row
// (and its kernels), nothing else. Type ids and block layouts are ggml's, so files interoperate.
#pragma once
#include <cstddef>
#include <cstdint>

namespace edgellama {

enum class GGMLType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22,
  IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
  TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
};

constexpr int64_t QK_K = 256;  // super-block size of the K-quants

// Dequantize n values (n a multiple of block_size) from packed blocks to float.
using ToFloatFn = void (*)(const void* blocks, float* out, int64_t n);
// Quantize n floats (n a multiple of block_size) into packed blocks; reference rounding.
using FromFloatFn = void (*)(const float* in, void* blocks, int64_t n);

struct TypeTraits {
  GGMLType type;
  const char* name;       // as ggml/gguf-py spell it: "Q4_K", "F16", ...
  int64_t block_size;     // values per block (1 for plain float types)
  size_t type_size;       // bytes per block
  ToFloatFn to_float;     // nullptr: we can list tensors of this type but not compute with them
  FromFloatFn from_float; // nullptr: no quantizer for this type (yet)
  GGMLType vec_dot_type;  // activation format the int8 kernels dot this type against
};

// nullptr for an id we do not know at all (the GGUF reader turns that into a FormatError).
const TypeTraits* find_type_traits(uint32_t type_id);
// For a type known to exist (programming error otherwise).
const TypeTraits& type_traits(GGMLType type);
// Every known row, for listings and tests.
const TypeTraits* all_type_traits(size_t* count);

// Bytes of a row of n values; returns false if n is not a multiple of the block size or the
// product overflows.
bool row_size_checked(const TypeTraits& t, int64_t n, size_t* bytes);

}  // namespace edgellama
