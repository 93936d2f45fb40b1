// BlockNode: one block resident in the memory tier.
#ifndef KVTIER_MEMORY_BLOCK_NODE_H_
#define KVTIER_MEMORY_BLOCK_NODE_H_

#include <cstdint>

#include "kvtier/hash.h"
#include "memory/block_buffer.h"

namespace kvtier::internal {

// A block resident in the memory tier: exactly one 64-byte cache line, the
// fields a lookup hit reads and writes. Nodes live in MemoryTier's slab
// (never moved, so a Lease may hold pointers to pinned nodes, which are never
// freed while pinned) and link to each other by 32-bit slab index. The
// fields a hit does not need (depth, disk recency) are kept beside the slab.
struct alignas(64) BlockNode {
  // Which intrusive list the node is on (the `list` field).
  static constexpr uint32_t kNone = 0;   // unpinned but has resident children
  static constexpr uint32_t kLru = 1;    // unpinned leaf
  static constexpr uint32_t kInUse = 2;  // pinned by a lease
  // Upper bound of resident_children (28 bits; each child is a resident block).
  static constexpr uint32_t kMaxChildren = (1u << 28) - 1;

  Hash128 hash;        // h(depth): the block's key
  Hash128 parent;      // h(depth-1), or the namespace fingerprint at depth 0
  BlockBuffer buffer;  // token ids (to verify hits) and payload
  uint32_t prev = 0;   // slab indices of the neighbours in the LRU or in-use list
  uint32_t next = 0;   // (on the free list: the next free node)
  uint32_t tick = 0;   // last use (MemoryTier's logical clock, wraps; compared by difference)
  uint32_t refs = 0;   // pins held by leases
  uint32_t self = 0;   // this node's slab index
  uint32_t resident_children : 28 = 0;
  uint32_t list : 2 = kNone;
  uint32_t on_disk : 1 = 0;            // the store holds (or held) this block
  uint32_t counted_in_parent : 1 = 0;  // parent's resident_children includes us
};
static_assert(sizeof(BlockNode) == 64, "a node is one cache line");

}  // namespace kvtier::internal

#endif  // KVTIER_MEMORY_BLOCK_NODE_H_
