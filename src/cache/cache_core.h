// CacheCore: the shared state behind Cache and its leases. Cache is a thin
// owner; leases hold a shared_ptr to the core so they stay valid after the
// Cache object is gone.
#ifndef KVTIER_CACHE_CACHE_CORE_H_
#define KVTIER_CACHE_CACHE_CORE_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <shared_mutex>
#include <span>
#include <vector>

#include "cache/spill_queue.h"
#include "kvtier/cache.h"
#include "memory/memory_tier.h"

namespace kvtier {

class CacheCore : public std::enable_shared_from_this<CacheCore> {
 public:
  static Status Open(const CacheOptions& options, std::shared_ptr<CacheCore>* core);
  // As Open(), on a disk tier the caller opened (options.store is then not
  // opened): tests use it for a store on a fault-injecting file system.
  // `store` = nullptr is Open().
  static Status OpenWithStore(const CacheOptions& options, std::unique_ptr<BlockStore> store,
                              std::shared_ptr<CacheCore>* core);
  ~CacheCore();

  Lease Lookup(std::span<const Token> tokens);
  Status InsertBlocks(std::span<const Token> tokens, size_t first_block,
                      std::span<const std::span<const std::byte>> payloads);
  Status Flush();
  Status Close();
  void Clear();
  CacheStats Stats() const;

  void Release(std::span<internal::BlockNode* const> nodes) { memory_.Unpin(nodes); }

  const CacheOptions& options() const { return options_; }
  const Hash128& seed() const { return seed_; }
  BlockStore* store() const { return store_.get(); }
  // For tests: the memory tier's invariant check ("" when all hold).
  std::string CheckInvariants() const { return memory_.CheckInvariants(); }

 private:
  struct Counters {
    std::atomic<uint64_t> lookups{0}, lookup_blocks{0}, memory_hits{0}, disk_hits{0}, misses{0},
        lookups_with_hit{0}, inserts{0}, insert_duplicates{0}, insert_rejected{0}, spills{0},
        promotions{0}, bytes_written_raw{0}, bytes_written_stored{0}, bytes_read_raw{0},
        bytes_read_stored{0}, corrupt_records{0}, store_errors{0}, spill_retries{0},
        spill_dropped{0};
  };

  explicit CacheCore(const CacheOptions& options);

  // Reads up to options_.promote_batch blocks starting at hashes[from] from
  // the spill queue or the store, verifies them and pins them into memory.
  // Returns how many were promoted (0 ends the lookup).
  size_t PromoteRun(std::span<const Hash128> hashes, size_t from, std::span<const Token> tokens,
                    Lease* lease);
  // Verifies a record read under hashes[i] and decodes it into a buffer.
  Status VerifyAndDecode(const std::string& record, const Hash128& key, const Hash128& parent,
                         std::span<const Token> block_tokens, internal::BlockBuffer* buffer);
  // Drains the spill queue, writes resident blocks the store lacks, syncs.
  // REQUIRES: store_mu_ held (shared or exclusive).
  Status FlushLocked();
  // Hands evicted blocks the store lacks to the spill queue, refreshes the
  // disk recency of those it holds and of `also_touch`, frees the rest.
  void HandleEvicted(std::vector<internal::EvictedBlock>&& evicted,
                     std::span<const Hash128> also_touch = {});
  uint32_t NowMs() const;
  void Log(const std::string& message) const;
  // Logs the first occurrences of a kind of problem, then every 2^k-th.
  void LogSometimes(std::atomic<uint64_t>& counter, const std::string& message) const;

  const CacheOptions options_;
  const BlockLayout layout_;
  const Hash128 seed_;
  const std::chrono::steady_clock::time_point start_;
  internal::MemoryTier memory_;
  mutable Counters counters_;
  mutable std::atomic<uint64_t> spill_error_logs_{0};

  // Lookups, inserts and flushes hold store_mu_ shared; Close holds it
  // exclusively while it drains the queue and closes the store.
  mutable std::shared_mutex store_mu_;
  std::unique_ptr<BlockStore> store_;          // null when memory-only or closed
  std::unique_ptr<internal::SpillQueue> spill_;  // null when memory-only or closed
  std::atomic<bool> closed_{false};
};

}  // namespace kvtier

#endif  // KVTIER_CACHE_CACHE_CORE_H_
