// The cache in memory-only mode: the reference prefix cache's behaviour
// (SEED_NOTES.md "Keep"), ported, and its defects ("Fix") shown fixed.
#include <catch2/catch.hpp>

#include <atomic>
#include <random>
#include <thread>

#include "kvtier/cache.h"
#include "test_util.h"

using namespace kvtier;

namespace {

constexpr uint32_t kBs = 4;

std::unique_ptr<Cache> OpenMemoryCache(size_t capacity_blocks, DType dtype = DType::kF32) {
  CacheOptions o;
  o.ns = test::TestNamespace(test::SmallLayout(dtype, kBs));
  o.memory_bytes = capacity_blocks * o.ns.layout.block_bytes();
  std::unique_ptr<Cache> cache;
  REQUIRE(Cache::Open(o, &cache).ok());
  return cache;
}

std::vector<std::byte> PayloadFor(const Cache& c, uint64_t seed) {
  return test::Payload(c.layout(), seed);
}

bool SameBytes(std::span<const std::byte> a, std::span<const std::byte> b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

}  // namespace

TEST_CASE("block memory size is layers x kv_heads x head_dim x block_size elements for K and V") {
  BlockLayout l{36, 8, 128, 16, DType::kF32};
  CHECK(l.block_bytes() == 2ull * 36 * 8 * 128 * 16 * 4);
  CHECK(l.key_offset(1) == 2 * l.tensor_bytes());
  CHECK(l.value_offset(0) == l.tensor_bytes());
}

TEST_CASE("a block inserted is a hit, bit-exact") {
  auto cache = OpenMemoryCache(8);
  auto tokens = test::Tokens(kBs, 1);
  auto payload = PayloadFor(*cache, 1);
  REQUIRE(cache->Insert(tokens, 0, payload).ok());
  Lease lease = cache->Lookup(tokens);
  REQUIRE(lease.num_blocks() == 1);
  CHECK(lease.matched_tokens() == kBs);
  CHECK(SameBytes(lease.block(0), payload));
}

TEST_CASE("an empty cache misses") {
  auto cache = OpenMemoryCache(8);
  Lease lease = cache->Lookup(test::Tokens(3 * kBs, 1));
  CHECK(lease.empty());
  CHECK(cache->Stats().misses == 3);
  CHECK(cache->Stats().hit_rate() == 0.0);
}

TEST_CASE("a partial prefix matches: the first block hits, the second misses") {
  auto cache = OpenMemoryCache(8);
  auto tokens = test::Tokens(2 * kBs, 1);
  REQUIRE(cache->Insert(tokens, 0, PayloadFor(*cache, 1)).ok());
  auto other = tokens;
  other[kBs] ^= 1;
  REQUIRE(cache->Insert(other, 1, PayloadFor(*cache, 2)).ok());
  Lease lease = cache->Lookup(tokens);
  CHECK(lease.num_blocks() == 1);
}

TEST_CASE("block i is served only with blocks 0..i-1") {
  auto cache = OpenMemoryCache(8);
  auto tokens = test::Tokens(3 * kBs, 1);
  REQUIRE(cache->Insert(tokens, 1, PayloadFor(*cache, 1)).ok());
  REQUIRE(cache->Insert(tokens, 2, PayloadFor(*cache, 2)).ok());
  CHECK(cache->Lookup(tokens).empty());
  REQUIRE(cache->Insert(tokens, 0, PayloadFor(*cache, 0)).ok());
  CHECK(cache->Lookup(tokens).num_blocks() == 3);
}

TEST_CASE("LRU order: a looked-up block survives, the older one is evicted") {
  auto cache = OpenMemoryCache(2);
  auto a = test::Tokens(kBs, 1), b = test::Tokens(kBs, 2), c = test::Tokens(kBs, 3);
  REQUIRE(cache->Insert(a, 0, PayloadFor(*cache, 1)).ok());
  REQUIRE(cache->Insert(b, 0, PayloadFor(*cache, 2)).ok());
  { Lease l = cache->Lookup(a); }
  REQUIRE(cache->Insert(c, 0, PayloadFor(*cache, 3)).ok());
  CHECK(cache->Lookup(a).num_blocks() == 1);
  CHECK(cache->Lookup(b).num_blocks() == 0);
  CHECK(cache->Stats().evictions == 1);
}

TEST_CASE("a pinned block is never evicted; a full cache reports it did not cache") {
  auto cache = OpenMemoryCache(1);
  auto a = test::Tokens(kBs, 1), b = test::Tokens(kBs, 2);
  auto pa = PayloadFor(*cache, 1);
  REQUIRE(cache->Insert(a, 0, pa).ok());
  Lease held = cache->Lookup(a);
  Status s = cache->Insert(b, 0, PayloadFor(*cache, 2));
  CHECK(s.IsFull());
  CHECK(cache->Stats().insert_rejected == 1);
  CHECK(cache->Stats().memory_bytes <= cache->Stats().memory_budget);
  CHECK(SameBytes(held.block(0), pa));
  held.Release();
  CHECK(cache->Insert(b, 0, PayloadFor(*cache, 2)).ok());
}

TEST_CASE("hit rate counts hits and misses per block") {
  auto cache = OpenMemoryCache(8);
  auto a = test::Tokens(kBs, 1);
  REQUIRE(cache->Insert(a, 0, PayloadFor(*cache, 1)).ok());
  { Lease l = cache->Lookup(a); }
  { Lease l = cache->Lookup(test::Tokens(kBs, 9)); }
  CHECK(cache->Stats().hit_rate() == Approx(0.5));
  // A 4-block prompt with 1 block cached: 1 hit, 3 misses (the seed said ~1.0).
  auto long_prompt = a;
  auto tail = test::Tokens(3 * kBs, 5);
  long_prompt.insert(long_prompt.end(), tail.begin(), tail.end());
  { Lease l = cache->Lookup(long_prompt); }
  CacheStats st = cache->Stats();
  CHECK(st.memory_hits == 2);
  CHECK(st.misses == 4);
  CHECK(st.hit_rate() == Approx(2.0 / 6.0));
  CHECK(st.lookups_with_hit == 2);
}

TEST_CASE("clear empties the cache and keeps the statistics") {
  auto cache = OpenMemoryCache(8);
  auto a = test::Tokens(2 * kBs, 1);
  REQUIRE(cache->Insert(a, 0, PayloadFor(*cache, 1)).ok());
  { Lease l = cache->Lookup(a); }
  cache->Clear();
  CacheStats st = cache->Stats();
  CHECK(st.resident_blocks == 0);
  CHECK(st.memory_bytes == 0);
  CHECK(st.memory_hits == 1);
  CHECK(cache->Lookup(a).empty());
}

TEST_CASE("prepare after inserting block 0 starts the model at token 4") {
  auto cache = OpenMemoryCache(8);
  auto prompt = test::Tokens(3 * kBs + 2, 1);  // 3 full blocks and a partial one
  REQUIRE(cache->Insert(prompt, 0, PayloadFor(*cache, 0)).ok());
  PrefillSession s = cache->Prepare(prompt);
  CHECK(s.uncached_start() == 4);
  CHECK(s.total_tokens() == prompt.size());
  CHECK(s.cached().num_blocks() == 1);
  // The model computes blocks 1, 2 and the partial block 3; 3 is dropped.
  std::vector<std::vector<std::byte>> computed;
  for (int i = 1; i <= 3; ++i) computed.push_back(PayloadFor(*cache, i));
  std::vector<std::span<const std::byte>> spans(computed.begin(), computed.end());
  REQUIRE(s.StoreBlocks(spans).ok());
  s.Release();
  CHECK(cache->Stats().resident_blocks == 3);
  Lease l = cache->Lookup(prompt);
  REQUIRE(l.num_blocks() == 3);
  CHECK(SameBytes(l.block(2), computed[1]));
}

TEST_CASE("capacity is never exceeded after inserting capacity + 2 blocks") {
  auto cache = OpenMemoryCache(4);
  for (uint64_t i = 0; i < 6; ++i) REQUIRE(cache->Insert(test::Tokens(kBs, i), 0, PayloadFor(*cache, i)).ok());
  CacheStats st = cache->Stats();
  CHECK(st.resident_blocks == 4);
  CHECK(st.memory_bytes == st.memory_budget);
  CHECK(st.evictions == 2);
}

TEST_CASE("re-inserting a cached block keeps one copy") {
  auto cache = OpenMemoryCache(4);
  auto a = test::Tokens(kBs, 1);
  for (int i = 0; i < 5; ++i) REQUIRE(cache->Insert(a, 0, PayloadFor(*cache, 1)).ok());
  CacheStats st = cache->Stats();
  CHECK(st.resident_blocks == 1);
  CHECK(st.inserts == 1);
  CHECK(st.insert_duplicates == 4);
}

TEST_CASE("bad input gets a clear error") {
  auto cache = OpenMemoryCache(4);
  auto a = test::Tokens(kBs, 1);
  SECTION("wrong payload size") {
    std::vector<std::byte> small(100);
    Status s = cache->Insert(a, 0, small);
    CHECK(s.IsInvalidArgument());
    CHECK(s.message().find("is 100 bytes") != std::string::npos);
    CHECK(s.message().find(std::to_string(cache->layout().block_bytes())) != std::string::npos);
  }
  SECTION("tokens shorter than the block") {
    Status s = cache->Insert(std::span(a).first(kBs - 1), 0, PayloadFor(*cache, 1));
    CHECK(s.IsInvalidArgument());
    CHECK(s.message().find("needs 4") != std::string::npos);
  }
  SECTION("invalid namespace") {
    CacheOptions o;
    o.ns = test::TestNamespace(test::SmallLayout());
    o.ns.model.clear();
    std::unique_ptr<Cache> c;
    CHECK(Cache::Open(o, &c).IsInvalidArgument());
  }
  SECTION("a budget below one block") {
    CacheOptions o;
    o.ns = test::TestNamespace(test::SmallLayout());
    o.memory_bytes = 10;
    std::unique_ptr<Cache> c;
    Status s = Cache::Open(o, &c);
    CHECK(s.IsInvalidArgument());
    CHECK(s.message().find("cannot hold one block") != std::string::npos);
  }
}

TEST_CASE("a lease releases its pins when dropped, and outlives its cache") {
  auto cache = OpenMemoryCache(4);
  auto a = test::Tokens(2 * kBs, 1);
  auto p0 = PayloadFor(*cache, 0);
  REQUIRE(cache->Insert(a, 0, p0).ok());
  REQUIRE(cache->Insert(a, 1, PayloadFor(*cache, 1)).ok());
  {
    Lease l = cache->Lookup(a);
    CHECK(cache->Stats().pinned_blocks == 2);
    Lease moved = std::move(l);
    CHECK(l.empty());
    CHECK(cache->Stats().pinned_blocks == 2);
  }
  CHECK(cache->Stats().pinned_blocks == 0);
  Lease survivor = cache->Lookup(a);
  cache.reset();
  CHECK(SameBytes(survivor.block(0), p0));
}

TEST_CASE("a closed cache misses and refuses inserts") {
  auto cache = OpenMemoryCache(4);
  auto a = test::Tokens(kBs, 1);
  REQUIRE(cache->Insert(a, 0, PayloadFor(*cache, 1)).ok());
  REQUIRE(cache->Close().ok());
  CHECK(cache->Lookup(a).empty());
  CHECK(cache->Insert(a, 0, PayloadFor(*cache, 1)).IsInvalidArgument());
  CHECK(cache->Flush().IsInvalidArgument());
}

TEST_CASE("threads looking up and inserting overlapping prefixes keep the cache consistent") {
  CacheOptions o;
  o.ns = test::TestNamespace(test::SmallLayout(DType::kF16, kBs));
  o.memory_bytes = 24 * o.ns.layout.block_bytes();
  std::unique_ptr<Cache> cache;
  REQUIRE(Cache::Open(o, &cache).ok());
  // Prompts share a common head so lookups and inserts collide.
  auto head = test::Tokens(2 * kBs, 42);
  std::vector<std::vector<Token>> prompts;
  for (uint64_t p = 0; p < 16; ++p) {
    auto t = head;
    auto tail = test::Tokens(3 * kBs, p);
    t.insert(t.end(), tail.begin(), tail.end());
    prompts.push_back(t);
  }
  auto payload_for = [&](const std::vector<Token>& t, size_t block) {
    std::vector<Hash128> h;
    PrefixHashes(cache->namespace_fingerprint(), std::span(t).first((block + 1) * kBs), kBs, &h);
    return test::Payload(cache->layout(), h.back().lo);
  };
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      for (int i = 0; i < 2000; ++i) {
        const auto& prompt = prompts[rng() % prompts.size()];
        Lease l = cache->Lookup(prompt);
        for (size_t b = 0; b < l.num_blocks(); ++b) {
          auto expect = payload_for(prompt, b);
          if (!SameBytes(l.block(b), expect)) ++wrong;
        }
        for (size_t b = l.num_blocks(); b < prompt.size() / kBs; ++b) {
          Status s = cache->Insert(prompt, b, payload_for(prompt, b));
          if (!s.ok() && !s.IsFull()) ++wrong;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(wrong == 0);
  CacheStats st = cache->Stats();
  CHECK(st.pinned_blocks == 0);
  CHECK(st.memory_bytes <= st.memory_budget);
  CHECK(st.memory_hits + st.disk_hits + st.misses == st.lookup_blocks);
}
