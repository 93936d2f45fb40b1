// NodeSlab: BlockNodes in fixed chunks, addressed by 32-bit index.
#ifndef KVTIER_MEMORY_NODE_SLAB_H_
#define KVTIER_MEMORY_NODE_SLAB_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <vector>

#include "memory/block_node.h"

namespace kvtier::internal {

// The fields of a node that a lookup hit does not read, kept beside the
// nodes so that the nodes stay one cache line each.
struct NodeColdFields {
  uint32_t depth = 0;
  uint32_t disk_touch_ms = 0;  // when the disk copy's recency was last refreshed
};

// Not thread-safe (MemoryTier's mutex guards it). Nodes never move: chunks
// are only added, and freed nodes are reused through a free list. Get() of
// an index not returned by New() is undefined.
class NodeSlab {
 public:
  static constexpr uint32_t kNil = UINT32_MAX;
  static constexpr uint32_t kChunkShift = 12;
  static constexpr uint32_t kChunkNodes = 1u << kChunkShift;

  BlockNode* Get(uint32_t i) const {
    return &chunks_[i >> kChunkShift]->nodes[i & (kChunkNodes - 1)];
  }
  NodeColdFields* Cold(uint32_t i) const {
    return &chunks_[i >> kChunkShift]->cold[i & (kChunkNodes - 1)];
  }

  // A node with default fields (self set). Throws std::bad_alloc, or
  // std::length_error past 2^32-1 nodes.
  uint32_t New() {
    if (free_ == kNil) AddChunk();
    const uint32_t i = free_;
    BlockNode* n = Get(i);
    free_ = n->next;
    *n = BlockNode{};
    n->self = i;
    *Cold(i) = NodeColdFields{};
    ++live_;
    return i;
  }
  // Returns node `i` to the free list, releasing its buffer.
  void Delete(uint32_t i) {
    BlockNode* n = Get(i);
    n->buffer = BlockBuffer();
    n->next = free_;
    free_ = i;
    --live_;
  }

  size_t live() const { return live_; }
  size_t capacity() const { return chunks_.size() * size_t{kChunkNodes}; }
  size_t heap_bytes() const { return chunks_.size() * sizeof(Chunk) + chunks_.capacity() * sizeof(void*); }

 private:
  struct Chunk {
    BlockNode nodes[kChunkNodes];
    NodeColdFields cold[kChunkNodes];
  };

  void AddChunk() {
    const size_t base = capacity();
    if (base + kChunkNodes > kNil) throw std::length_error("memory tier: more than 2^32-1 blocks");
    chunks_.push_back(std::make_unique<Chunk>());
    // Free list in index order, so consecutive inserts get neighbouring nodes.
    for (uint32_t k = kChunkNodes; k-- > 0;) {
      chunks_.back()->nodes[k].next = free_;
      free_ = static_cast<uint32_t>(base + k);
    }
  }

  std::vector<std::unique_ptr<Chunk>> chunks_;
  uint32_t free_ = kNil;
  size_t live_ = 0;
};

}  // namespace kvtier::internal

#endif  // KVTIER_MEMORY_NODE_SLAB_H_
