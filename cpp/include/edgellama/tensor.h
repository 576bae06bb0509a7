// A read-only view of one weight matrix: inside the mapped GGUF file, or (packed != 0) in the
// model's buffer of that matrix repacked at load into row-interleaved groups
// (edgellama/packed_layout.h). Code that reads rows directly must go through row_bytes_of().
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "edgellama/arch.h"
#include "edgellama/quant_types.h"

namespace edgellama {

struct WeightView {
  std::string name;
  const TypeTraits* traits = nullptr;
  int64_t ne[4] = {1, 1, 1, 1};  // ne[0] = row length (input features), ne[1] = rows (outputs)
  const uint8_t* data = nullptr;
  size_t row_bytes = 0;          // bytes of one row of ne[0] values
  TensorRole role = TensorRole::Other;  // what the weight does (policies key on this, not on name)
  int pack = 0;  // rows per packed group (kPackRows) for rows < packed_rows(); 0 = GGUF layout
  // Where a block weight sits in the stack (the residual policy of matmul.cpp keys on it): block
  // `layer` of `n_layers`; n_layers = 0 for weights outside the blocks or of unknown position.
  int layer = -1, n_layers = 0;

  bool present() const { return data != nullptr; }
  int64_t n_in() const { return ne[0]; }
  int64_t n_out() const { return ne[1]; }
  // Where row r's bytes start in the GGUF layout; for a packed row, where its group's block bytes
  // are interleaved with the group's other rows (see packed_layout.h).
  const uint8_t* row(int64_t r) const { return data + size_t(r) * row_bytes; }
  int64_t packed_rows() const { return pack ? ne[1] / pack * pack : 0; }
};

}  // namespace edgellama
