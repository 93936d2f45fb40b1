// MemoryTier: the resident blocks of a cache, keyed by prefix hash.
//
// The chained hash already names a block's whole path, so the "trie" is a
// hash index of BlockNodes with parent hashes: nodes in a slab (one cache
// line each, stable addresses), an open-addressing index of 8-byte slots
// (hash_index.h), and intrusive lists linked by 32-bit slab index. Each node
// is on exactly one of:
//   - the in-use list: pinned by at least one lease (never evicted);
//   - the LRU list: unpinned *leaves* (no resident children), oldest first;
//   - neither: unpinned nodes that still have resident children.
// Eviction pops the cold end of the LRU list in O(1), so the ends of prefix
// chains go before their heads; a parent whose last resident child is
// evicted becomes a leaf and is placed by its own last use.
//
// Thread-safety: all methods lock an internal mutex; no I/O, compression or
// payload copy happens under it. Evicted buffers are handed back to the
// caller, which spills or frees them after the lock is dropped.
#ifndef KVTIER_MEMORY_MEMORY_TIER_H_
#define KVTIER_MEMORY_MEMORY_TIER_H_

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "kvtier/hash.h"
#include "kvtier/status.h"
#include "memory/block_node.h"
#include "memory/hash_index.h"
#include "memory/node_slab.h"

namespace kvtier::internal {

// A block leaving memory (evicted, or collected for Flush).
struct EvictedBlock {
  Hash128 hash;
  Hash128 parent;
  uint32_t depth = 0;
  bool on_disk = false;
  BlockBuffer buffer;
};

struct MemoryTierStats {
  uint64_t resident_blocks = 0;
  uint64_t pinned_blocks = 0;
  uint64_t bytes = 0;
  uint64_t budget = 0;
  uint64_t overhead_bytes = 0;
  uint64_t evictions = 0;
};

class MemoryTier {
 public:
  // `budget_bytes` bounds the payload bytes of resident blocks.
  explicit MemoryTier(uint64_t budget_bytes);
  ~MemoryTier();
  MemoryTier(const MemoryTier&) = delete;
  MemoryTier& operator=(const MemoryTier&) = delete;

  // Pins the resident blocks hashes[from], hashes[from+1], ... while each is
  // resident, its parent hash is the previous hash in the chain (`seed` for
  // index 0) and its tokens equal tokens[i*bs .. (i+1)*bs). Appends the
  // pinned nodes to `pinned` and returns the index of the first block not
  // served. Nodes on disk whose disk recency is older than
  // `touch_interval_ms` (at `now_ms`) get their hash appended to `to_touch`.
  size_t PinRun(std::span<const Hash128> hashes, size_t from, const Hash128& seed,
                std::span<const Token> tokens, uint32_t block_size, uint32_t now_ms,
                uint32_t touch_interval_ms, std::vector<BlockNode*>* pinned,
                std::vector<Hash128>* to_touch);

  // Number of consecutive blocks hashes[from..] (at most `max`) that are not
  // resident.
  size_t MissingRun(std::span<const Hash128> hashes, size_t from, size_t max);

  // Unpins nodes returned by PinRun/Insert. Releasing deepest first keeps
  // the leaf at the hot end of the LRU list.
  void Unpin(std::span<BlockNode* const> nodes);

  // Makes `buffer` resident as block `hash`. If the hash is already resident
  // the existing node is used (no second copy) and `*inserted` is false.
  // With `pin`, the node is pinned and returned in `*node`. Evicts unpinned
  // leaves, coldest first, into `evicted` to make room; returns Full (and
  // changes nothing) when the budget cannot be met because every block is
  // pinned or the block is larger than the whole budget.
  Status Insert(const Hash128& hash, const Hash128& parent, uint32_t depth, BlockBuffer buffer,
                bool on_disk, bool pin, BlockNode** node, bool* inserted,
                std::vector<EvictedBlock>* evicted);

  // Marks resident blocks as held by the store.
  void MarkOnDisk(std::span<const Hash128> hashes, uint32_t now_ms);

  // Copies out (sharing buffers) every resident block not marked on disk.
  void CollectNotOnDisk(std::vector<EvictedBlock>* out);

  // Evicts every unpinned block into `evicted`.
  void EvictAll(std::vector<EvictedBlock>* evicted);

  MemoryTierStats Stats() const;

  // Checks every internal invariant (lists, counts, bytes); for tests.
  // Returns a description of the first violation, or "" when all hold.
  std::string CheckInvariants() const;

 private:
  BlockNode* Node(uint32_t i) const { return slab_.Get(i); }
  BlockNode* Find(const Hash128& hash) const { return index_.Find(hash); }
  void ListRemove(BlockNode* node);
  void PushHot(uint32_t list, BlockNode* node);
  void PushCold(BlockNode* node);
  void LinkAfter(BlockNode* after, BlockNode* node, uint32_t list);
  void PlaceLeafByTick(BlockNode* node);
  void PinLocked(BlockNode* node);
  void EvictOneLocked(std::vector<EvictedBlock>* evicted);
  void RemoveLocked(BlockNode* node, std::vector<EvictedBlock>* evicted);
  std::string CheckListsLocked() const;

  // Slab indices of the two list heads (dummy nodes).
  static constexpr uint32_t kLruHead = 0;    // Node(kLruHead)->next is the coldest leaf
  static constexpr uint32_t kInUseHead = 1;  // pinned nodes

  mutable std::mutex mu_;
  const uint64_t budget_;
  // Guarded by mu_:
  NodeSlab slab_;
  HashIndex index_{&slab_};
  uint64_t bytes_ = 0;
  uint64_t buffer_overhead_ = 0;  // buffer bytes beyond the payloads (headers, tokens)
  uint64_t pinned_ = 0;
  uint32_t tick_ = 0;
  uint64_t evictions_ = 0;
};

}  // namespace kvtier::internal

#endif  // KVTIER_MEMORY_MEMORY_TIER_H_
