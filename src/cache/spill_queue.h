// SpillQueue: the bounded background path from memory to the store.
//
// Blocks leaving memory (or written through) wait here until worker threads
// encode them (shuffle + zstd, outside every cache lock) and the queue's
// writer thread writes them in batched Puts. One encoded batch waits for the
// writer at a time, so a worker encodes the next batch while the last one
// is written (the store serializes writes anyway). A block in the queue is still servable: lookups ask Find()
// before reading the store. The queue holds at most `max_bytes` of payload;
// Enqueue() waits for room (back-pressure), so memory never grows unbounded.
//
// A job for a block the store already holds (it was promoted from disk, or
// written before) only refreshes the record's recency; one for a block the
// store lost (evicted by the disk budget) writes it again.
//
// Failures. A batch whose write fails goes back to the front of the queue
// (counted in `retries`) and is tried again after a backoff (10 ms, doubling
// to 250 ms while the store keeps failing); recency refreshes are skipped
// meanwhile. A block is given up -- counted in `dropped` and logged, never
// silently -- once the store has failed kMaxStoreFailures writes since the
// block was queued; and once that many writes failed in a row (an outage),
// a producer that finds the queue full drops the oldest queued blocks
// instead of waiting. So a
// brief fault loses nothing, and an outage (a full disk, a dead device)
// neither blocks eviction for long nor grows the queue past max_bytes. A
// given-up block that is still resident in memory is queued again by a
// later eviction or Flush(); an evicted one is lost to the cache (a miss
// later, never wrong data).
#ifndef KVTIER_CACHE_SPILL_QUEUE_H_
#define KVTIER_CACHE_SPILL_QUEUE_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "kvtier/record.h"
#include "kvtier/store.h"
#include "memory/block_buffer.h"

namespace kvtier::internal {

struct SpillJob {
  Hash128 hash;
  Hash128 parent;
  uint32_t depth = 0;
  BlockBuffer buffer;
  // Set by the queue: its count of failed store writes when the job came.
  uint64_t failures_at_enqueue = 0;
};

// Failed store writes a queued block survives before it is given up.
inline constexpr uint64_t kMaxStoreFailures = 3;

// Counters the queue updates (owned by the cache, relaxed atomics).
struct SpillCounters {
  std::atomic<uint64_t>* spills;
  std::atomic<uint64_t>* bytes_written_raw;
  std::atomic<uint64_t>* bytes_written_stored;
  std::atomic<uint64_t>* store_errors;
  std::atomic<uint64_t>* retries;  // blocks queued again after a failed write
  std::atomic<uint64_t>* dropped;  // blocks given up (see "Failures" above)
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
    // Called (no lock held) with every failed store call and every block
    // given up; the owner logs them, rate-limited.
    std::function<void(const Status&)> on_error;
    // Called when the store writes again after failing.
    std::function<void(const std::string&)> on_recovered;
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
  using Clock = std::chrono::steady_clock;
  // What became of one job of a batch.
  enum class Outcome : uint8_t { kStored, kFailed, kUnencodable };

  // One batch on its way to the store: taken from the queue and encoded by
  // a worker, written by the writer thread. Batches are recycled, so their
  // encode buffers are reused (a fresh buffer per record would be
  // zero-filled and page-faulted in for every block).
  struct Batch {
    std::vector<SpillJob> jobs;
    std::vector<Hash128> touches;
    std::vector<std::string> records;  // encode buffers; [0, views.size()) in use
    std::vector<std::string_view> views;
    std::vector<size_t> written_jobs;  // jobs[] index of each view
    std::vector<Hash128> stored;       // what the store holds once written
    std::vector<Outcome> outcomes;     // per job
    uint64_t raw = 0, bytes = 0;
    void Clear();  // keeps the records' buffers
  };

  // Workers: take a batch, encode it (no lock held), hand it to the writer.
  void WorkerLoop();
  // The writer: writes each batch, then updates the queue's books (stored
  // jobs leave it, failed ones go back to its front).
  void WriterLoop();
  // Checks which jobs the store holds already (touched, not written) and
  // encodes the others; sets outcomes for unencodable ones.
  void EncodeBatch(Batch* batch);
  // Writes and touches (no lock held). False if the store refused the write;
  // its jobs' outcomes are then kFailed.
  bool WriteBatch(Batch* batch);
  void Fail(const Status& s);  // counts and reports a store or codec error
  // REQUIRE: mu_ held. Room for `size` more payload bytes?
  bool HasRoomLocked(uint64_t size) const;
  // Removes a queued (not in-flight) job from the queue's books.
  void ForgetLocked(const Hash128& hash);
  // Gives up queued jobs that saw kMaxStoreFailures failures; returns how many.
  uint64_t GiveUpLocked();

  const Config config_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;  // workers wait for jobs
  std::condition_variable room_cv_;  // producers and Drain wait for progress
  // Guarded by mu_:
  std::unordered_map<Hash128, SpillJob, Hash128Hasher> pending_;  // queued + in flight
  std::deque<Hash128> order_;    // queued, not yet taken by a worker
  std::vector<Hash128> touches_;
  uint64_t bytes_ = 0;           // payload bytes in pending_
  // Batches taken from the queue and not yet written (being encoded, in the
  // write slot, or being written): Drain() waits for 0.
  int batches_in_flight_ = 0;
  std::condition_variable write_cv_;  // the write slot filled or emptied
  std::unique_ptr<Batch> write_slot_;  // encoded, waiting for the writer
  std::vector<std::unique_ptr<Batch>> free_batches_;
  bool writer_stopping_ = false;
  bool stopping_ = false;
  uint64_t store_failures_ = 0;      // failed batch writes since start
  uint64_t consecutive_failures_ = 0;  // since the last successful write
  Clock::time_point retry_at_{};     // while failing: when to write again
  std::vector<std::thread> workers_;
  std::thread writer_;
};

}  // namespace kvtier::internal

#endif  // KVTIER_CACHE_SPILL_QUEUE_H_
