"""Reference for the sampler's random numbers (cpp/sampling/rng.cpp), written independently in
Python: std::mt19937 from the C++ standard's definition, and the uniform double llama.cpp's dist
sampler draws (std::uniform_real_distribution<double>(0, 1) as libstdc++ computes it)."""

M32 = 0xFFFFFFFF
ONE_BELOW = 1.0 - 2.0**-53  # nextafter(1.0, 0.0)


def mt19937(seed):
    """std::mt19937 as [rand.eng.mers] defines it (w=32, n=624, m=397, r=31, a=0x9908B0DF, u=11,
    d=0xFFFFFFFF, s=7, b=0x9D2C5680, t=15, c=0xEFC60000, l=18, f=1812433253), seeded with seed mod 2^32."""
    n, m = 624, 397
    x = [seed & M32]
    for i in range(1, n):
        x.append((1812433253 * (x[-1] ^ (x[-1] >> 30)) + i) & M32)
    i = n
    while True:
        if i == n:
            for k in range(n):
                y = (x[k] & 0x80000000) | (x[(k + 1) % n] & 0x7FFFFFFF)
                x[k] = x[(k + m) % n] ^ (y >> 1) ^ (0x9908B0DF if y & 1 else 0)
            i = 0
        y = x[i]
        i += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C5680
        y ^= (y << 15) & 0xEFC60000
        y ^= y >> 18
        yield y


def canonical(low, high):
    """libstdc++'s generate_canonical<double, 53> from two 32-bit outputs: the sum in double (one
    rounding), divided by 2^64, and 1 (a sum rounded up to 2^64) replaced by the largest double < 1."""
    u = (float(low) + float(high) * 2.0**32) / 2.0**64
    return u if u < 1.0 else ONE_BELOW


def uniform_doubles(seed, n):
    g = mt19937(seed)
    return [canonical(next(g), next(g)) for _ in range(n)]
