// Synthetic attention K/V payloads with the statistics that decide how well
// real ones compress, generated deterministically (fixed seed).
//
// The model ("profile") is fixed by the generator's seed and the layout:
//  - every channel (layer, K or V, kv head, head_dim index) has a scale drawn
//    log-uniform in [2^-5, 2^1];
//  - keys also get a per-channel mean (uniform in [-2, 2] x scale): rotary
//    keys carry large, channel-stable offsets;
//  - 1 channel in 64 is an outlier channel whose scale is multiplied by a
//    factor drawn log-uniform in [16, 64] (the massive-activation channels of
//    real keys);
//  - each element is mean + scale * z, z ~ N(0, 1) drawn per (token,
//    channel) from a per-block stream keyed by the block's key;
//  - values are rounded to the dtype with round-to-nearest-even (f16 keeps
//    subnormals; bf16 is the upper half of f32 after RNE; f32 as is).
//
// Fill(key) gives the same bytes for the same key, so a block re-inserted
// under its prefix hash is identical to the first copy.
#ifndef KVTIER_TOOLS_BENCH_KV_DATA_H_
#define KVTIER_TOOLS_BENCH_KV_DATA_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kvtier/layout.h"

namespace kvtier::bench {

// Round-to-nearest-even conversions (exposed for the generator's self-check).
uint16_t FloatToHalfRne(float f);
uint16_t FloatToBf16Rne(float f);
float HalfToFloat(uint16_t h);

class KvDataGenerator {
 public:
  static constexpr uint64_t kDefaultSeed = 0x6b767469657231ull;  // "kvtier1"

  // REQUIRES: layout.Validate().ok() and a 2- or 4-byte float dtype, or a
  // 1-byte dtype (then values are quantized to int8 raw bytes).
  explicit KvDataGenerator(const BlockLayout& layout, uint64_t seed = kDefaultSeed);

  const BlockLayout& layout() const { return layout_; }

  // Fills `out` (exactly layout().block_bytes() bytes) with the block keyed
  // by `key`. Thread-safe (const).
  void Fill(uint64_t key, std::span<std::byte> out) const;
  std::vector<std::byte> Block(uint64_t key) const;

  // One line naming the generator and its parameters, for bench output.
  std::string Describe() const;

 private:
  BlockLayout layout_;
  uint64_t seed_;
  // Per channel of one K or V tensor, for every layer: [layer][kv][head*dim].
  std::vector<float> scale_;
  std::vector<float> mean_;
};

}  // namespace kvtier::bench

#endif  // KVTIER_TOOLS_BENCH_KV_DATA_H_
