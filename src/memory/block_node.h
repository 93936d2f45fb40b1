// BlockNode: one block resident in the memory tier.
#ifndef KVTIER_MEMORY_BLOCK_NODE_H_
#define KVTIER_MEMORY_BLOCK_NODE_H_

#include <cstdint>

#include "kvtier/hash.h"
#include "memory/block_buffer.h"

namespace kvtier::internal {

// A block resident in the memory tier. Owned by MemoryTier; a Lease holds
// pointers to pinned nodes, which are never freed while pinned.
struct BlockNode {
  enum class List : uint8_t { kNone, kLru, kInUse };

  Hash128 hash;    // h(depth): the block's key
  Hash128 parent;  // h(depth-1), or the namespace fingerprint at depth 0
  BlockNode* prev = nullptr;  // links in the LRU or in-use list
  BlockNode* next = nullptr;
  BlockNode* bucket_next = nullptr;  // hash-table chain
  BlockBuffer buffer;
  uint64_t tick = 0;            // last use (MemoryTier's logical clock)
  uint32_t refs = 0;            // pins held by leases
  uint32_t resident_children = 0;
  uint32_t depth = 0;
  uint32_t disk_touch_ms = 0;   // when the disk copy's recency was last refreshed
  List list = List::kNone;      // kNone: unpinned but has resident children
  bool on_disk = false;         // the store holds (or held) this block
  bool counted_in_parent = false;  // parent's resident_children includes us
};

}  // namespace kvtier::internal

#endif  // KVTIER_MEMORY_BLOCK_NODE_H_
