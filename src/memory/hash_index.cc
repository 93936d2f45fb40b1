#include "memory/hash_index.h"

namespace kvtier::internal {

void HashIndex::Place(std::vector<Slot>* slots, Slot s) {
  const size_t n = slots->size();
  size_t i = Home(s.tag, n);
  while ((*slots)[i].index != NodeSlab::kNil) i = i + 1 == n ? 0 : i + 1;
  (*slots)[i] = s;
}

void HashIndex::Grow() {
  std::vector<Slot> bigger(slots_.size() + slots_.size() / 2);
  for (const Slot& s : slots_)
    if (s.index != NodeSlab::kNil) Place(&bigger, s);
  slots_.swap(bigger);
}

void HashIndex::Insert(const Hash128& hash, uint32_t index) {
  if ((size_ + 1) * 8 > slots_.size() * 7) Grow();
  Place(&slots_, Slot{Tag(hash), index});
  ++size_;
}

void HashIndex::Remove(const Hash128& hash, uint32_t index) {
  const uint32_t tag = Tag(hash);
  size_t hole = Home(tag, slots_.size());
  while (slots_[hole].index != index) {
    if (slots_[hole].index == NodeSlab::kNil) return;  // not present: nothing to do
    hole = Next(hole);
  }
  // Backward-shift deletion: pull later entries of the run into the hole
  // when their home slot does not lie cyclically in (hole, j].
  for (size_t j = Next(hole); slots_[j].index != NodeSlab::kNil; j = Next(j)) {
    const size_t home = Home(slots_[j].tag, slots_.size());
    const bool movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
    if (movable) {
      slots_[hole] = slots_[j];
      hole = j;
    }
  }
  slots_[hole] = Slot{};
  --size_;
}

std::string HashIndex::Check() const {
  size_t count = 0;
  for (size_t i = 0; i < slots_.size(); ++i) {
    const Slot& s = slots_[i];
    if (s.index == NodeSlab::kNil) continue;
    ++count;
    const BlockNode* n = slab_->Get(s.index);
    if (n->self != s.index) return "index slot names a node whose self index differs";
    if (Tag(n->hash) != s.tag) return "index slot tag does not match its node's hash";
    // Every slot from the home slot to here must be occupied.
    for (size_t k = Home(s.tag, slots_.size()); k != i; k = Next(k))
      if (slots_[k].index == NodeSlab::kNil) return "index entry unreachable from its home slot";
    if (Find(n->hash) != n) return "index lookup of a node's hash finds another node";
  }
  if (count != size_) return "index entry count mismatch";
  if (size_ * 8 > slots_.size() * 7) return "index load above 7/8";
  return "";
}

}  // namespace kvtier::internal
