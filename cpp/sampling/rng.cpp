// MT19937 (Matsumoto & Nishimura 1998) written from the C++ standard's definition of std::mt19937
// ([rand.eng.mers] with the [rand.predef] parameters), and libstdc++'s generate_canonical<double, 53>
// arithmetic for the uniform double. See edgellama/rng.h for why neither comes from <random>.
#include "edgellama/rng.h"

namespace edgellama {

namespace {
// std::mt19937's parameters: w = 32, n = 624, m = 397, r = 31.
constexpr int kM = 397;
constexpr uint32_t kMatrixA = 0x9908B0DFu;  // a
constexpr uint32_t kUpperMask = 0x80000000u;  // the top w - r bits
constexpr uint32_t kLowerMask = 0x7FFFFFFFu;  // the low r bits
constexpr uint32_t kInitMultiplier = 1812433253u;  // f
}  // namespace

void Rng::seed_with(uint64_t seed) {
  mt_[0] = uint32_t(seed);  // seed mod 2^32
  for (int i = 1; i < kN; ++i)
    mt_[i] = kInitMultiplier * (mt_[i - 1] ^ (mt_[i - 1] >> 30)) + uint32_t(i);  // arithmetic mod 2^32
  next_ = kN;
}

void Rng::twist() {
  for (int i = 0; i < kN; ++i) {
    const uint32_t y = (mt_[i] & kUpperMask) | (mt_[(i + 1) % kN] & kLowerMask);
    mt_[i] = mt_[(i + kM) % kN] ^ (y >> 1) ^ ((y & 1u) ? kMatrixA : 0u);
  }
  next_ = 0;
}

uint32_t Rng::next_u32() {
  if (next_ >= kN) twist();
  uint32_t y = mt_[next_++];
  // tempering: u = 11, (s, b) = (7, 0x9D2C5680), (t, c) = (15, 0xEFC60000), l = 18
  y ^= y >> 11;
  y ^= (y << 7) & 0x9D2C5680u;
  y ^= (y << 15) & 0xEFC60000u;
  y ^= y >> 18;
  return y;
}

double Rng::canonical(uint32_t low, uint32_t high) {
  // generate_canonical<double, 53> with a 32-bit generator takes k = ceil(53 / 32) = 2 outputs,
  // the first as the low word. Their sum is rounded once to double (round to nearest even), so it
  // can reach 2^64: then the result would be 1, which the distribution must not return.
  const double sum = double(low) + double(high) * 4294967296.0;  // exact product, one rounding (also if fused)
  const double u = sum * (1.0 / 18446744073709551616.0);         // exact: a power of two
  return u < 1.0 ? u : 1.0 - 1.0 / 9007199254740992.0;           // nextafter(1.0, 0.0), exact
}

}  // namespace edgellama
