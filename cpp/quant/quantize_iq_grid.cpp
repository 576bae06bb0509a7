// Quantizers for the grid i-quants: IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M.
//
// Every one of these formats stores, per 256-value super-block, a fp16 scale d, one small scale
// number ls per block of 16 or 32 values, and per group of 8 (IQ3: 4) values the index of a point of
// a fixed grid (edgellama/iq_grids.h) plus signs (edgellama/iquant_grid_blocks.h says how the bits
// unpack). A value is
//   x ~= D_b * q,   D_b = d * grid_scale * (2 ls_b + 1),   q = grid value * sign   (IQ1: 8 grid +- 1).
// Only a few of the lattice points (all combinations of the per-coordinate levels) are on the grid
// (IQ2_XXS: 256 of 3^8), which is what makes the search harder than for IQ4_NL.
//
// The search minimises the weighted squared error sum_i w_i (x_i - D_b q_i)^2 with
//   w_i = importance_i * sqrt(sigma2 + x_i^2),  sigma2 = 2 * mean(x^2) over the super-block
// (importance = the imatrix column weight, or 1): with an imatrix the objective is the imatrix's,
// sharpened towards large values the way llama.cpp's i-quant search does (its idea, our code), except
// for the types whose table row says sharpen = false: IQ1_M and IQ2_S weigh by the importance alone.
// Measured (issue 17, SmolLM2 F32 with --imatrix auto, KL vs the source on 8 x 256 tokens, our file
// with only these tensors re-quantized): IQ1_M file 0.9995 -> 0.9005 (llama-quantize's 0.9487),
// IQ2_M file (IQ2_S tensors) 0.3003 -> 0.2990 (llama-quantize's 0.3013).
// Per super-block:
//   1. signs: each value's sign goes into the sign bits and the search works on a_i = |x_i|. Formats
//      that store 7 of 8 sign bits (the 8th makes the number of negatives even: IQ2_XXS, IQ2_XS,
//      IQ3_XXS) give the wrong sign to the value of an 8-group with an odd number of negatives that
//      costs least (smallest w x^2); that value's target becomes -|x|. IQ1 has no sign bits: its
//      grid holds -1, 0, 1 and a per-block (IQ1_S) or per-group (IQ1_M) shift of +-1/8.
//   2. block scale: candidates s = max|a| / t with t from 0.75 to 1.25 times the largest level (the
//      table's `steps` on each side); for each, every group takes its best grid point for s (below),
//      then s is refit by least squares (s = sum w a q / sum w q^2) and the candidate with the largest
//      (sum w a q)^2 / sum w q^2 (the smallest error for its points) wins; then up to three rounds of
//      re-choosing the points for the refit scale.
//   3. stored scales: d (fp16) is the candidate between (largest block scale) / (grid_scale
//      (2 max_ls + 1)) and one ls step above it (denominator 2 max_ls + 1 down to 2 max_ls - 1, 21
//      candidates) whose grid of stored scales d grid_scale (2 ls + 1) lies closest to the
//      block scales (each block's error grows as sum w q^2 times the square of its scale's shift);
//      then each block tries ls = nearest and its two neighbours with the points re-chosen for that
//      exact stored scale, and keeps the smallest error (IQ1_S keeps the shift sign step 2 chose).
// Best grid point of a group for a scale s: round every coordinate to its nearest level (the best
// lattice point, since the error is a sum over coordinates); if that point is on the grid it is the
// best grid point, else the best of its precomputed neighbour list (the grid points at the table's
// `shells` smallest distances from that lattice point) by weighted error.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "edgellama/errors.h"
#include "edgellama/fp16.h"
#include "edgellama/iquant_grid_blocks.h"
#include "quantize.h"

namespace edgellama {

using namespace detail;

namespace {

enum class Signs { kParity, kFree, kNone };  // 7 stored bits + parity / 8 stored bits / in the grid
enum class Delta { kNone, kPerBlock, kPerGroup };  // IQ1's +-1/8 shift

// One row per type: what the search needs to know about the format (the bit packing is below).
struct GridFormat {
  GGMLType type;
  int group;        // values per grid point
  int npoints;      // grid points
  int block;        // values sharing one stored scale number
  int max_ls;       // largest stored scale number
  Signs signs;
  Delta delta;
  int grid_unit;    // q = grid value * grid_unit (IQ1: 8, so that q = 8 grid +- 1 is an integer)
  int shells;       // distinct distances kept in a neighbour list (speed vs search quality)
  int scale_steps;  // block-scale candidates on each side of max|a| / largest level
  bool sharpen_imp; // with importance, also weigh by sqrt(sigma2 + x^2) (see the top)
};

const GridFormat kFormats[] = {
    // shells / steps: chosen on Gaussian and t(3) rows against llama.cpp's quantizer: more of either
    // (3 shells, 10 steps) lowers the error by < 1.5% at 2-4x the time (IQ3_XXS: 4 shells, -1%).
    // sharpen: see the top (false where measured better in KL; the others are not measured yet).
    // type             group points block max_ls signs          delta             unit shells steps sharpen
    {GGMLType::IQ2_XXS, 8,    256,   32,   15,    Signs::kParity, Delta::kNone,     1,   2, 4,    true},
    {GGMLType::IQ2_XS,  8,    512,   16,   15,    Signs::kParity, Delta::kNone,     1,   2, 4,    true},
    {GGMLType::IQ2_S,   8,    1024,  16,   15,    Signs::kFree,   Delta::kNone,     1,   1, 4,    false},
    {GGMLType::IQ3_XXS, 4,    256,   32,   15,    Signs::kParity, Delta::kNone,     1,   4, 4,    true},
    {GGMLType::IQ3_S,   4,    512,   32,   15,    Signs::kFree,   Delta::kNone,     1,   2, 4,    true},
    {GGMLType::IQ1_S,   8,    2048,  32,   7,     Signs::kNone,   Delta::kPerBlock, 8,   1, 3,    true},
    {GGMLType::IQ1_M,   8,    2048,  16,   7,     Signs::kNone,   Delta::kPerGroup, 8,   1, 3,    false},
};

// Grid point p's value k (in grid units, before grid_unit).
int grid_value(GGMLType t, int p, int k) {
  switch (t) {
    case GGMLType::IQ2_XXS: return int8_t(iq::kIq2xxsGrid[p] >> (8 * k));
    case GGMLType::IQ2_XS: return int8_t(iq::kIq2xsGrid[p] >> (8 * k));
    case GGMLType::IQ2_S: return int8_t(iq::kIq2sGrid[p] >> (8 * k));
    case GGMLType::IQ3_XXS: return int8_t(iq::kIq3xxsGrid[p] >> (8 * k));
    case GGMLType::IQ3_S: return int8_t(iq::kIq3sGrid[p] >> (8 * k));
    default: return int8_t(iq::kIq1sGrid[p] >> (8 * k));  // IQ1_S, IQ1_M share the grid
  }
}

constexpr int kMaxGroup = 8;
constexpr int kMaxLevels = 8;
constexpr int kMaxShells = 4;

// The grid of one type as a searchable structure (built once per process, on first use).
class GridIndex {
 public:
  explicit GridIndex(const GridFormat& f) : f_(f) {
    q_.resize(size_t(f.npoints) * f.group);
    std::vector<int> levels;
    for (int p = 0; p < f.npoints; ++p)
      for (int k = 0; k < f.group; ++k) {
        const int v = grid_value(f.type, p, k) * f.grid_unit;
        q_[size_t(p) * f.group + k] = int16_t(v);
        if (std::find(levels.begin(), levels.end(), v) == levels.end()) levels.push_back(v);
      }
    std::sort(levels.begin(), levels.end());
    nlev_ = int(levels.size());
    for (int l = 0; l < nlev_; ++l) level_[l] = float(levels[l]);
    for (int l = 0; l + 1 < nlev_; ++l) mid_[l] = 0.5f * (level_[l] + level_[l + 1]);
    int lattice = 1;
    for (int k = 0; k < f.group; ++k) lattice *= nlev_;
    on_grid_.assign(size_t(lattice), -1);
    std::vector<int> point_lattice(size_t(f.npoints));
    for (int p = 0; p < f.npoints; ++p) {
      int idx = 0;
      for (int k = f.group - 1; k >= 0; --k)
        idx = idx * nlev_ + int(std::find(levels.begin(), levels.end(), int(q_[size_t(p) * f.group + k])) - levels.begin());
      on_grid_[size_t(idx)] = p;
      point_lattice[size_t(p)] = idx;
    }
    // Neighbour lists of the lattice points that are not on the grid.
    first_.assign(size_t(lattice) + 1, 0);
    std::vector<int> dist(size_t(f.npoints));
    int lv[kMaxGroup];
    for (int idx = 0; idx < lattice; ++idx) {
      first_[size_t(idx)] = int(neighbours_.size());
      if (on_grid_[size_t(idx)] >= 0) continue;
      for (int k = 0, r = idx; k < f.group; ++k, r /= nlev_) lv[k] = levels[size_t(r % nlev_)];
      // the f.shells smallest distinct squared distances (ascending; INT_MAX: fewer exist)
      int shell[kMaxShells];
      for (int i = 0; i < f.shells; ++i) shell[i] = INT_MAX;
      for (int p = 0; p < f.npoints; ++p) {
        int d2 = 0;
        for (int k = 0; k < f.group; ++k) {
          const int e = q_[size_t(p) * f.group + k] - lv[k];
          d2 += e * e;
        }
        dist[size_t(p)] = d2;
        for (int i = 0; i < f.shells; ++i) {
          if (d2 == shell[i]) break;
          if (d2 < shell[i]) {
            for (int j = f.shells - 1; j > i; --j) shell[j] = shell[j - 1];
            shell[i] = d2;
            break;
          }
        }
      }
      int limit = shell[0];
      for (int i = 0; i < f.shells; ++i)
        if (shell[i] != INT_MAX) limit = shell[i];
      for (int p = 0; p < f.npoints; ++p)
        if (dist[size_t(p)] <= limit) neighbours_.push_back(uint16_t(p));
    }
    first_[size_t(lattice)] = int(neighbours_.size());
  }

  const GridFormat& format() const { return f_; }
  const int16_t* point(int p) const { return &q_[size_t(p) * f_.group]; }

  // Best grid point for a ~= s (q + delta) over one group; *err receives sum w (a - s (q + delta))^2.
  int best_point(const float* a, const float* w, float s, int delta, float* err) const {
    const int g = f_.group;
    const float inv = 1.0f / s;
    int idx = 0;
    for (int k = g - 1; k >= 0; --k) {
      const float v = a[k] * inv - float(delta);
      int l = 0;
      while (l + 1 < nlev_ && v > mid_[l]) ++l;
      idx = idx * nlev_ + l;
    }
    const int direct = on_grid_[size_t(idx)];
    if (direct >= 0) {
      *err = point_error(direct, a, w, s, delta);
      return direct;
    }
    int best = neighbours_[size_t(first_[size_t(idx)])];
    float best_err = INFINITY;
    for (int i = first_[size_t(idx)]; i < first_[size_t(idx) + 1]; ++i) {
      const int p = neighbours_[size_t(i)];
      const float e = point_error(p, a, w, s, delta);
      if (e < best_err) {
        best_err = e;
        best = p;
      }
    }
    *err = best_err;
    return best;
  }

  float point_error(int p, const float* a, const float* w, float s, int delta) const {
    const int16_t* q = point(p);
    float e = 0.0f;
    for (int k = 0; k < f_.group; ++k) {
      const float r = a[k] - s * float(q[k] + delta);
      e += w[k] * r * r;
    }
    return e;
  }

  float top_level() const { return level_[nlev_ - 1]; }

 private:
  GridFormat f_;
  std::vector<int16_t> q_;        // npoints x group values (grid units * grid_unit)
  float level_[kMaxLevels + 1];   // the distinct coordinate values, ascending
  float mid_[kMaxLevels];         // midpoints between neighbouring levels
  int nlev_ = 0;
  std::vector<int> on_grid_;      // lattice index -> grid point, or -1
  std::vector<int> first_;        // lattice index -> start of its neighbour list
  std::vector<uint16_t> neighbours_;
};

const GridIndex& grid_index(GGMLType t) {
  constexpr int n = int(sizeof(kFormats) / sizeof(kFormats[0]));
  static std::once_flag once[n];
  static std::unique_ptr<GridIndex> index[n];
  for (int i = 0; i < n; ++i)
    if (kFormats[i].type == t) {
      std::call_once(once[i], [i] { index[i].reset(new GridIndex(kFormats[i])); });
      return *index[i];
    }
  throw UnsupportedError("quantize: no grid for this type");
}

// The search result for one super-block, in format-independent form; the pack functions below
// write it in each type's bits.
struct SuperBlock {
  uint16_t d_bits = 0;      // the fp16 super-block scale
  int ls[16] = {};          // stored scale number per block
  int point[64] = {};       // grid point per group
  bool neg_delta[64] = {};  // IQ1: the group's shift is -1/8
  uint8_t sign[32] = {};    // sign byte per 8 values (bit k set: value k negative)
};

constexpr float kTiny = 1e-30f;

// The points of the groups of one block for scale s: sum w a q, sum w q^2 and the error.
struct BlockFit {
  double sumqx = 0, sumq2 = 0, err = 0;
};

BlockFit fit_block(const GridIndex& grid, const float* a, const float* w, int n, float s, int* point,
                   bool* neg_delta, int block_delta) {
  const GridFormat& f = grid.format();
  BlockFit r;
  for (int g = 0; g < n / f.group; ++g) {
    const float* ag = a + g * f.group;
    const float* wg = w + g * f.group;
    float err = 0.0f;
    int delta = block_delta;
    int p = grid.best_point(ag, wg, s, delta, &err);
    if (f.delta == Delta::kPerGroup) {
      float err2 = 0.0f;
      const int p2 = grid.best_point(ag, wg, s, -1, &err2);
      delta = 1;
      if (err2 < err) {
        err = err2;
        p = p2;
        delta = -1;
      }
    }
    point[g] = p;
    if (neg_delta) neg_delta[g] = delta < 0;
    const int16_t* q = grid.point(p);
    for (int k = 0; k < f.group; ++k) {
      const double qv = double(q[k] + delta);
      r.sumqx += double(wg[k]) * ag[k] * qv;
      r.sumq2 += double(wg[k]) * qv * qv;
    }
    r.err += err;
  }
  return r;
}

// Step 2 of the search (see the top) for one block of f.block values: the best float scale (and, for
// IQ1_S, the block's shift sign through *delta_out). *curvature receives sum w q^2 of its points: the
// block's error grows by about curvature * (s' - s)^2 when the scale is stored as s'.
float block_scale(const GridIndex& grid, const float* a, const float* w, int* delta_out, double* curvature) {
  const GridFormat& f = grid.format();
  *delta_out = f.delta == Delta::kNone ? 0 : 1;
  *curvature = 0.0;
  float amax = 0.0f;
  for (int i = 0; i < f.block; ++i) amax = std::max(amax, std::fabs(a[i]));
  if (!(amax > kTiny)) return 0.0f;
  int point[32];
  bool neg[32];
  const int ndelta = f.delta == Delta::kPerBlock ? 2 : 1;
  float best_s = 0.0f;
  double best_score = 0.0;
  const float top = grid.top_level() + (f.delta == Delta::kNone ? 0.0f : 1.0f);
  for (int dsel = 0; dsel < ndelta; ++dsel) {
    const int delta = f.delta == Delta::kPerBlock ? (dsel == 0 ? 1 : -1) : (f.delta == Delta::kNone ? 0 : 1);
    float cand_best_s = 0.0f;
    double cand_best_score = 0.0;
    for (int k = -f.scale_steps; k <= f.scale_steps; ++k) {
      const float s = amax / (top * (1.0f + 0.25f / float(f.scale_steps) * float(k)));
      const BlockFit r = fit_block(grid, a, w, f.block, s, point, neg, delta);
      if (r.sumq2 > 0 && r.sumqx > 0 && r.sumqx * r.sumqx > cand_best_score * r.sumq2) {
        cand_best_score = r.sumqx * r.sumqx / r.sumq2;
        cand_best_s = float(r.sumqx / r.sumq2);
      }
    }
    for (int iter = 0; iter < 3 && cand_best_s > 0.0f; ++iter) {
      const BlockFit r = fit_block(grid, a, w, f.block, cand_best_s, point, neg, delta);
      if (!(r.sumq2 > 0 && r.sumqx > 0)) break;
      const double score = r.sumqx * r.sumqx / r.sumq2;
      if (!(score > cand_best_score)) break;  // the points did not change (or got worse)
      cand_best_score = score;
      cand_best_s = float(r.sumqx / r.sumq2);
    }
    if (cand_best_score > best_score) {
      best_score = cand_best_score;
      best_s = cand_best_s;
      *delta_out = delta;
    }
  }
  if (best_s > 0.0f) *curvature = best_score / (double(best_s) * best_s);
  return best_s;
}

// The super-block scale, stored as fp16 bits: d such that the scales d * gs * (2 l + 1), l = 0..max_ls,
// lie closest to the blocks' best scales, weighted by each block's curvature (the estimate of step
// 3's error without its point searches). Candidates from the largest scale on the top step to one ls
// step below. The scales are in units of `unit` (the search runs on x / max|x|); the stored d is in
// the values' units, clamped to the largest half.
uint16_t super_block_scale(const GridFormat& f, const float* scale, const double* curvature, int nblocks, float unit) {
  const float gs = iq::grid_scale(f.type);
  float smax = 0.0f;
  for (int b = 0; b < nblocks; ++b) smax = std::max(smax, scale[b]);
  if (!(smax > 0.0f)) return 0;
  uint16_t best = 0;
  double best_err = INFINITY;
  for (int k = 0; k <= 20; ++k) {
    const float want = smax / (gs * (float(2 * f.max_ls + 1) - 0.1f * float(k))) * unit;
    const uint16_t bits = float_to_fp16(std::min(want, 65504.0f));
    const float d = fp16_to_float(bits) / unit;
    if (!(d > 0.0f)) continue;
    double err = 0.0;
    for (int b = 0; b < nblocks; ++b) {
      const int l = clampi(nearest_int((scale[b] / (d * gs) - 1.0f) * 0.5f), 0, f.max_ls);
      const double e = double(d) * gs * (2 * l + 1) - scale[b];
      err += curvature[b] * e * e;
    }
    if (err < best_err) {
      best_err = err;
      best = bits;
    }
  }
  return best;
}

// The whole search for one super-block of 256 values.
void search_super_block(const GridIndex& grid, const float* x, const float* imp, SuperBlock* sb) {
  const GridFormat& f = grid.format();
  float w[QK_K], a[QK_K], xn[QK_K];
  *sb = SuperBlock();
  float amax = 0.0f;
  for (int i = 0; i < QK_K; ++i) amax = std::max(amax, std::fabs(x[i]));  // NaN: ignored here...
  double sumx2 = 0;
  for (int i = 0; i < QK_K; ++i) sumx2 += double(x[i]) * x[i];  // ...but not here
  if (!std::isfinite(sumx2) || !(amax > 0.0f)) return;  // all zero or non-finite: stored as zeros
  // The search runs on x / max|x| (so that no square overflows or underflows, for 1e30 rows as for
  // subnormal ones); only the stored d is in the values' units.
  const float inv_amax = 1.0f / amax;
  double sumn2 = 0;
  for (int i = 0; i < QK_K; ++i) {
    xn[i] = x[i] * inv_amax;
    sumn2 += double(xn[i]) * xn[i];
  }
  if (!std::isfinite(inv_amax)) {  // a subnormal max: divide instead (1 / amax overflows)
    sumn2 = 0;
    for (int i = 0; i < QK_K; ++i) {
      xn[i] = x[i] / amax;
      sumn2 += double(xn[i]) * xn[i];
    }
  }
  x = xn;
  block_weights(QK_K, imp, w);
  const float sigma2 = float(2 * sumn2 / QK_K);
  if (!imp || f.sharpen_imp)
    for (int i = 0; i < QK_K; ++i) w[i] *= std::sqrt(sigma2 + x[i] * x[i]);

  // 1. signs
  for (int i = 0; i < QK_K; ++i) a[i] = f.signs == Signs::kNone ? x[i] : std::fabs(x[i]);
  if (f.signs != Signs::kNone) {
    for (int s = 0; s < QK_K / 8; ++s) {
      uint8_t bits = 0;
      for (int k = 0; k < 8; ++k)
        if (x[8 * s + k] < 0) bits |= uint8_t(1 << k);
      if (f.signs == Signs::kParity && (__builtin_popcount(bits) & 1)) {
        int kmin = 0;
        for (int k = 1; k < 8; ++k)
          if (w[8 * s + k] * x[8 * s + k] * x[8 * s + k] < w[8 * s + kmin] * x[8 * s + kmin] * x[8 * s + kmin]) kmin = k;
        bits ^= uint8_t(1 << kmin);
        a[8 * s + kmin] = -a[8 * s + kmin];
      }
      sb->sign[s] = bits;
    }
  }

  // 2. block scales
  const int nblocks = QK_K / f.block;
  float scale[16];
  int block_delta[16];
  double curvature[16];
  for (int b = 0; b < nblocks; ++b)
    scale[b] = block_scale(grid, a + b * f.block, w + b * f.block, &block_delta[b], &curvature[b]);

  // 3. stored scales
  // value = d * grid_scale * (2 ls + 1) * q with q in the units of the grid index (IQ1: 8 grid +- 1)
  const float gs = iq::grid_scale(f.type);
  sb->d_bits = super_block_scale(f, scale, curvature, nblocks, amax);
  const float d = fp16_to_float(sb->d_bits) / amax;  // in the search's units
  const int groups_per_block = f.block / f.group;
  int point[32];
  bool neg[32];
  for (int b = 0; b < nblocks; ++b) {
    const float* ab = a + b * f.block;
    const float* wb = w + b * f.block;
    int* out_point = sb->point + b * groups_per_block;
    bool* out_neg = sb->neg_delta + b * groups_per_block;
    if (!(d > 0.0f)) {
      sb->ls[b] = 0;
      continue;
    }
    const int l0 = clampi(nearest_int((scale[b] / (d * gs) - 1.0f) * 0.5f), 0, f.max_ls);
    double best_err = INFINITY;
    for (int l = std::max(0, l0 - 1); l <= std::min(f.max_ls, l0 + 1); ++l) {
      const float s = d * gs * float(2 * l + 1);
      const int delta = block_delta[b];  // IQ1_M: 1 (fit_block chooses per group)
      const BlockFit r = fit_block(grid, ab, wb, f.block, s, point, neg, delta);
      if (r.err < best_err) {
        best_err = r.err;
        sb->ls[b] = l;
        std::memcpy(out_point, point, sizeof(int) * size_t(groups_per_block));
        for (int g = 0; g < groups_per_block; ++g) out_neg[g] = f.delta == Delta::kPerGroup ? neg[g] : delta < 0;
      }
    }
  }
}

// ---- packing: one function per type, the inverse of iquant_grid_blocks.h's unpack_<type> ----

uint32_t ksign7(uint8_t sign_byte) { return sign_byte & 127u; }  // the 8th bit is the parity

void pack_iq2_xxs(const SuperBlock& sb, void* out) {
  iq::block_iq2_xxs* b = static_cast<iq::block_iq2_xxs*>(out);
  b->d = sb.d_bits;
  for (int j = 0; j < 8; ++j) {
    uint32_t idx = 0, aux = uint32_t(sb.ls[j]) << 28;
    for (int l = 0; l < 4; ++l) {
      idx |= uint32_t(sb.point[4 * j + l]) << (8 * l);
      aux |= ksign7(sb.sign[4 * j + l]) << (7 * l);
    }
    std::memcpy(b->qs + 4 * j, &idx, 4);
    std::memcpy(b->qs + 4 * j + 2, &aux, 4);
  }
}

void pack_iq2_xs(const SuperBlock& sb, void* out) {
  iq::block_iq2_xs* b = static_cast<iq::block_iq2_xs*>(out);
  b->d = sb.d_bits;
  for (int k = 0; k < 32; ++k) b->qs[k] = uint16_t(sb.point[k] | (ksign7(sb.sign[k]) << 9));
  for (int j = 0; j < 8; ++j) b->scales[j] = uint8_t(sb.ls[2 * j] | (sb.ls[2 * j + 1] << 4));
}

void pack_iq2_s(const SuperBlock& sb, void* out) {
  iq::block_iq2_s* b = static_cast<iq::block_iq2_s*>(out);
  b->d = sb.d_bits;
  std::memset(b->qh, 0, sizeof b->qh);
  for (int k = 0; k < 32; ++k) {
    b->qs[k] = uint8_t(sb.point[k] & 255);
    b->qh[k / 4] |= uint8_t((sb.point[k] >> 8) << (2 * (k % 4)));
    b->qs[32 + k] = sb.sign[k];
  }
  for (int j = 0; j < 8; ++j) b->scales[j] = uint8_t(sb.ls[2 * j] | (sb.ls[2 * j + 1] << 4));
}

void pack_iq3_xxs(const SuperBlock& sb, void* out) {
  iq::block_iq3_xxs* b = static_cast<iq::block_iq3_xxs*>(out);
  b->d = sb.d_bits;
  for (int k = 0; k < 64; ++k) b->qs[k] = uint8_t(sb.point[k]);
  for (int j = 0; j < 8; ++j) {
    uint32_t aux = uint32_t(sb.ls[j]) << 28;
    for (int l = 0; l < 4; ++l) aux |= ksign7(sb.sign[4 * j + l]) << (7 * l);
    std::memcpy(b->qs + QK_K / 4 + 4 * j, &aux, 4);
  }
}

void pack_iq3_s(const SuperBlock& sb, void* out) {
  iq::block_iq3_s* b = static_cast<iq::block_iq3_s*>(out);
  b->d = sb.d_bits;
  std::memset(b->qh, 0, sizeof b->qh);
  std::memset(b->scales, 0, sizeof b->scales);
  for (int k = 0; k < 64; ++k) {
    b->qs[k] = uint8_t(sb.point[k] & 255);
    b->qh[k / 8] |= uint8_t((sb.point[k] >> 8) << (k % 8));
  }
  std::memcpy(b->signs, sb.sign, 32);
  for (int j = 0; j < 8; ++j) b->scales[j / 2] |= uint8_t(sb.ls[j] << (4 * (j % 2)));
}

void pack_iq1_s(const SuperBlock& sb, void* out) {
  iq::block_iq1_s* b = static_cast<iq::block_iq1_s*>(out);
  b->d = sb.d_bits;
  for (int j = 0; j < 8; ++j) {
    unsigned qh = unsigned(sb.ls[j]) << 12;
    if (sb.neg_delta[4 * j]) qh |= 0x8000u;
    for (int l = 0; l < 4; ++l) {
      b->qs[4 * j + l] = uint8_t(sb.point[4 * j + l] & 255);
      qh |= unsigned(sb.point[4 * j + l] >> 8) << (3 * l);
    }
    b->qh[j] = uint16_t(qh);
  }
}

void pack_iq1_m(const SuperBlock& sb, void* out) {
  iq::block_iq1_m* b = static_cast<iq::block_iq1_m*>(out);
  std::memset(b->qh, 0, sizeof b->qh);
  for (int k = 0; k < 32; ++k) {
    b->qs[k] = uint8_t(sb.point[k] & 255);
    const unsigned nib = unsigned(sb.point[k] >> 8) | (sb.neg_delta[k] ? 8u : 0u);
    b->qh[k / 2] |= uint8_t(nib << (4 * (k % 2)));
  }
  uint16_t sc[4] = {};
  for (int m = 0; m < 16; ++m) sc[m / 4] |= uint16_t(sb.ls[m] << (3 * (m % 4)));
  for (int w = 0; w < 4; ++w) sc[w] |= uint16_t(((sb.d_bits >> (4 * w)) & 15) << 12);
  std::memcpy(b->scales, sc, 8);
}

template <GGMLType kType, size_t kBytes, void (*Pack)(const SuperBlock&, void*)>
void quantize_grid(const float* x, void* y, int64_t n, const float* imp) {
  const GridIndex& grid = grid_index(kType);
  uint8_t* out = static_cast<uint8_t*>(y);
  SuperBlock sb;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    search_super_block(grid, x + QK_K * i, imp ? imp + QK_K * i : nullptr, &sb);
    Pack(sb, out + size_t(i) * kBytes);
  }
}

}  // namespace

void quantize_iq2_xxs_search(const float* x, void* y, int64_t n, const float* imp) {
  quantize_grid<GGMLType::IQ2_XXS, sizeof(iq::block_iq2_xxs), pack_iq2_xxs>(x, y, n, imp);
}
void quantize_iq2_xs_search(const float* x, void* y, int64_t n, const float* imp) {
  quantize_grid<GGMLType::IQ2_XS, sizeof(iq::block_iq2_xs), pack_iq2_xs>(x, y, n, imp);
}
void quantize_iq2_s_search(const float* x, void* y, int64_t n, const float* imp) {
  quantize_grid<GGMLType::IQ2_S, sizeof(iq::block_iq2_s), pack_iq2_s>(x, y, n, imp);
}
void quantize_iq3_xxs_search(const float* x, void* y, int64_t n, const float* imp) {
  quantize_grid<GGMLType::IQ3_XXS, sizeof(iq::block_iq3_xxs), pack_iq3_xxs>(x, y, n, imp);
}
void quantize_iq3_s_search(const float* x, void* y, int64_t n, const float* imp) {
  quantize_grid<GGMLType::IQ3_S, sizeof(iq::block_iq3_s), pack_iq3_s>(x, y, n, imp);
}
void quantize_iq1_s_search(const float* x, void* y, int64_t n, const float* imp) {
  quantize_grid<GGMLType::IQ1_S, sizeof(iq::block_iq1_s), pack_iq1_s>(x, y, n, imp);
}
void quantize_iq1_m_search(const float* x, void* y, int64_t n, const float* imp) {
  quantize_grid<GGMLType::IQ1_M, sizeof(iq::block_iq1_m), pack_iq1_m>(x, y, n, imp);
}

void quantize_row_iq2_xxs_ref(const float* x, void* y, int64_t n) { quantize_iq2_xxs_search(x, y, n, nullptr); }
void quantize_row_iq2_xs_ref(const float* x, void* y, int64_t n) { quantize_iq2_xs_search(x, y, n, nullptr); }
void quantize_row_iq2_s_ref(const float* x, void* y, int64_t n) { quantize_iq2_s_search(x, y, n, nullptr); }
void quantize_row_iq3_xxs_ref(const float* x, void* y, int64_t n) { quantize_iq3_xxs_search(x, y, n, nullptr); }
void quantize_row_iq3_s_ref(const float* x, void* y, int64_t n) { quantize_iq3_s_search(x, y, n, nullptr); }
void quantize_row_iq1_s_ref(const float* x, void* y, int64_t n) { quantize_iq1_s_search(x, y, n, nullptr); }
void quantize_row_iq1_m_ref(const float* x, void* y, int64_t n) { quantize_iq1_m_search(x, y, n, nullptr); }

}  // namespace edgellama
