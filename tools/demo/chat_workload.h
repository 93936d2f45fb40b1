// A synthetic multi-turn chat workload for the warm-start demo: shared
// system prompts picked with Zipf popularity, conversations whose every turn
// re-sends the whole history, interleaved the way a busy server sees them.
// Fully deterministic for a given seed.
#ifndef KVTIER_TOOLS_DEMO_CHAT_WORKLOAD_H_
#define KVTIER_TOOLS_DEMO_CHAT_WORKLOAD_H_

#include <cstdint>
#include <span>
#include <vector>

#include "kvtier/layout.h"

namespace kvtier::demo {

struct ChatWorkloadParams {
  int system_prompts = 6;
  int conversations = 40;
  int turns = 4;
  uint64_t seed = 2026;
};

// The requests (prompts, as token ids) in the order a server receives them.
std::vector<std::vector<Token>> MakeChatWorkload(const ChatWorkloadParams& params);

// Fills `out` (layout.block_bytes() bytes) with K/V-like values that are a
// pure function of `block_key`: per-channel scales and a few outlier
// channels, encoded in layout.dtype. Lets every run check hits bit-exact.
void FillBlock(const BlockLayout& layout, uint64_t block_key, std::span<std::byte> out);

}  // namespace kvtier::demo

#endif  // KVTIER_TOOLS_DEMO_CHAT_WORKLOAD_H_
