#include "reference_lru.h"

namespace kvtier::bench {

ChainEndLru::ChainEndLru(size_t capacity_blocks) : capacity_(capacity_blocks) {}

void ChainEndLru::MakeCandidate(uint32_t id) {
  if (IsEvictable(nodes_[id])) candidates_.emplace(nodes_[id].stamp, id);
}

void ChainEndLru::DropCandidate(uint32_t id) { candidates_.erase({nodes_[id].stamp, id}); }

bool ChainEndLru::EvictOne() {
  if (candidates_.empty()) return false;
  const uint32_t victim = candidates_.begin()->second;
  candidates_.erase(candidates_.begin());
  Node& n = nodes_[victim];
  index_.erase(n.hash);
  const uint32_t parent = n.parent;
  free_.push_back(victim);
  ++evictions_;
  if (parent != kNone) {
    --nodes_[parent].children;
    MakeCandidate(parent);
  }
  return true;
}

uint32_t ChainEndLru::Allocate(const Hash128& h, uint32_t parent) {
  uint32_t id;
  if (!free_.empty()) {
    id = free_.back();
    free_.pop_back();
  } else {
    id = static_cast<uint32_t>(nodes_.size());
    nodes_.emplace_back();
  }
  nodes_[id] = Node{parent, 0, ++clock_, false, h};
  index_.emplace(h, id);
  if (parent != kNone) {
    DropCandidate(parent);  // no longer a leaf
    ++nodes_[parent].children;
  }
  MakeCandidate(id);
  return id;
}

size_t ChainEndLru::Request(std::span<const Hash128> hashes) {
  // Match and pin the longest resident prefix, stamping it as just used.
  std::vector<uint32_t> pinned;
  for (const Hash128& h : hashes) {
    auto it = index_.find(h);
    if (it == index_.end()) break;
    const uint32_t id = it->second;
    DropCandidate(id);
    nodes_[id].stamp = ++clock_;
    nodes_[id].pinned = true;
    pinned.push_back(id);
  }
  const size_t hits = pinned.size();

  // Insert the uncached blocks, each as a child of the one before.
  uint32_t parent = pinned.empty() ? kNone : pinned.back();
  for (size_t i = hits; i < hashes.size(); ++i) {
    if (capacity_ == 0 || (index_.size() >= capacity_ && !EvictOne())) {
      rejected_ += hashes.size() - i;
      break;
    }
    // EvictOne never takes `parent`: it is pinned or has a resident child...
    // except a just-inserted, unpinned parent that is the only leaf left.
    if (parent != kNone && (index_.find(nodes_[parent].hash) == index_.end() ||
                            nodes_[parent].hash != hashes[i - 1])) {
      rejected_ += hashes.size() - i;
      break;
    }
    parent = Allocate(hashes[i], parent);
  }

  for (uint32_t id : pinned) {
    nodes_[id].pinned = false;
    MakeCandidate(id);
  }
  return hits;
}

size_t TraceUpperBound::Request(std::span<const Hash128> hashes) {
  size_t hits = 0;
  while (hits < hashes.size() && seen_.count(hashes[hits])) ++hits;
  for (const Hash128& h : hashes) seen_.insert(h);
  return hits;
}

}  // namespace kvtier::bench
