#include "memory/memory_tier.h"

#include <string>
#include <unordered_map>

namespace kvtier::internal {

namespace {

// How far PlaceLeafByTick walks from the hot end to find a node's place by
// last use before settling for the spot it reached.
constexpr int kPlacementWalk = 32;

// How many blocks ahead PinRun starts loading index slots (each probe of a
// large index is a cache miss; this many overlap).
constexpr size_t kPrefetchAhead = 8;

// Ticks wrap at 2^32: `a` is no newer than `b` when it is at most 2^31 behind.
bool NotNewer(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) <= 0; }

// A buffer's bytes beyond its payload, malloc's 8-byte chunk header included.
uint64_t BufferOverhead(const BlockBuffer& b) {
  return BlockBuffer::AllocationBytes(b.tokens().size(), b.payload_bytes()) - b.payload_bytes() + 8;
}

}  // namespace

MemoryTier::MemoryTier(uint64_t budget_bytes) : budget_(budget_bytes) {
  for (uint32_t head : {kLruHead, kInUseHead}) {
    const uint32_t i = slab_.New();
    (void)head;  // the first two nodes of a new slab are 0 and 1
    Node(i)->next = Node(i)->prev = i;
  }
}

MemoryTier::~MemoryTier() = default;

void MemoryTier::ListRemove(BlockNode* node) {
  if (node->list == BlockNode::kNone) return;
  Node(node->prev)->next = node->next;
  Node(node->next)->prev = node->prev;
  node->prev = node->next = node->self;
  node->list = BlockNode::kNone;
}

void MemoryTier::LinkAfter(BlockNode* after, BlockNode* node, uint32_t list) {
  node->prev = after->self;
  node->next = after->next;
  Node(after->next)->prev = node->self;
  after->next = node->self;
  node->list = list;
}

void MemoryTier::PushHot(uint32_t list, BlockNode* node) {
  BlockNode* head = Node(list == BlockNode::kLru ? kLruHead : kInUseHead);
  LinkAfter(Node(head->prev), node, list);
}

void MemoryTier::PushCold(BlockNode* node) { LinkAfter(Node(kLruHead), node, BlockNode::kLru); }

void MemoryTier::PlaceLeafByTick(BlockNode* node) {
  const BlockNode* head = Node(kLruHead);
  // The common case: the node is older than every leaf (its last child was
  // just evicted from the cold end, and every use of that child used it too).
  if (head->next == kLruHead || NotNewer(node->tick, Node(head->next)->tick)) {
    PushCold(node);
    return;
  }
  // Otherwise insert it after the newest leaf not newer than it, walking a
  // bounded distance from the hot end.
  BlockNode* after = Node(head->prev);
  for (int i = 0; i < kPlacementWalk && after->self != kLruHead && !NotNewer(after->tick, node->tick);
       ++i)
    after = Node(after->prev);
  LinkAfter(after, node, BlockNode::kLru);
}

void MemoryTier::PinLocked(BlockNode* node) {
  if (node->refs++ == 0) {
    ListRemove(node);
    PushHot(BlockNode::kInUse, node);
    ++pinned_;
  }
}

size_t MemoryTier::PinRun(std::span<const Hash128> hashes, size_t from, const Hash128& seed,
                          std::span<const Token> tokens, uint32_t block_size, uint32_t now_ms,
                          uint32_t touch_interval_ms, std::vector<BlockNode*>* pinned,
                          std::vector<Hash128>* to_touch) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint32_t tick = ++tick_;
  for (size_t k = from; k < hashes.size() && k < from + kPrefetchAhead; ++k)
    index_.Prefetch(hashes[k]);
  size_t i = from;
  for (; i < hashes.size(); ++i) {
    if (i + kPrefetchAhead < hashes.size()) index_.Prefetch(hashes[i + kPrefetchAhead]);
    BlockNode* n = Find(hashes[i]);
    if (n == nullptr) break;
    const Hash128& parent = i == 0 ? seed : hashes[i - 1];
    if (n->parent != parent || !n->buffer.TokensEqual(tokens.subspan(i * block_size, block_size)))
      break;  // a 128-bit collision: never serve it
    PinLocked(n);
    n->tick = tick;
    pinned->push_back(n);
    if (n->on_disk) {
      NodeColdFields* cold = slab_.Cold(n->self);
      if (now_ms - cold->disk_touch_ms >= touch_interval_ms) {
        cold->disk_touch_ms = now_ms;
        to_touch->push_back(n->hash);
      }
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
    if (n->resident_children == 0) PushHot(BlockNode::kLru, n);
  }
}

void MemoryTier::RemoveLocked(BlockNode* node, std::vector<EvictedBlock>* evicted) {
  ListRemove(node);
  index_.Remove(node->hash, node->self);
  bytes_ -= node->buffer.payload_bytes();
  buffer_overhead_ -= BufferOverhead(node->buffer);
  if (node->counted_in_parent) {
    BlockNode* parent = Find(node->parent);
    // A parent with counted children is never removed before them.
    if (parent != nullptr && --parent->resident_children == 0 && parent->refs == 0)
      PlaceLeafByTick(parent);
  }
  evicted->push_back(EvictedBlock{node->hash, node->parent, slab_.Cold(node->self)->depth,
                                  node->on_disk != 0, std::move(node->buffer)});
  slab_.Delete(node->self);
}

void MemoryTier::EvictOneLocked(std::vector<EvictedBlock>* evicted) {
  RemoveLocked(Node(Node(kLruHead)->next), evicted);
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
  BlockNode* p = Find(parent);
  if (p != nullptr && p->resident_children == BlockNode::kMaxChildren)
    return Status::Full("block " + parent.ToHex() + " already has the maximum of " +
                        std::to_string(BlockNode::kMaxChildren) + " resident children");
  while (bytes_ + size > budget_) {
    if (Node(kLruHead)->next == kLruHead)
      return Status::Full("memory tier full: " + std::to_string(index_.size()) +
                          " resident blocks (" + std::to_string(bytes_) + " of " +
                          std::to_string(budget_) + " bytes) and none can be evicted (" +
                          std::to_string(pinned_) + " pinned, the rest are their ancestors)");
    EvictOneLocked(evicted);
  }
  // Eviction may have removed the parent (a leaf older than everything else).
  p = Find(parent);
  const uint32_t i = slab_.New();
  BlockNode* n = Node(i);
  n->hash = hash;
  n->parent = parent;
  n->buffer = std::move(buffer);
  n->tick = ++tick_;
  n->on_disk = on_disk;
  slab_.Cold(i)->depth = depth;
  index_.Insert(hash, i);
  bytes_ += size;
  buffer_overhead_ += BufferOverhead(n->buffer);
  if (p != nullptr) {
    if (p->resident_children++ == 0 && p->list == BlockNode::kLru) ListRemove(p);
    n->counted_in_parent = 1;
  }
  if (pin) {
    PinLocked(n);
  } else {
    PushHot(BlockNode::kLru, n);
  }
  if (node != nullptr) *node = n;
  *inserted = true;
  return Status::OK();
}

void MemoryTier::MarkOnDisk(std::span<const Hash128> hashes, uint32_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const Hash128& h : hashes) {
    if (BlockNode* n = Find(h)) {
      n->on_disk = 1;
      slab_.Cold(n->self)->disk_touch_ms = now_ms;
    }
  }
}

void MemoryTier::CollectNotOnDisk(std::vector<EvictedBlock>* out) {
  std::lock_guard<std::mutex> lock(mu_);
  index_.ForEach([&](uint32_t i) {
    const BlockNode* n = Node(i);
    if (!n->on_disk)
      out->push_back(EvictedBlock{n->hash, n->parent, slab_.Cold(i)->depth, false, n->buffer});
  });
}

void MemoryTier::EvictAll(std::vector<EvictedBlock>* evicted) {
  std::lock_guard<std::mutex> lock(mu_);
  while (Node(kLruHead)->next != kLruHead) EvictOneLocked(evicted);
}

MemoryTierStats MemoryTier::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  MemoryTierStats s;
  s.resident_blocks = index_.size();
  s.pinned_blocks = pinned_;
  s.bytes = bytes_;
  s.budget = budget_;
  s.evictions = evictions_;
  // The slab (free nodes included), the index's slots, and each resident
  // buffer's header, token ids (the key hits are verified against) and
  // malloc header.
  s.overhead_bytes = slab_.heap_bytes() + index_.heap_bytes() + buffer_overhead_;
  return s;
}

std::string MemoryTier::CheckListsLocked() const {
  size_t pinned = 0;
  for (uint32_t head : {kLruHead, kInUseHead}) {
    const uint32_t want = head == kLruHead ? BlockNode::kLru : BlockNode::kInUse;
    size_t len = 0;
    for (uint32_t i = Node(head)->next; i != head; i = Node(i)->next) {
      const BlockNode* n = Node(i);
      if (Find(n->hash) != n) return "list holds a node that is not in the index";
      if (n->list != want) return "node's list field disagrees with its list";
      if (Node(n->next)->prev != i) return "broken list link";
      if (want == BlockNode::kLru && (n->refs != 0 || n->resident_children != 0))
        return "LRU list holds a pinned or interior node";
      if (++len > index_.size()) return "list longer than the index (a cycle)";
    }
    if (want == BlockNode::kInUse) pinned = len;
  }
  if (pinned != pinned_) return "in-use list length differs from the pinned count";
  return "";
}

std::string MemoryTier::CheckInvariants() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (std::string e = index_.Check(); !e.empty()) return e;
  if (slab_.live() != index_.size() + 2) return "slab holds nodes that are not in the index";
  uint64_t bytes = 0, overhead = 0, count = 0, pinned = 0;
  std::unordered_map<Hash128, uint32_t, Hash128Hasher> children;
  std::string error;
  index_.ForEach([&](uint32_t i) {
    const BlockNode* n = Node(i);
    ++count;
    bytes += n->buffer.payload_bytes();
    overhead += BufferOverhead(n->buffer);
    if (n->counted_in_parent) {
      ++children[n->parent];
      if (Find(n->parent) == nullptr && error.empty()) error = "counted parent missing";
    }
    if (n->refs > 0) {
      ++pinned;
      if (n->list != BlockNode::kInUse && error.empty()) error = "pinned node not on the in-use list";
    } else if (n->resident_children == 0 && n->list != BlockNode::kLru) {
      if (error.empty()) error = "unpinned leaf not on the LRU list";
    } else if (n->resident_children > 0 && n->list != BlockNode::kNone) {
      if (error.empty()) error = "unpinned node with resident children on a list";
    }
  });
  if (!error.empty()) return error;
  index_.ForEach([&](uint32_t i) {
    const BlockNode* n = Node(i);
    auto it = children.find(n->hash);
    if ((it == children.end() ? 0 : it->second) != n->resident_children && error.empty())
      error = "resident_children mismatch";
  });
  if (!error.empty()) return error;
  if (count != index_.size()) return "count mismatch";
  if (bytes != bytes_) return "byte count mismatch";
  if (overhead != buffer_overhead_) return "buffer overhead count mismatch";
  if (pinned != pinned_) return "pinned count mismatch";
  if (bytes_ > budget_) return "budget exceeded";
  return CheckListsLocked();
}

}  // namespace kvtier::internal
