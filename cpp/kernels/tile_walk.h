// The ISA-independent half of a register-tiled GEMM: a table of the tile functions for every
// partial tile size (rows 1..kRows x tokens 1..kTokens) and the walk over the output in tiles.
// Included only by the per-ISA kernel files (cpp/kernels/<isa>/), whose Tile templates supply the
// arithmetic. Everything here is in an anonymous namespace so that each ISA file gets its own
// copies compiled with its own flags (see the top comment of kernels_avx2.cpp).
#pragma once
#include <cstddef>
#include <cstdint>

namespace edgellama {
namespace {

using TileFn = void (*)(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys);

// fn[r][t] = Tile<r, t>::run for 1 <= r <= kRows, 1 <= t <= kTokens, built at compile time.
template <template <int, int> class Tile, int kRows, int kTokens>
struct TileTable {
  TileFn fn[kRows + 1][kTokens + 1];
  template <int R, int T>
  constexpr void set_row() {
    fn[R][T] = Tile<R, T>::run;
    if constexpr (T > 1) set_row<R, T - 1>();
  }
  template <int R>
  constexpr void set_all() {
    set_row<R, kTokens>();
    if constexpr (R > 1) set_all<R - 1>();
  }
  constexpr TileTable() : fn{} { set_all<kRows>(); }
};

// Walk the nr x nt output in tiles: row tiles outer (the R weight rows stay in L1 while the tokens
// stream through), token tiles inner. nb = blocks (or values, for float weights) per row.
template <template <int, int> class Tile, int kRows, int kTokens>
void walk_tiles(int64_t nb, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                float* y, size_t ys) {
  static constexpr TileTable<Tile, kRows, kTokens> table{};
  for (int64_t r = 0; r < nr; r += kRows) {
    const int rr = int(nr - r < kRows ? nr - r : kRows);
    for (int64_t t = 0; t < nt; t += kTokens) {
      const int tt = int(nt - t < kTokens ? nt - t : kTokens);
      table.fn[rr][tt](nb, w + size_t(r) * ws, ws, a + size_t(t) * as, as, y + size_t(t) * ys + size_t(r), ys);
    }
  }
}

}  // namespace
}  // namespace edgellama
