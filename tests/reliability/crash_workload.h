// The crash test's workload, shared by the writer child
// (tests/reliability/crash_writer.cpp) and the driver that kills it
// (tests/crash_test.cpp): the namespace, the prompts and the options.
//
// Prompt p has 2-4 blocks; its first block is one of 8 shared heads, so
// most prompts re-put a record that is already stored (a recency refresh)
// and every payload is the keyed payload of its block, so any record found
// after a crash can be checked bit for bit.
//
// The writer prints to its stdout, one line each:
//   "open"     the cache (and its store) opened
//   "ack N"    Flush() returned OK with nothing dropped and no store error:
//              every block of prompts [start, N) must survive any kill
#ifndef KVTIER_TESTS_RELIABILITY_CRASH_WORKLOAD_H_
#define KVTIER_TESTS_RELIABILITY_CRASH_WORKLOAD_H_

#include <cstdint>
#include <vector>

#include "kvtier/cache.h"
#include "test_util.h"

namespace kvtier::test::crash {

// 8 KiB blocks (2 layers x 2 heads x 64 dims x 8 tokens, f16): records of
// about 6 KiB, stored in RocksDB blob files.
inline Namespace CrashNamespace() {
  BlockLayout l;
  l.num_layers = 2;
  l.num_kv_heads = 2;
  l.head_dim = 64;
  l.block_size = 8;
  l.dtype = DType::kF16;
  return TestNamespace(l, "crash-model");
}

inline size_t PromptBlocks(uint64_t p) { return 2 + p % 3; }

inline std::vector<Token> PromptTokens(uint64_t p) {
  const uint32_t bs = CrashNamespace().layout.block_size;
  std::vector<Token> t = Tokens(bs, 900000 + p % 8);  // a shared head
  std::vector<Token> tail = Tokens(bs * (PromptBlocks(p) - 1), 1000000 + p);
  t.insert(t.end(), tail.begin(), tail.end());
  return t;
}

// Prompts of cycle c are c * kCycleStride, c * kCycleStride + 1, ...
inline constexpr uint64_t kCycleStride = 1000000;

inline CacheOptions WriterOptions(const std::string& dir, bool write_through, int threads) {
  CacheOptions o;
  o.ns = CrashNamespace();
  o.memory_bytes = 12 * o.ns.layout.block_bytes();     // evictions: spills
  o.spill_queue_bytes = 8 * o.ns.layout.block_bytes();
  o.store = dir;
  o.store_options.max_bytes = 0;  // nothing is evicted from disk: every ack stays checkable
  o.spill_policy = write_through ? SpillPolicy::kWriteThrough : SpillPolicy::kSpillOnEvict;
  o.spill_threads = threads;
  return o;
}

}  // namespace kvtier::test::crash

#endif  // KVTIER_TESTS_RELIABILITY_CRASH_WORKLOAD_H_
