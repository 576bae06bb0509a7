// The sampler's random numbers: the same stream llama.cpp's dist sampler draws, so a seed gives the
// same tokens in edgellama and in llama.cpp / llama-cpp-python wherever the logits agree.
//
// llama.cpp (src/llama-sampler.cpp, llama_sampler_init_dist / llama_sampler_dist_apply) seeds a
// std::mt19937 with the uint32 seed and takes one std::uniform_real_distribution<double>(0, 1) draw
// per sampled token. std::mt19937 is specified bit for bit by the C++ standard, but the
// distribution is not: libstdc++ (what llama.cpp's Linux builds use), libc++ and MSVC compute it
// differently. So neither comes from <random> here: both are written out, the generator from the
// standard's definition ([rand.eng.mers], [rand.predef]) and the double with libstdc++'s
// generate_canonical<double, 53> arithmetic, and the stream is the same on every standard library.
#pragma once
#include <cstdint>

namespace edgellama {

class Rng {
 public:
  explicit Rng(uint64_t seed = 5489u) { seed_with(seed); }

  // std::mt19937::seed(seed): the seed is taken mod 2^32, as std::mt19937 and llama.cpp's uint32
  // seed (llama-cpp-python passes Python ints through ctypes.c_uint32) both do.
  void seed_with(uint64_t seed);

  // The next 32-bit output of std::mt19937.
  uint32_t next_u32();

  // Uniform in [0, 1) exactly as libstdc++'s std::uniform_real_distribution<double>(0, 1) computes
  // it from two outputs a, b: double(a) + double(b) * 2^32 (one double rounding), times 2^-64, and a
  // result that rounds up to 1 becomes the largest double below 1 (1 - 2^-53).
  double next_double() {
    const uint32_t low = next_u32();  // the first output is the low word
    return canonical(low, next_u32());
  }

  // The uniform double libstdc++'s generate_canonical<double, 53> makes of two 32-bit outputs.
  static double canonical(uint32_t low, uint32_t high);

 private:
  static constexpr int kN = 624;  // state words of MT19937
  uint32_t mt_[kN];
  int next_ = kN;  // index of the next state word to temper; kN = twist first
  void twist();
};

}  // namespace edgellama
