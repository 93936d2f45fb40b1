// Byte-shuffle filter (Blosc's "shuffle"): regroups the bytes of fixed-size
// elements so that byte j of every element is contiguous. For element size k
// and n = size / k elements:
//
//   shuffled[j*n + i] = raw[i*k + j]      for i < n, j < k
//
// For f16/bf16/f32 K/V values the sign+exponent bytes, which vary little,
// gather into long runs that zstd compresses far better than the interleaved
// original. The filter is a pure permutation, so it is lossless.
//
// The 2- and 4-byte cases (f16, bf16, f32) are on the spill and promote hot
// paths and use SSE2 where available; other sizes take a plain loop.
#ifndef KVTIER_CODEC_SHUFFLE_H_
#define KVTIER_CODEC_SHUFFLE_H_

#include <cstddef>
#include <span>

namespace kvtier::codec {

// Writes the shuffled form of `raw` into `shuffled`. The trailing
// raw.size() % element_size bytes (none for a block payload) are copied
// unchanged to the end.
// REQUIRES: element_size > 0, raw.size() == shuffled.size(), no overlap.
void ShuffleBytes(size_t element_size, std::span<const std::byte> raw,
                  std::span<std::byte> shuffled);

// The inverse of ShuffleBytes() for the same element_size.
// REQUIRES: element_size > 0, shuffled.size() == raw.size(), no overlap.
void UnshuffleBytes(size_t element_size, std::span<const std::byte> shuffled,
                    std::span<std::byte> raw);

}  // namespace kvtier::codec

#endif  // KVTIER_CODEC_SHUFFLE_H_
