// RocksBlockStore: the embedded disk tier, a BlockStore in one RocksDB
// directory (see store_format.h for what the directory holds).
//
// Record bytes go to append-only segment files (record_log.h), written once;
// the default column family holds each record's location. Metadata, the
// recency index, the parent->child index and the manifest live in small
// column families beside them, written in the same WriteBatch as the
// locations, after the record bytes are in their segment, so a crash never
// leaves them disagreeing (a record appended whose batch never committed is
// dead space). Stores of format 1 held records inline in the default family
// (BlobDB); they are still read, and upgraded to format 2 by a writing open.
//
// Segments: the collector (store_segments.cc) reclaims the space of deleted
// records. When the segment files hold more than a quarter (and two
// segments) above the live records, the oldest sealed segment's live
// records are appended again (synced, their locations committed with a
// synced WAL write) and the segment is deleted; a Put collects at most one
// segment, deletions and trims as many as needed, Compact() all of them.
//
// Budget and counters: the store counts records, raw and stored bytes (in
// total and per namespace) in memory and writes their absolute values into
// every batch that changes them, so open reads a few keys and never scans
// the data. Stored bytes are record sizes, not file sizes
// (StoreStats::files_bytes reports those: they also hold the WAL, flushed
// at about 8 MiB, RocksDB's tables, and deleted records in segments the collector
// has not reached yet; Compact() reclaims those at once).
//
// Eviction: after each Put, while stored bytes exceed max_bytes, the first
// entry of the recency index (least recently used; deepest first among
// records used by the same Put/Touch call) is deleted together with every
// descendant reachable through the parent->child index, since a chain
// without its head can never be served. evicted_records counts every record
// the budget removed, orphans_collected the descendants among them; in a
// TrimResult likewise records_deleted includes orphans_collected. A single
// record larger than the whole budget is refused (Full) rather than written
// and evicted at once. Eviction runs after the Put's own batch is written;
// if it fails, Put still returns OK (the records are written), logs the
// error, and the next Put evicts again.
//
// A re-Put of a stored key only refreshes its recency: records are content-
// addressed, so the value is not written again (no SSD writes for blocks a
// store already holds). Delete() removes exactly the given records; their
// descendants stay until the budget or a trim reaches them.
//
// Read-only opens (DB::OpenForReadOnly) take no lock and see the store as
// of open time, WAL included. Their view is frozen, but the files behind it
// are not: a record whose segment the writing process has since collected
// (or, format 1, whose blob file it deleted) reads as an IOError. Inspect
// briefly, or reopen.
//
// Threads: readers (MultiGet, Exists, GetMeta, ForEachRecord, GetStats) go
// straight to RocksDB under a shared lock of db_mu_; writers serialize on
// mu_ (RocksDB allows one writing process; inside it, one mutating call at a
// time keeps the counters exact).
//
// Failures (store_recovery.cc): a writing call that fails with an I/O error
// closes and reopens the database before it returns, whether RocksDB
// stopped (a failed WAL append, a fatal background error) or not. A reopen
// replays the WAL and reloads the persisted counters, so the store's view
// matches what is really on disk: a write that failed may still be durable
// (a failed sync), and nothing is assumed either way. If the reopen fails
// too (the fault persists), the store stays closed: every call fails fast
// with an IOError naming the cause, and the next call after a backoff
// (10 ms doubling to 1 s) tries again, so the store comes back on its own
// once the fault clears. Failures are logged, the first few and then every
// 2^k-th.
#ifndef KVTIER_STORE_ROCKS_BLOCK_STORE_H_
#define KVTIER_STORE_ROCKS_BLOCK_STORE_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include <rocksdb/db.h>
#include <rocksdb/env.h>

#include "kvtier/store.h"
#include "store/record_log.h"
#include "store/store_mutation.h"

namespace kvtier {

class RocksBlockStore final : public BlockStore {
 public:
  // Opens (or creates) the store in directory `dir`. Errors as documented
  // for OpenBlockStore() in kvtier/store.h.
  static Status Open(const std::string& dir, const StoreOptions& options,
                     std::unique_ptr<BlockStore>* store);
  // As Open(), with RocksDB's file system and clock taken from `env`
  // (nullptr: RocksDB's default Env), e.g. rocksdb::NewCompositeEnv() of a
  // rocksdb::FileSystemWrapper. The store keeps `env` for its whole life,
  // reopens after a failure included. This is the seam for fault-injection
  // tests; no public header names RocksDB types.
  static Status Open(const std::string& dir, const StoreOptions& options,
                     std::shared_ptr<rocksdb::Env> env, std::unique_ptr<BlockStore>* store);

  RocksBlockStore(const RocksBlockStore&) = delete;
  RocksBlockStore& operator=(const RocksBlockStore&) = delete;
  // Closes the database: no exceptions, no aborts; errors are logged.
  ~RocksBlockStore() override;

  void MultiGet(std::span<const Hash128> keys, std::vector<std::string>* values,
                std::vector<Status>* statuses) override;
  Status Exists(std::span<const Hash128> keys, std::vector<uint8_t>* present) override;
  Status Put(std::span<const std::string_view> records) override;
  Status Touch(std::span<const Hash128> keys) override;
  Status Delete(std::span<const Hash128> keys) override;
  Status Flush() override;
  Status GetStats(StoreStats* stats) override;
  Status RegisterNamespace(const Namespace& ns) override;
  Status ListNamespaces(std::vector<NamespaceEntry>* out) override;
  Status GetMeta(const Hash128& key, RecordMeta* meta) override;
  Status ForEachRecord(const std::function<bool(const RecordMeta&)>& fn) override;
  Status TrimToBytes(uint64_t max_bytes, TrimResult* result) override;
  Status TrimOlderThan(int64_t unix_us, TrimResult* result) override;
  Status DropNamespace(const Hash128& fingerprint, TrimResult* result) override;
  Status Compact(CompactResult* result) override;
  std::string Describe() const override;

  // Times the database was closed and reopened after a failure, and whether
  // it is open now (for tests and diagnostics).
  uint64_t reopens() const { return reopens_.load(std::memory_order_relaxed); }
  bool available() const;

 private:
  // Counters as readers see them: a copy published after every commit.
  struct PublishedStats {
    store_format::Counters counters;
    uint64_t evicted_records = 0;
    uint64_t orphans_collected = 0;
    std::string lru_floor;
  };

  RocksBlockStore(std::string dir, StoreOptions options);

  // store_open.cc
  Status OpenDatabase(bool fresh);
  Status LoadState(bool fresh);  // REQUIRES: mu_ held
  void CloseDatabase();

  // store_recovery.cc. Readers: takes db_mu_ shared and checks that the
  // database is open (reopening it first if it is closed and the backoff
  // has passed); IOError naming the cause if it stays closed.
  Status AcquireDatabase(std::shared_lock<std::shared_mutex>* lock);
  // Writers, REQUIRES: mu_ held. Reopens a closed database when the backoff
  // has passed; IOError while it stays closed.
  Status EnsureOpenLocked();
  // Writers, REQUIRES: mu_ held, no iterator of db_ alive. Called with the
  // error a write returned: reopens the database (see above). Returns `s`.
  Status AfterWriteFailure(const Status& s);
  Status ReopenLocked(const std::string& cause);
  void LogFailure(const std::string& message);

  Status CheckWritable() const;
  void Log(const std::string& message) const;
  void Publish();  // REQUIRES: mu_ held
  uint64_t FilesBytes() const;

  // store_eviction.cc. REQUIRE: mu_ held. Evict LRU-first (with
  // descendants) while stored bytes exceed `budget`; add to `result`.
  Status EvictToBudget(uint64_t budget, TrimResult* result);

  // store_segments.cc. Readers (db_mu_ held shared): reads the record at
  // the location *value names into *value (a format-1 inline record is left
  // as it is). Retries once through the key's current location if the
  // collector removed the segment meanwhile.
  Status ResolveRecord(const Hash128& key, std::string* value);
  // Writers, REQUIRE: mu_ held.
  // Collects sealed segments while their dead space is above the threshold
  // above: at most `max_segments` of them (0 = no limit). Errors are
  // logged and returned; the records stay where they were.
  Status CollectSegments(size_t max_segments);
  // Moves the live records of `segment` to the active one, then deletes it.
  Status CollectSegment(uint32_t segment);
  // Live records of `segment`: walks its frames, or (a damaged frame
  // header) scans every location.
  Status LiveRecordsOf(uint32_t segment,
                       std::vector<std::pair<Hash128, RecordLocation>>* live);

  const std::string dir_;
  const StoreOptions options_;
  rocksdb::WriteOptions write_options_;
  std::shared_ptr<rocksdb::Env> env_;  // null: RocksDB's default
  std::unique_ptr<RecordLog> log_;     // record bytes; opened after db_
  // As on disk (a format-1 store opened read-only stays format 1).
  uint32_t format_version_ = kStoreFormatVersion;
  // Held shared by readers while they use db_, exclusively (with mu_) while
  // the database is closed and reopened. Writers hold mu_ instead.
  mutable std::shared_mutex db_mu_;
  std::unique_ptr<rocksdb::DB> db_;  // null while closed after a failure
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;  // all open families
  StoreFamilies cf_;

  std::mutex mu_;         // held by every writing call, start to end
  WriterState state_;     // GUARDED_BY(mu_)
  uint64_t evicted_records_ = 0;    // GUARDED_BY(mu_)
  uint64_t orphans_collected_ = 0;  // GUARDED_BY(mu_)
  // Every `lru` key below this one is deleted, and new keys always sort
  // above it (they take the next access_seq), so scans of the recency index
  // start here instead of walking the tombstones that eviction leaves at the
  // head of the index. Empty = start from the first key.
  std::string lru_floor_;  // GUARDED_BY(mu_)

  mutable std::mutex stats_mu_;
  PublishedStats published_;  // GUARDED_BY(stats_mu_)

  // Failure state, GUARDED_BY(mu_) (store_recovery.cc).
  std::string failure_;  // why db_ is closed; "" while it is open
  // A write failed since the database was opened: its WAL writer may hold
  // an error, and RocksDB 7.8 (Debian's build keeps assertions) aborts the
  // process if such a WAL is synced. Close skips the sync then.
  bool write_failed_ = false;
  std::chrono::steady_clock::time_point next_reopen_{};
  std::chrono::milliseconds reopen_backoff_{0};
  std::atomic<uint64_t> reopens_{0};
  std::atomic<uint64_t> failure_logs_{0};
};

}  // namespace kvtier

#endif  // KVTIER_STORE_ROCKS_BLOCK_STORE_H_
