// The reference policies `replay` compares the cache with, on prefix hashes
// only (no payloads):
//  - ChainEndLru: an exact memory-only LRU that evicts the ends of prefix
//    chains first. Capacity in blocks. A request matches its longest resident
//    prefix, stamps every matched block as just used (in prefix order),
//    pins the matched blocks while it inserts its uncached blocks (each
//    stamped as just used), and unpins them. Victims are the least recently
//    used unpinned blocks with no resident child; when there is none, the
//    insert (and the rest of that request) is skipped. O(log n) per block.
//  - TraceUpperBound: a block is servable if it was ever inserted before
//    (an unbounded cache): the hit rate no policy can beat.
#ifndef KVTIER_TOOLS_BENCH_REFERENCE_LRU_H_
#define KVTIER_TOOLS_BENCH_REFERENCE_LRU_H_

#include <cstddef>
#include <cstdint>
#include <set>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "kvtier/hash.h"

namespace kvtier::bench {

class ChainEndLru {
 public:
  explicit ChainEndLru(size_t capacity_blocks);

  // Replays one request given the prefix hashes of its full blocks; returns
  // the number of leading blocks that hit.
  size_t Request(std::span<const Hash128> hashes);

  size_t resident() const { return index_.size(); }
  uint64_t evictions() const { return evictions_; }
  uint64_t rejected() const { return rejected_; }

 private:
  struct Node {
    uint32_t parent = kNone;  // index of the parent node, kNone at depth 0
    uint32_t children = 0;    // resident children
    uint64_t stamp = 0;
    bool pinned = false;
    Hash128 hash;
  };
  static constexpr uint32_t kNone = 0xffffffffu;

  bool IsEvictable(const Node& n) const { return n.children == 0 && !n.pinned; }
  void MakeCandidate(uint32_t id);
  void DropCandidate(uint32_t id);
  bool EvictOne();
  uint32_t Allocate(const Hash128& h, uint32_t parent);

  size_t capacity_;
  uint64_t clock_ = 0;
  uint64_t evictions_ = 0;
  uint64_t rejected_ = 0;
  std::vector<Node> nodes_;
  std::vector<uint32_t> free_;
  std::unordered_map<Hash128, uint32_t, Hash128Hasher> index_;
  std::set<std::pair<uint64_t, uint32_t>> candidates_;  // (stamp, node) of evictable leaves
};

class TraceUpperBound {
 public:
  // Returns the number of leading blocks inserted by earlier requests, then
  // records all of them as inserted.
  size_t Request(std::span<const Hash128> hashes);
  size_t distinct_blocks() const { return seen_.size(); }

 private:
  std::unordered_set<Hash128, Hash128Hasher> seen_;
};

}  // namespace kvtier::bench

#endif  // KVTIER_TOOLS_BENCH_REFERENCE_LRU_H_
