// HashIndex: open-addressing index from a block's hash to its slab index.
#ifndef KVTIER_MEMORY_HASH_INDEX_H_
#define KVTIER_MEMORY_HASH_INDEX_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kvtier/hash.h"
#include "memory/node_slab.h"

namespace kvtier::internal {

// Linear probing over 8-byte slots {32-bit tag, slab index}. The tag is 32
// bits of the hash and also picks the home slot (multiply-shift, so the
// capacity need not be a power of two and can grow by 1.5x), so growing and
// deleting (backward shift) never read a node; a probe reads a node only on
// a tag match. Load is kept at most 7/8. Not thread-safe.
class HashIndex {
 public:
  explicit HashIndex(const NodeSlab* slab) : slab_(slab), slots_(kMinSlots) {}

  // The node keyed `hash`, or nullptr.
  BlockNode* Find(const Hash128& hash) const {
    const uint32_t tag = Tag(hash);
    for (size_t i = Home(tag, slots_.size());; i = Next(i)) {
      const Slot s = slots_[i];
      if (s.index == NodeSlab::kNil) return nullptr;
      if (s.tag == tag) {
        BlockNode* n = slab_->Get(s.index);
        if (n->hash == hash) return n;
      }
    }
  }
  // Hints that Find(hash) comes soon: starts loading its home slot, so that
  // a run of lookups overlaps its cache misses instead of taking them in turn.
  void Prefetch(const Hash128& hash) const {
    __builtin_prefetch(&slots_[Home(Tag(hash), slots_.size())]);
  }
  // Adds node `index` (its hash must not be present).
  void Insert(const Hash128& hash, uint32_t index);
  // Removes node `index`, keyed `hash` (which must be present).
  void Remove(const Hash128& hash, uint32_t index);

  size_t size() const { return size_; }
  size_t slots() const { return slots_.size(); }
  size_t heap_bytes() const { return slots_.capacity() * sizeof(Slot); }
  // Calls f(index) for every node in the index.
  template <typename F>
  void ForEach(F&& f) const {
    for (const Slot& s : slots_)
      if (s.index != NodeSlab::kNil) f(s.index);
  }
  // "" when every entry is reachable from its home slot and its node's
  // hash, tag and index agree; else the first violation.
  std::string Check() const;

 private:
  struct Slot {
    uint32_t tag = 0;
    uint32_t index = NodeSlab::kNil;
  };
  static constexpr size_t kMinSlots = 64;

  static uint32_t Tag(const Hash128& h) { return static_cast<uint32_t>(h.lo >> 32); }
  static size_t Home(uint32_t tag, size_t n) {
    return static_cast<size_t>((static_cast<uint64_t>(tag) * n) >> 32);
  }
  size_t Next(size_t i) const { return i + 1 == slots_.size() ? 0 : i + 1; }
  static void Place(std::vector<Slot>* slots, Slot s);
  void Grow();

  const NodeSlab* slab_;
  std::vector<Slot> slots_;
  size_t size_ = 0;
};

}  // namespace kvtier::internal

#endif  // KVTIER_MEMORY_HASH_INDEX_H_
