// Concurrency stress: many threads look up, insert, hold and release
// leases, flush, clear memory (a spill storm) and read back from disk (a
// promote storm) on prompts that share prefixes, while the disk budget
// evicts and compactions run. Checked throughout and at the end: no lookup
// ever returns a wrong byte, pinned bytes never change, the memory budget
// and the spill queue budget hold, the per-block counts add up, the memory
// tier's internal invariants hold, no pin is leaked, and the store reopens
// with every record intact. Runs under ThreadSanitizer in CI.
//
//   KVTIER_STRESS_OPS=N   operations per worker thread (default 1500)
//   KVTIER_STRESS_SEED=S  replay (the seed is printed)
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <random>
#include <thread>

#include "cache/cache_core.h"
#include "reliability/reliability_util.h"
#include "test_util.h"

using namespace kvtier;

namespace {

constexpr int kWorkers = 4;
constexpr size_t kHeads = 5;
constexpr size_t kPrompts = 40;

uint64_t EnvNumber(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : fallback;
}

Namespace StressNamespace() {
  BlockLayout l = test::SmallLayout(DType::kF16, 4);
  l.head_dim = 32;  // 1 KiB blocks
  return test::TestNamespace(l, "stress-model");
}

// Prompt p: one of kHeads shared 2-block heads, then 1-4 blocks of its own.
std::vector<Token> PromptTokens(uint64_t seed, size_t p) {
  const uint32_t bs = StressNamespace().layout.block_size;
  std::vector<Token> t = test::Tokens(2 * bs, seed * 1000 + p % kHeads);
  std::vector<Token> tail = test::Tokens((1 + p % 4) * bs, seed * 1000 + 100 + p);
  t.insert(t.end(), tail.begin(), tail.end());
  return t;
}

struct Shared {
  std::atomic<uint64_t> wrong{0};            // leases with a wrong byte
  std::atomic<uint64_t> changed_pins{0};     // pinned bytes that changed while held
  std::atomic<uint64_t> over_budget{0};      // samples above a budget
  std::atomic<uint64_t> bad_status{0};       // calls failing with anything but Full
  std::atomic<uint64_t> insert_calls{0}, inserts_full{0}, lookups{0}, flushes{0}, clears{0},
      compactions{0}, trims{0};
  std::atomic<bool> stop{false};
};

// A lease kept for a while, with a copy of what it served.
struct Held {
  size_t prompt;
  Lease lease;
  std::vector<std::vector<std::byte>> bytes;
};

void Worker(CacheCore* core, const Namespace& ns, uint64_t seed, int id, uint64_t ops, Shared* sh) {
  std::mt19937_64 rng(seed * 31 + static_cast<uint64_t>(id));
  std::deque<Held> held;
  const uint32_t bs = ns.layout.block_size;
  for (uint64_t op = 0; op < ops; ++op) {
    const size_t p = rng() % kPrompts;
    const std::vector<Token> tokens = PromptTokens(seed, p);
    switch (rng() % 10) {
      case 0: case 1: case 2: case 3: {  // the prefill flow: look up, insert the rest
        Lease l = core->Lookup(tokens);
        ++sh->lookups;
        if (!test::LeaseExact(ns, l, tokens)) ++sh->wrong;
        const size_t have = l.num_blocks(), want = tokens.size() / bs;
        if (have < want) {
          auto blocks = test::KeyedBlocks(ns, tokens, have, want);
          Status s = core->InsertBlocks(tokens, have, test::Spans(blocks));
          ++sh->insert_calls;
          if (s.IsFull()) ++sh->inserts_full;
          else if (!s.ok()) ++sh->bad_status;
        }
        if (rng() % 4 == 0 && held.size() < 3) {  // keep it pinned for a while
          Held h{p, std::move(l), {}};
          for (size_t i = 0; i < h.lease.num_blocks(); ++i)
            h.bytes.emplace_back(h.lease.block(i).begin(), h.lease.block(i).end());
          held.push_back(std::move(h));
        }
        break;
      }
      case 4: case 5: case 6: {  // a plain lookup
        Lease l = core->Lookup(tokens);
        ++sh->lookups;
        if (!test::LeaseExact(ns, l, tokens)) ++sh->wrong;
        break;
      }
      case 7: case 8:  // release the oldest held lease, checking its bytes first
        if (!held.empty()) {
          Held& h = held.front();
          for (size_t i = 0; i < h.lease.num_blocks(); ++i) {
            const auto b = h.lease.block(i);
            if (!std::equal(b.begin(), b.end(), h.bytes[i].begin(), h.bytes[i].end())) ++sh->changed_pins;
          }
          held.pop_front();
        }
        break;
      case 9:
        if (rng() % 8 == 0) {
          Status s = core->Flush();
          ++sh->flushes;
          if (!s.ok()) ++sh->bad_status;
        }
        break;
    }
  }
}

}  // namespace

TEST_CASE("threads looking up, inserting, pinning, flushing and clearing on shared prefixes keep every invariant") {
  const bool with_store = GENERATE(true, false);
  const uint64_t seed = EnvNumber("KVTIER_STRESS_SEED", std::random_device{}());
  const uint64_t ops = EnvNumber("KVTIER_STRESS_OPS", 1500);
  INFO("seed " << seed << (with_store ? ", with a disk tier" : ", memory only"));
  test::Watchdog watchdog("stress test", 600);
  test::TempDir tmp;
  const Namespace ns = StressNamespace();
  const uint64_t block = ns.layout.block_bytes();
  CacheOptions o;
  o.ns = ns;
  o.memory_bytes = 24 * block;  // 40 prompts of 3-6 blocks: constant eviction
  o.spill_queue_bytes = 8 * block;
  o.spill_threads = 2;
  o.promote_batch = 3;
  o.disk_touch_interval_ms = 0;  // every memory hit refreshes disk recency: more traffic
  o.store = with_store ? tmp.sub("store") : "";
  o.store_options.max_bytes = 150 * 1100;  // ~150 records: the disk budget evicts too
  o.log = [](std::string_view) {};
  o.store_options.log = o.log;
  std::shared_ptr<CacheCore> core;
  REQUIRE(CacheCore::Open(o, &core).ok());

  Shared sh;
  std::vector<std::thread> threads;
  for (int w = 0; w < kWorkers; ++w)
    threads.emplace_back([&, w] { Worker(core.get(), ns, seed, w, ops, &sh); });
  // The storms: memory cleared now and then (everything unpinned spills),
  // compactions and trims on the store, and stats sampled all along.
  std::thread storm([&] {
    std::mt19937_64 rng(seed ^ 0x5157);
    while (!sh.stop.load()) {
      core->Clear();
      ++sh.clears;
      if (with_store && rng() % 4 == 0) {
        CompactResult c;
        if (!core->store()->Compact(&c).ok()) ++sh.bad_status;
        ++sh.compactions;
      }
      if (with_store && rng() % 4 == 0) {
        TrimResult t;
        if (!core->store()->TrimToBytes(100 * 1100, &t).ok()) ++sh.bad_status;
        ++sh.trims;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2 + rng() % 10));
    }
  });
  std::thread sampler([&] {
    while (!sh.stop.load()) {
      const CacheStats st = core->Stats();
      if (st.memory_bytes > st.memory_budget) ++sh.over_budget;
      if (st.queue_bytes > o.spill_queue_bytes) ++sh.over_budget;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  for (auto& t : threads) t.join();
  sh.stop = true;
  storm.join();
  sampler.join();

  const CacheStats st = core->Stats();
  CHECK(sh.wrong == 0);
  CHECK(sh.changed_pins == 0);
  CHECK(sh.over_budget == 0);
  CHECK(sh.bad_status == 0);
  CHECK(st.pinned_blocks == 0);  // every lease is gone: no pin leaked
  CHECK(st.memory_bytes <= st.memory_budget);
  CHECK(st.lookup_blocks == st.memory_hits + st.disk_hits + st.misses);
  CHECK(st.corrupt_records == 0);
  CHECK(st.store_errors == 0);
  CHECK(st.spill_dropped == 0);
  CHECK(core->CheckInvariants() == "");
  REQUIRE(core->Flush().ok());
  CHECK(core->Stats().queue_blocks == 0);
  REQUIRE(core->Close().ok());
  core.reset();

  uint64_t records = 0;
  if (with_store) {  // the store reopens intact, and serves exact blocks
    std::shared_ptr<CacheCore> again;
    REQUIRE(CacheCore::Open(o, &again).ok());
    const test::StoreAudit audit = test::AuditStore(again->store(), ns);
    INFO(audit.first_problem);
    CHECK(audit.clean());
    records = audit.records;
    for (size_t p = 0; p < kPrompts; ++p) {
      const std::vector<Token> t = PromptTokens(seed, p);
      Lease l = again->Lookup(t);
      CHECK(test::LeaseExact(ns, l, t));
    }
    REQUIRE(again->Close().ok());
  }
  std::printf(
      "stress (%s): %d workers x %llu ops + clear/compact/trim storm: %llu lookups, %llu insert "
      "calls (%llu Full), %llu flushes, %llu clears, %llu compactions, %llu trims; %llu memory "
      "hits, %llu disk hits, %llu misses, %llu spills, %llu promotions, %llu evictions; %llu "
      "wrong blocks, %llu changed pinned blocks, %llu budget violations (all must be 0); %llu "
      "records on disk at the end, seed %llu\n",
      with_store ? "disk tier" : "memory only", kWorkers, static_cast<unsigned long long>(ops),
      static_cast<unsigned long long>(sh.lookups.load()),
      static_cast<unsigned long long>(sh.insert_calls.load()),
      static_cast<unsigned long long>(sh.inserts_full.load()),
      static_cast<unsigned long long>(sh.flushes.load()),
      static_cast<unsigned long long>(sh.clears.load()),
      static_cast<unsigned long long>(sh.compactions.load()),
      static_cast<unsigned long long>(sh.trims.load()),
      static_cast<unsigned long long>(st.memory_hits), static_cast<unsigned long long>(st.disk_hits),
      static_cast<unsigned long long>(st.misses), static_cast<unsigned long long>(st.spills),
      static_cast<unsigned long long>(st.promotions), static_cast<unsigned long long>(st.evictions),
      static_cast<unsigned long long>(sh.wrong.load()),
      static_cast<unsigned long long>(sh.changed_pins.load()),
      static_cast<unsigned long long>(sh.over_budget.load()),
      static_cast<unsigned long long>(records), static_cast<unsigned long long>(seed));
  std::fflush(stdout);
}

TEST_CASE("a flush handing the spill queue many times its budget at once completes") {
  // SpillQueue::Enqueue used to queue a whole batch before waking the
  // workers, and wait for room that only they could make: a Flush() with
  // more unspilled bytes than spill_queue_bytes hung forever.
  test::Watchdog watchdog("flush larger than the spill queue", 120);
  test::TempDir tmp;
  const Namespace ns = StressNamespace();
  CacheOptions o;
  o.ns = ns;
  o.memory_bytes = 256 * ns.layout.block_bytes();
  o.spill_queue_bytes = 4 * ns.layout.block_bytes();  // 1/64 of what Flush hands over
  o.store = tmp.sub("store");
  o.store_options.max_bytes = 0;
  o.log = [](std::string_view) {};
  o.store_options.log = o.log;
  std::shared_ptr<CacheCore> core;
  REQUIRE(CacheCore::Open(o, &core).ok());
  for (size_t p = 0; p < 64; ++p) {
    const std::vector<Token> t = test::Tokens(4 * ns.layout.block_size, 9000 + p);
    auto blocks = test::KeyedBlocks(ns, t, 0, 4);
    REQUIRE(core->InsertBlocks(t, 0, test::Spans(blocks)).ok());
  }
  REQUIRE(core->Stats().spills == 0);  // nothing evicted: all 256 blocks unspilled
  REQUIRE(core->Flush().ok());
  CHECK(core->Stats().spills == 256);
  CHECK(core->Stats().disk_records == 256);
  REQUIRE(core->Close().ok());
}
