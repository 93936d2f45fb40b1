#include "memory/memory_tier.h"

#include <string>

namespace kvtier::internal {

namespace {

// How far PlaceLeafByTick walks from the hot end to find a node's place by
// last use before settling for the spot it reached.
constexpr int kPlacementWalk = 32;

void InitHead(BlockNode* head) {
  head->next = head;
  head->prev = head;
}

}  // namespace

MemoryTier::MemoryTier(uint64_t budget_bytes) : budget_(budget_bytes), buckets_(64, nullptr) {
  InitHead(&lru_);
  InitHead(&in_use_);
}

MemoryTier::~MemoryTier() {
  for (BlockNode* head : buckets_) {
    while (head != nullptr) {
      BlockNode* next = head->bucket_next;
      delete head;
      head = next;
    }
  }
}

BlockNode* MemoryTier::Find(const Hash128& hash) const {
  BlockNode* n = buckets_[hash.lo & (buckets_.size() - 1)];
  while (n != nullptr && n->hash != hash) n = n->bucket_next;
  return n;
}

void MemoryTier::TableInsert(BlockNode* node) {
  if (count_ + 1 > buckets_.size()) Grow();
  BlockNode*& head = buckets_[node->hash.lo & (buckets_.size() - 1)];
  node->bucket_next = head;
  head = node;
  ++count_;
}

void MemoryTier::TableRemove(BlockNode* node) {
  BlockNode** p = &buckets_[node->hash.lo & (buckets_.size() - 1)];
  while (*p != node) p = &(*p)->bucket_next;
  *p = node->bucket_next;
  node->bucket_next = nullptr;
  --count_;
}

void MemoryTier::Grow() {
  std::vector<BlockNode*> bigger(buckets_.size() * 2, nullptr);
  for (BlockNode* head : buckets_) {
    while (head != nullptr) {
      BlockNode* next = head->bucket_next;
      BlockNode*& slot = bigger[head->hash.lo & (bigger.size() - 1)];
      head->bucket_next = slot;
      slot = head;
      head = next;
    }
  }
  buckets_.swap(bigger);
}

void MemoryTier::ListRemove(BlockNode* node) {
  if (node->list == BlockNode::List::kNone) return;
  node->prev->next = node->next;
  node->next->prev = node->prev;
  node->prev = node->next = nullptr;
  node->list = BlockNode::List::kNone;
}

void MemoryTier::PushHot(BlockNode::List list, BlockNode* node) {
  BlockNode* head = list == BlockNode::List::kLru ? &lru_ : &in_use_;
  node->next = head;
  node->prev = head->prev;
  head->prev->next = node;
  head->prev = node;
  node->list = list;
}

void MemoryTier::PushCold(BlockNode* node) {
  node->prev = &lru_;
  node->next = lru_.next;
  lru_.next->prev = node;
  lru_.next = node;
  node->list = BlockNode::List::kLru;
}

void MemoryTier::PlaceLeafByTick(BlockNode* node) {
  // The common case: the node is older than every leaf (its last child was
  // just evicted from the cold end, and every use of that child used it too).
  if (lru_.next == &lru_ || node->tick <= lru_.next->tick) {
    PushCold(node);
    return;
  }
  // Otherwise insert it after the newest leaf not newer than it, walking a
  // bounded distance from the hot end.
  BlockNode* after = lru_.prev;
  for (int i = 0; i < kPlacementWalk && after != &lru_ && after->tick > node->tick; ++i)
    after = after->prev;
  node->prev = after;
  node->next = after->next;
  after->next->prev = node;
  after->next = node;
  node->list = BlockNode::List::kLru;
}

void MemoryTier::PinLocked(BlockNode* node) {
  if (node->refs++ == 0) {
    ListRemove(node);
    PushHot(BlockNode::List::kInUse, node);
    ++pinned_;
  }
}

size_t MemoryTier::PinRun(std::span<const Hash128> hashes, size_t from, const Hash128& seed,
                          std::span<const Token> tokens, uint32_t block_size, uint32_t now_ms,
                          uint32_t touch_interval_ms, std::vector<BlockNode*>* pinned,
                          std::vector<Hash128>* to_touch) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t tick = ++tick_;
  size_t i = from;
  for (; i < hashes.size(); ++i) {
    BlockNode* n = Find(hashes[i]);
    if (n == nullptr) break;
    const Hash128& parent = i == 0 ? seed : hashes[i - 1];
    if (n->parent != parent || !n->buffer.TokensEqual(tokens.subspan(i * block_size, block_size)))
      break;  // a 128-bit collision: never serve it
    PinLocked(n);
    n->tick = tick;
    pinned->push_back(n);
    if (n->on_disk && now_ms - n->disk_touch_ms >= touch_interval_ms) {
      n->disk_touch_ms = now_ms;
      to_touch->push_back(n->hash);
    }
  }
  return i;
}

size_t MemoryTier::MissingRun(std::span<const Hash128> hashes, size_t from, size_t max) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  while (from + n < hashes.size() && n < max && Find(hashes[from + n]) == nullptr) ++n;
  return n;
}

void MemoryTier::Unpin(std::span<BlockNode* const> nodes) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = nodes.rbegin(); it != nodes.rend(); ++it) {
    BlockNode* n = *it;
    if (--n->refs > 0) continue;
    --pinned_;
    ListRemove(n);
    if (n->resident_children == 0) PushHot(BlockNode::List::kLru, n);
  }
}

void MemoryTier::RemoveLocked(BlockNode* node, std::vector<EvictedBlock>* evicted) {
  ListRemove(node);
  TableRemove(node);
  bytes_ -= node->buffer.payload_bytes();
  if (node->counted_in_parent) {
    BlockNode* parent = Find(node->parent);
    // A parent with counted children is never removed before them.
    if (parent != nullptr && --parent->resident_children == 0 && parent->refs == 0)
      PlaceLeafByTick(parent);
  }
  evicted->push_back(EvictedBlock{node->hash, node->parent, node->depth, node->on_disk,
                                  std::move(node->buffer)});
  delete node;
}

void MemoryTier::EvictOneLocked(std::vector<EvictedBlock>* evicted) {
  RemoveLocked(lru_.next, evicted);
  ++evictions_;
}

Status MemoryTier::Insert(const Hash128& hash, const Hash128& parent, uint32_t depth,
                          BlockBuffer buffer, bool on_disk, bool pin, BlockNode** node,
                          bool* inserted, std::vector<EvictedBlock>* evicted) {
  const uint64_t size = buffer.payload_bytes();
  std::lock_guard<std::mutex> lock(mu_);
  *inserted = false;
  if (BlockNode* existing = Find(hash)) {
    if (existing->parent != parent || !existing->buffer.TokensEqual(buffer.tokens()))
      return Status::Corruption("prefix hash " + hash.ToHex() +
                                " is resident for another prefix (128-bit collision)");
    existing->tick = ++tick_;
    existing->on_disk = existing->on_disk || on_disk;
    if (pin) PinLocked(existing);
    if (node != nullptr) *node = existing;
    return Status::OK();
  }
  if (size > budget_)
    return Status::Full("block of " + std::to_string(size) + " bytes exceeds the memory budget of " +
                        std::to_string(budget_) + " bytes");
  while (bytes_ + size > budget_) {
    if (lru_.next == &lru_)
      return Status::Full("memory tier full: " + std::to_string(count_) + " resident blocks (" +
                          std::to_string(bytes_) + " of " + std::to_string(budget_) +
                          " bytes) and none can be evicted (" + std::to_string(pinned_) +
                          " pinned, the rest are their ancestors)");
    EvictOneLocked(evicted);
  }
  auto* n = new BlockNode;
  n->hash = hash;
  n->parent = parent;
  n->depth = depth;
  n->buffer = std::move(buffer);
  n->tick = ++tick_;
  n->on_disk = on_disk;
  TableInsert(n);
  bytes_ += size;
  if (BlockNode* p = Find(parent)) {
    if (p->resident_children++ == 0 && p->list == BlockNode::List::kLru) ListRemove(p);
    n->counted_in_parent = true;
  }
  if (pin) {
    PinLocked(n);
  } else {
    PushHot(BlockNode::List::kLru, n);
  }
  if (node != nullptr) *node = n;
  *inserted = true;
  return Status::OK();
}

void MemoryTier::MarkOnDisk(std::span<const Hash128> hashes, uint32_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const Hash128& h : hashes) {
    if (BlockNode* n = Find(h)) {
      n->on_disk = true;
      n->disk_touch_ms = now_ms;
    }
  }
}

void MemoryTier::CollectNotOnDisk(std::vector<EvictedBlock>* out) {
  std::lock_guard<std::mutex> lock(mu_);
  for (BlockNode* n : buckets_) {
    for (; n != nullptr; n = n->bucket_next) {
      if (!n->on_disk) out->push_back(EvictedBlock{n->hash, n->parent, n->depth, false, n->buffer});
    }
  }
}

void MemoryTier::EvictAll(std::vector<EvictedBlock>* evicted) {
  std::lock_guard<std::mutex> lock(mu_);
  while (lru_.next != &lru_) EvictOneLocked(evicted);
}

MemoryTierStats MemoryTier::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  MemoryTierStats s;
  s.resident_blocks = count_;
  s.pinned_blocks = pinned_;
  s.bytes = bytes_;
  s.budget = budget_;
  s.evictions = evictions_;
  // Node + its malloc header + the buffer's shared control block, plus the
  // hash-table slots. Token ids are counted too: they are the node's key.
  constexpr uint64_t kPerNode = sizeof(BlockNode) + 16 + 16;
  s.overhead_bytes = count_ * kPerNode + buckets_.size() * sizeof(BlockNode*);
  return s;
}

std::string MemoryTier::CheckInvariants() const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t bytes = 0, count = 0, pinned = 0;
  for (BlockNode* n : buckets_) {
    for (; n != nullptr; n = n->bucket_next) {
      ++count;
      bytes += n->buffer.payload_bytes();
      if (n->refs > 0) {
        ++pinned;
        if (n->list != BlockNode::List::kInUse) return "pinned node not on the in-use list";
      } else if (n->resident_children == 0 && n->list != BlockNode::List::kLru) {
        return "unpinned leaf not on the LRU list";
      } else if (n->resident_children > 0 && n->list != BlockNode::List::kNone) {
        return "unpinned node with resident children on a list";
      }
    }
  }
  for (BlockNode* n : buckets_) {
    for (; n != nullptr; n = n->bucket_next) {
      uint32_t children = 0;
      for (BlockNode* c : buckets_)
        for (; c != nullptr; c = c->bucket_next)
          if (c->counted_in_parent && c->parent == n->hash) ++children;
      if (children != n->resident_children) return "resident_children mismatch";
      if (n->counted_in_parent && Find(n->parent) == nullptr) return "counted parent missing";
    }
  }
  if (count != count_) return "count mismatch";
  if (bytes != bytes_) return "byte count mismatch";
  if (pinned != pinned_) return "pinned count mismatch";
  if (bytes_ > budget_) return "budget exceeded";
  size_t lru_len = 0;
  for (BlockNode* n = lru_.next; n != &lru_; n = n->next) {
    if (n->refs != 0 || n->resident_children != 0) return "LRU list holds a pinned or interior node";
    ++lru_len;
  }
  if (lru_len > count_) return "LRU list longer than the table";
  return "";
}

}  // namespace kvtier::internal
