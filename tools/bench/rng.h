// A small deterministic random number generator for the bench's synthetic
// data and traces: the same seed gives the same stream on every machine and
// standard library (std::*_distribution do not promise that).
#ifndef KVTIER_TOOLS_BENCH_RNG_H_
#define KVTIER_TOOLS_BENCH_RNG_H_

#include <cstdint>

namespace kvtier::bench {

// wyrand (Wang Yi): 64-bit state, passes BigCrush, a few cycles per draw.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}

  uint64_t Next() {
    state_ += 0xa0761d6478bd642full;
    __uint128_t t = static_cast<__uint128_t>(state_) * (state_ ^ 0xe7037ed1a0b428dbull);
    return static_cast<uint64_t>(t >> 64) ^ static_cast<uint64_t>(t);
  }
  // Uniform in [0, 1).
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  // Uniform in [0, n) (Lemire's multiply-shift; bias < 2^-32 for n < 2^32).
  uint32_t Below(uint32_t n) {
    return static_cast<uint32_t>((static_cast<__uint128_t>(Next()) * n) >> 64);
  }
  // Uniform in [lo, hi]. REQUIRES: lo <= hi.
  uint32_t Between(uint32_t lo, uint32_t hi) { return lo + Below(hi - lo + 1); }

 private:
  uint64_t state_;
};

// Mixes two words into a seed for an independent stream.
inline uint64_t MixSeed(uint64_t a, uint64_t b) {
  Rng r(a ^ (b * 0x9E3779B97F4A7C15ull));
  r.Next();
  return r.Next();
}

}  // namespace kvtier::bench

#endif  // KVTIER_TOOLS_BENCH_RNG_H_
