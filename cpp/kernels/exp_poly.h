// The constants of the fast e^x used across the kernels and the sampler: x = n*ln2 + r with
// n = round(x * log2(e)), r reduced by ln2 in two parts (Cody-Waite: the high part has few mantissa
// bits, so n * kExpLn2Hi is exact), e^r ~ 1 + r + r^2 * P(r) with Cephes' expf polynomial P (degree
// 5, highest coefficient first), 2^n built in the float exponent field. One table for every
// vector width (exp_avx2.h, attention_avx512.cpp, the sampler's top-p normalizer): same constants,
// same bits per lane where the operations match. constexpr: internal linkage, safe in ISA files.
#pragma once

namespace edgellama {
namespace exp_poly {

constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f;
constexpr float kLn2Lo = -2.12194440e-4f;
constexpr float kP[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                         4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};
constexpr float kMinArg = -87.0f;  // 2^n stays a normal float: e^x below this comes out ~1.6e-38
constexpr float kMaxArg = 88.0f;   // and above it saturates at ~1.65e38

}  // namespace exp_poly
}  // namespace edgellama
