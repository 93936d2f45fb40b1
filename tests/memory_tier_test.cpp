// The memory tier on its own: O(1) LRU of unpinned leaves, pins, budget,
// and the seed's defects fixed (see SEED_NOTES.md "Fix").
#include <catch2/catch.hpp>

#include <iterator>
#include <map>
#include <random>

#include "memory/hash_index.h"
#include "memory/memory_tier.h"
#include "memory/node_slab.h"
#include "test_util.h"

using namespace kvtier;
using namespace kvtier::internal;

namespace {

constexpr uint32_t kBs = 4;
constexpr size_t kPayload = 128;

// A chain of blocks over `tokens`, as the cache would insert them.
struct Chain {
  std::vector<Token> tokens;
  std::vector<Hash128> hashes;
  Hash128 seed{7, 7};
  explicit Chain(size_t blocks, uint64_t token_seed) : tokens(test::Tokens(blocks * kBs, token_seed)) {
    PrefixHashes(seed, tokens, kBs, &hashes);
  }
  Hash128 parent(size_t i) const { return i == 0 ? seed : hashes[i - 1]; }
  BlockBuffer buffer(size_t i) const {
    std::vector<std::byte> payload(kPayload, static_cast<std::byte>(i));
    return BlockBuffer::Make(std::span(tokens).subspan(i * kBs, kBs), payload);
  }
};

Status Put(MemoryTier& m, const Chain& c, size_t i, std::vector<EvictedBlock>* evicted,
           bool pin = false, BlockNode** node = nullptr) {
  bool inserted;
  return m.Insert(c.hashes[i], c.parent(i), static_cast<uint32_t>(i), c.buffer(i), false, pin, node,
                  &inserted, evicted);
}

size_t Hits(MemoryTier& m, const Chain& c, std::vector<BlockNode*>* pinned) {
  std::vector<Hash128> touch;
  return m.PinRun(c.hashes, 0, c.seed, c.tokens, kBs, 0, 1000, pinned, &touch);
}

}  // namespace

TEST_CASE("the least recently used leaf is evicted first, the chain head last") {
  MemoryTier m(3 * kPayload);
  Chain a(3, 1);
  std::vector<EvictedBlock> ev;
  for (size_t i = 0; i < 3; ++i) REQUIRE(Put(m, a, i, &ev).ok());
  Chain b(1, 2);
  REQUIRE(Put(m, b, 0, &ev).ok());
  REQUIRE(ev.size() == 1);
  CHECK(ev[0].hash == a.hashes[2]);  // the end of the chain, not its head
  REQUIRE(Put(m, b, 0, &ev).ok());   // duplicate: no eviction, no copy
  CHECK(ev.size() == 1);
  Chain c(2, 3);
  REQUIRE(Put(m, c, 0, &ev).ok());
  REQUIRE(Put(m, c, 1, &ev).ok());
  REQUIRE(ev.size() == 3);
  CHECK(ev[1].hash == a.hashes[1]);
  CHECK(ev[2].hash == a.hashes[0]);
  CHECK(m.CheckInvariants() == "");
}

TEST_CASE("a looked-up chain survives and an older one is evicted") {
  MemoryTier m(4 * kPayload);
  Chain a(2, 1), b(2, 2), c(2, 3);
  std::vector<EvictedBlock> ev;
  for (size_t i = 0; i < 2; ++i) REQUIRE(Put(m, a, i, &ev).ok());
  for (size_t i = 0; i < 2; ++i) REQUIRE(Put(m, b, i, &ev).ok());
  std::vector<BlockNode*> pinned;
  REQUIRE(Hits(m, a, &pinned) == 2);  // refreshes a
  m.Unpin(pinned);
  for (size_t i = 0; i < 2; ++i) REQUIRE(Put(m, c, i, &ev).ok());
  REQUIRE(ev.size() == 2);
  CHECK(ev[0].hash == b.hashes[1]);
  CHECK(ev[1].hash == b.hashes[0]);
  pinned.clear();
  CHECK(Hits(m, a, &pinned) == 2);
  m.Unpin(pinned);
}

TEST_CASE("a pinned block is never evicted and a full tier refuses instead of overrunning") {
  MemoryTier m(2 * kPayload);
  Chain a(2, 1), b(1, 2);
  std::vector<EvictedBlock> ev;
  for (size_t i = 0; i < 2; ++i) REQUIRE(Put(m, a, i, &ev).ok());
  std::vector<BlockNode*> pinned;
  REQUIRE(Hits(m, a, &pinned) == 2);
  Status s = Put(m, b, 0, &ev);
  CHECK(s.IsFull());
  CHECK(s.message().find("pinned") != std::string::npos);
  CHECK(ev.empty());
  CHECK(m.Stats().bytes <= 2 * kPayload);
  m.Unpin(pinned);
  CHECK(Put(m, b, 0, &ev).ok());
  CHECK(ev.size() == 1);
  CHECK(m.CheckInvariants() == "");
}

TEST_CASE("a block larger than the whole budget is refused") {
  MemoryTier m(kPayload - 1);
  Chain a(1, 1);
  std::vector<EvictedBlock> ev;
  CHECK(Put(m, a, 0, &ev).IsFull());
}

TEST_CASE("lookup stops at a block whose tokens differ from the lookup's") {
  MemoryTier m(8 * kPayload);
  Chain a(3, 1);
  std::vector<EvictedBlock> ev;
  for (size_t i = 0; i < 3; ++i) REQUIRE(Put(m, a, i, &ev).ok());
  Chain forged = a;
  forged.tokens[kBs + 1] ^= 1;  // same hashes, other tokens for block 1
  std::vector<BlockNode*> pinned;
  std::vector<Hash128> touch;
  CHECK(m.PinRun(forged.hashes, 0, forged.seed, forged.tokens, kBs, 0, 1000, &pinned, &touch) == 1);
  m.Unpin(pinned);
}

TEST_CASE("evicted nodes are freed and counted exactly") {
  MemoryTier m(5 * kPayload);
  std::vector<EvictedBlock> ev;
  for (uint64_t s = 0; s < 200; ++s) {
    Chain c(1 + s % 4, s);
    for (size_t i = 0; i < c.hashes.size(); ++i) REQUIRE(Put(m, c, i, &ev).ok());
  }
  MemoryTierStats st = m.Stats();
  CHECK(st.resident_blocks == 5);
  CHECK(st.bytes == 5 * kPayload);
  CHECK(st.evictions == ev.size());
  CHECK(m.CheckInvariants() == "");
}

TEST_CASE("random operations keep every invariant of the memory tier") {
  const uint64_t seed = GENERATE(1, 2, 3, 4, 5);
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  MemoryTier m(12 * kPayload);
  std::vector<Chain> chains;
  for (uint64_t i = 0; i < 8; ++i) chains.emplace_back(6, seed * 100 + i);
  std::vector<std::vector<BlockNode*>> leases;
  std::vector<EvictedBlock> ev;
  for (int step = 0; step < 3000; ++step) {
    const Chain& c = chains[rng() % chains.size()];
    switch (rng() % 4) {
      case 0:
      case 1: {
        const size_t i = rng() % c.hashes.size();
        Status s = Put(m, c, i, &ev);
        REQUIRE((s.ok() || s.IsFull()));
        break;
      }
      case 2: {
        leases.emplace_back();
        Hits(m, c, &leases.back());
        break;
      }
      case 3:
        if (!leases.empty()) {
          const size_t k = rng() % leases.size();
          m.Unpin(leases[k]);
          leases.erase(leases.begin() + static_cast<long>(k));
        }
        break;
    }
    // Pinned blocks are never among the evicted.
    for (const auto& l : leases)
      for (BlockNode* n : l) REQUIRE(n->refs > 0);
    REQUIRE(m.Stats().bytes <= 12 * kPayload);
    if (step % 97 == 0) REQUIRE(m.CheckInvariants() == "");
  }
  for (auto& l : leases) m.Unpin(l);
  CHECK(m.Stats().pinned_blocks == 0);
  CHECK(m.CheckInvariants() == "");
}

TEST_CASE("the hash index finds, removes and regrows entries whose tags collide") {
  NodeSlab slab;
  HashIndex index(&slab);
  std::mt19937_64 rng(11);
  std::map<Hash128, uint32_t> ref;  // the reference: hash -> slab index
  for (int step = 0; step < 20000; ++step) {
    if (ref.empty() || rng() % 3 != 0) {
      // Few distinct tags (the high half of lo), so runs and tag collisions are common.
      const Hash128 h{(rng() % 64) << 32 | (rng() & 0xffffffff), rng()};
      if (ref.count(h) != 0) continue;
      const uint32_t i = slab.New();
      slab.Get(i)->hash = h;
      index.Insert(h, i);
      ref[h] = i;
    } else {
      auto it = ref.begin();
      std::advance(it, static_cast<long>(rng() % ref.size()));
      index.Remove(it->first, it->second);
      slab.Delete(it->second);
      ref.erase(it);
    }
    if (step % 1000 == 0) REQUIRE(index.Check() == "");
  }
  REQUIRE(index.Check() == "");
  REQUIRE(index.size() == ref.size());
  REQUIRE(slab.live() == ref.size());
  for (const auto& [h, i] : ref) REQUIRE(index.Find(h) == slab.Get(i));
  CHECK(index.Find(Hash128{5ull << 32, 12345}) == nullptr);
}

TEST_CASE("pinned nodes keep their address and bytes while the tier grows and churns") {
  MemoryTier m(3000 * kPayload);
  std::vector<EvictedBlock> ev;
  Chain first(4, 900);
  std::vector<BlockNode*> pinned;
  for (size_t i = 0; i < 4; ++i) REQUIRE(Put(m, first, i, &ev).ok());
  REQUIRE(Hits(m, first, &pinned) == 4);
  const BlockNode* deepest = pinned.back();
  std::mt19937_64 rng(5);
  // 20k more blocks through a 3000-block budget: the slab and the index grow,
  // nodes are evicted and reused.
  for (uint64_t c = 0; c < 1000; ++c) {
    Chain chain(20, 1000 + c);
    for (size_t i = 0; i < 20; ++i) REQUIRE(Put(m, chain, i, &ev).ok());
    if (c % 100 == 0) REQUIRE(m.CheckInvariants() == "");
  }
  CHECK(m.Stats().evictions > 15000);
  CHECK(m.Stats().resident_blocks <= 3000);
  REQUIRE(pinned.back() == deepest);
  for (size_t i = 0; i < 4; ++i) {
    REQUIRE(pinned[i]->hash == first.hashes[i]);
    REQUIRE(pinned[i]->buffer.TokensEqual(std::span(first.tokens).subspan(i * kBs, kBs)));
    for (std::byte b : pinned[i]->buffer.payload()) REQUIRE(b == static_cast<std::byte>(i));
  }
  // Every evicted block carries its own parent and depth.
  for (const EvictedBlock& e : ev) {
    REQUIRE(e.buffer.payload_bytes() == kPayload);
    REQUIRE(e.depth == static_cast<uint32_t>(e.buffer.payload()[0]));
  }
  m.Unpin(pinned);
  REQUIRE(m.CheckInvariants() == "");
  ev.clear();
  m.EvictAll(&ev);
  CHECK(m.Stats().resident_blocks == 0);
  CHECK(m.CheckInvariants() == "");
}
