// Cache: a prefix KV-cache with a memory tier and an optional disk tier.
//
// A server looks up a prompt's tokens and gets a Lease on the longest cached
// prefix of full blocks; it runs the model on the rest, inserts the new full
// blocks, and drops the lease. Blocks evicted from memory spill to the store
// in the background and are promoted back on a later hit, across restarts.
//
// Contract (see README "The contract"):
//  - A hit is exact: the bytes returned are the bytes inserted for exactly
//    that prefix, from either tier. Damaged or foreign records are misses.
//  - Block i is served only together with blocks 0..i-1.
//  - A block held by a live Lease is never evicted from memory; the memory
//    budget is never exceeded (Insert returns Full instead).
//  - Close()/Flush() make every resident block durable: a clean restart is
//    fully warm.
//
// Thread-safety: Cache methods may be called from any number of threads.
// A Lease is used by one thread at a time. No I/O or compression happens
// under the memory-tier lock.
#ifndef KVTIER_CACHE_H_
#define KVTIER_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvtier/hash.h"
#include "kvtier/layout.h"
#include "kvtier/record.h"
#include "kvtier/status.h"
#include "kvtier/store.h"

namespace kvtier {

enum class SpillPolicy : uint8_t {
  // A block is written to the store when it is evicted from memory (and on
  // Flush/Close). Least disk traffic.
  kSpillOnEvict = 0,
  // Every inserted block is also queued for writing at once. A crash loses
  // only the queue; the right choice for a shared cache.
  kWriteThrough = 1,
  // kWriteThrough for a kvtierd store ("unix:PATH"), so the other processes
  // sharing it see new prefixes at once; kSpillOnEvict for a directory.
  kAuto = 2,
};

struct CacheOptions {
  // REQUIRED: the model, layout and salt the cached blocks belong to.
  Namespace ns;
  // Budget for the payload bytes of blocks resident in memory.
  uint64_t memory_bytes = 1ull << 30;
  // Where the disk tier lives: "" = memory-only, a directory path
  // (embedded), or "unix:PATH" for the store shared through the kvtierd
  // listening at PATH (see OpenBlockStore and kvtier/daemon.h).
  std::string store;
  // Options of the store (disk budget, sync, ...); unused when memory-only.
  StoreOptions store_options;
  SpillPolicy spill_policy = SpillPolicy::kAuto;
  CodecOptions codec;
  // Background threads that encode spilled blocks; one more thread writes
  // them (encoding the next batch overlaps writing the last).
  int spill_threads = 1;
  // Budget for payload bytes waiting in the spill queue (on top of
  // memory_bytes). When full, eviction waits for room (back-pressure).
  uint64_t spill_queue_bytes = 256ull << 20;
  // Blocks fetched from the store per batched read during a lookup.
  size_t promote_batch = 16;
  // A memory hit on a block that is also on disk refreshes its disk recency
  // at most this often, so a prefix hot in memory does not age out on disk.
  uint32_t disk_touch_interval_ms = 1000;
  // Diagnostics sink; empty = stderr, prefixed "kvtier: ".
  std::function<void(std::string_view)> log;
};

// Counters since Open (Clear() keeps them). Per-block counts: a lookup of a
// prompt with n full blocks adds n to lookup_blocks, and each of those n is
// a memory hit, a disk hit or a miss.
struct CacheStats {
  uint64_t lookups = 0;
  uint64_t lookup_blocks = 0;
  uint64_t memory_hits = 0;
  uint64_t disk_hits = 0;
  uint64_t misses = 0;
  uint64_t lookups_with_hit = 0;  // requests that got at least one block
  uint64_t inserts = 0;           // blocks newly cached
  uint64_t insert_duplicates = 0;  // already cached: no second copy
  uint64_t insert_rejected = 0;    // not cached: every resident block pinned
  uint64_t evictions = 0;          // blocks evicted from memory
  uint64_t spills = 0;             // blocks written to the store
  uint64_t promotions = 0;         // blocks read back from the store
  uint64_t bytes_written_raw = 0;
  uint64_t bytes_written_stored = 0;
  uint64_t bytes_read_raw = 0;
  uint64_t bytes_read_stored = 0;
  uint64_t corrupt_records = 0;  // detected on promote, counted, deleted
  uint64_t store_errors = 0;     // failed store calls (the cache kept serving)
  // Blocks queued for writing again after a failed store write, and blocks
  // the spill queue gave up after repeated store failures (or dropped, oldest
  // first, when it was full while the store failed); logged, and never wrong
  // data: a given-up block is a later miss.
  uint64_t spill_retries = 0;
  uint64_t spill_dropped = 0;
  uint64_t queue_blocks = 0;     // blocks waiting in the spill queue now
  uint64_t queue_bytes = 0;
  uint64_t resident_blocks = 0;
  uint64_t pinned_blocks = 0;
  uint64_t memory_bytes = 0;   // payload bytes resident
  uint64_t memory_budget = 0;
  uint64_t memory_overhead_bytes = 0;  // bookkeeping beyond payloads
  uint64_t disk_records = 0;
  uint64_t disk_bytes = 0;  // stored bytes
  uint64_t disk_budget = 0;

  // (memory_hits + disk_hits) / lookup_blocks; 0 with no lookups.
  double hit_rate() const;
  // bytes_written_raw / bytes_written_stored; 0 before any spill.
  double compression_ratio() const;
};

class CacheCore;  // private
namespace internal {
struct BlockNode;  // a memory-tier block (private)
}  // namespace internal
class Lease;
class PrefillSession;

class Cache {
 public:
  // Opens a cache. Errors: InvalidArgument for a bad namespace/options, and
  // every error of OpenBlockStore() (Busy for a store held by another
  // process, NotSupported for another format, ...).
  static Status Open(const CacheOptions& options, std::unique_ptr<Cache>* cache);

  Cache(const Cache&) = delete;
  Cache& operator=(const Cache&) = delete;
  // Closes the cache (as Close(); errors are logged).
  ~Cache();

  // Returns a lease on the longest cached prefix of `tokens`, in whole
  // blocks: memory first, then the store (promoting what it finds). Never
  // fails: a store error or a bad record ends the match and is counted.
  Lease Lookup(std::span<const Token> tokens);

  // Caches block `block_index` of `tokens` (tokens[block_index*bs ..
  // (block_index+1)*bs) plus everything before it names the block).
  // OK if cached or already cached (no second copy). InvalidArgument if
  // tokens do not cover the block or the payload size is not
  // layout.block_bytes(). Full if memory has no room because every resident
  // block is pinned (nothing is overrun).
  Status Insert(std::span<const Token> tokens, size_t block_index,
                std::span<const std::byte> payload);

  // Caches blocks first_block, first_block+1, ... (one payload each),
  // hashing the prefix once. Stops at the first error and returns it.
  Status InsertBlocks(std::span<const Token> tokens, size_t first_block,
                      std::span<const std::span<const std::byte>> payloads);

  // The prefill flow: look up `tokens`, run the model on
  // tokens[session.uncached_start() ..], StoreBlocks(), then drop the session.
  PrefillSession Prepare(std::span<const Token> tokens);

  // Waits for the spill queue, writes every resident block that the store
  // does not hold yet, and syncs the store. A no-op when memory-only.
  Status Flush();

  // Flush(), then closes the store. Later calls: Lookup misses, Insert and
  // Flush return InvalidArgument. Leases stay valid until dropped.
  Status Close();

  // Drops every unpinned block from memory (not from the store). Pinned
  // blocks stay until their leases go. Statistics are kept.
  void Clear();

  CacheStats Stats() const;
  const BlockLayout& layout() const;
  const Namespace& ns() const;
  Hash128 namespace_fingerprint() const;
  // The disk tier, or nullptr when memory-only (for inspection tools).
  BlockStore* store() const;

 private:
  explicit Cache(std::shared_ptr<CacheCore> core);
  std::shared_ptr<CacheCore> core_;
};

// Pins the blocks of a cached prefix; releases them when destroyed (or on
// Release()). Move-only. Stays valid even if its Cache is destroyed first.
class Lease {
 public:
  Lease() = default;
  Lease(Lease&& other) noexcept;
  Lease& operator=(Lease&& other) noexcept;
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  ~Lease();

  size_t num_blocks() const { return blocks_.size(); }
  size_t matched_tokens() const { return blocks_.size() * block_size_; }
  bool empty() const { return blocks_.empty(); }
  // Payload of block i (layout.block_bytes() bytes). REQUIRES: i < num_blocks().
  std::span<const std::byte> block(size_t i) const;
  // The prefix hash of block i.
  Hash128 block_hash(size_t i) const;
  // Blocks of this lease that came from the store in this lookup.
  size_t blocks_from_disk() const { return from_disk_; }

  // Unpins the blocks now; the lease becomes empty.
  void Release();

 private:
  friend class CacheCore;
  std::shared_ptr<CacheCore> core_;
  std::vector<internal::BlockNode*> blocks_;
  uint32_t block_size_ = 0;
  size_t from_disk_ = 0;
};

// The reference engine's prefill helper, on top of Lease.
class PrefillSession {
 public:
  PrefillSession() = default;
  PrefillSession(PrefillSession&&) noexcept = default;
  PrefillSession& operator=(PrefillSession&&) noexcept = default;

  // First token the model must compute (a multiple of block_size).
  size_t uncached_start() const { return cached_.matched_tokens(); }
  size_t total_tokens() const { return tokens_.size(); }
  const Lease& cached() const { return cached_; }

  // Caches the newly computed blocks: new_blocks[j] is block
  // uncached_start()/block_size + j. Blocks past the last full block of the
  // prompt (a partial trailing block) are ignored, as in the reference.
  Status StoreBlocks(std::span<const std::span<const std::byte>> new_blocks);

  // Unpins the cached prefix (also done on destruction).
  void Release() { cached_.Release(); }

 private:
  friend class Cache;
  Cache* cache_ = nullptr;
  std::vector<Token> tokens_;
  Lease cached_;
};

}  // namespace kvtier

#endif  // KVTIER_CACHE_H_
