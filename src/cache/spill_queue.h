// SpillQueue: the bounded background path from memory to the store.
//
// Blocks leaving memory (or written through) wait here until worker threads
// encode them (shuffle + zstd, outside every cache lock) and write them in
// batched Puts. A block in the queue is still servable: lookups ask Find()
// before reading the store. The queue holds at most `max_bytes` of payload;
// Enqueue() waits for room (back-pressure), so memory never grows unbounded.
//
// A job for a block the store already holds (it was promoted from disk, or
// written before) only refreshes the record's recency; one for a block the
// store lost (evicted by the disk budget) writes it again.
#ifndef KVTIER_CACHE_SPILL_QUEUE_H_
#define KVTIER_CACHE_SPILL_QUEUE_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>
#include <thread>
#include <unordered_map>
#include <vector>

#include "kvtier/record.h"
#include "kvtier/store.h"
#include "memory/block_node.h"

namespace kvtier::internal {

struct SpillJob {
  Hash128 hash;
  Hash128 parent;
  uint32_t depth = 0;
  BlockBuffer buffer;
};

// Counters the queue updates (owned by the cache, relaxed atomics).
struct SpillCounters {
  std::atomic<uint64_t>* spills;
  std::atomic<uint64_t>* bytes_written_raw;
  std::atomic<uint64_t>* bytes_written_stored;
  std::atomic<uint64_t>* store_errors;
};

class SpillQueue {
 public:
  struct Config {
    BlockStore* store = nullptr;
    BlockLayout layout;
    Hash128 namespace_fp;
    CodecOptions codec;
    int threads = 1;
    uint64_t max_bytes = 0;
    SpillCounters counters;
    // Called (from a worker, no lock held) with blocks the store now holds.
    std::function<void(std::span<const Hash128>)> on_stored;
    std::function<void(const Status&)> on_error;
  };

  explicit SpillQueue(Config config);
  ~SpillQueue();  // Stop()
  SpillQueue(const SpillQueue&) = delete;
  SpillQueue& operator=(const SpillQueue&) = delete;

  // Queues blocks for writing; a block already queued is skipped. Waits
  // while the queue is over its byte budget.
  void Enqueue(std::vector<SpillJob> jobs);
  // Queues recency refreshes for blocks the store holds.
  void EnqueueTouch(std::span<const Hash128> hashes);
  // A queued block, shared (no copy). False if not queued.
  bool Find(const Hash128& hash, SpillJob* job) const;
  // Waits until every queued job has been processed.
  void Drain();
  // Drains, then stops the workers. Idempotent.
  void Stop();

  uint64_t queued_blocks() const;
  uint64_t queued_bytes() const;

 private:
  void WorkerLoop();
  void ProcessBatch(std::vector<SpillJob>& jobs, std::vector<Hash128>& touches);

  const Config config_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;  // workers wait for jobs
  std::condition_variable room_cv_;  // producers and Drain wait for progress
  // Guarded by mu_:
  std::unordered_map<Hash128, SpillJob, Hash128Hasher> pending_;  // queued + in flight
  std::deque<Hash128> order_;    // queued, not yet taken by a worker
  std::vector<Hash128> touches_;
  uint64_t bytes_ = 0;           // payload bytes in pending_
  int busy_workers_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace kvtier::internal

#endif  // KVTIER_CACHE_SPILL_QUEUE_H_
