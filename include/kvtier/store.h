// BlockStore: the disk tier. Holds records (see record.h) under their
// 16-byte prefix hash, keeps a byte budget across restarts, and evicts the
// least recently used records (the ends of prefix chains first) to stay in
// it. The cache, the `kvtier` CLI and `kvtierd` all use this interface.
//
// Implementations: a RocksDB directory (embedded; one writing process at a
// time), and (with kvtierd) a client of a node-local daemon.
//
// Thread-safety: every method may be called from several threads at once.
#ifndef KVTIER_STORE_H_
#define KVTIER_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvtier/hash.h"
#include "kvtier/layout.h"
#include "kvtier/status.h"

namespace kvtier {

// The on-disk layout of a store directory (column families, metadata keys,
// record segments). Stores of format 1 (records inline in RocksDB) are read
// and upgraded by a writing open; any other version is refused with
// NotSupported.
inline constexpr uint32_t kStoreFormatVersion = 2;
inline constexpr uint32_t kInlineRecordsFormatVersion = 1;

struct StoreOptions {
  // Budget for the stored (compressed) bytes of all records. Records are
  // evicted, least recently used first, to stay within it. 0 = no limit.
  uint64_t max_bytes = 16ull << 30;
  // Open without the write lock, for inspection while another process holds
  // the store: a consistent view frozen at open time. Writes fail with
  // NotSupported.
  bool read_only = false;
  // Create the directory and an empty store if none exists (ignored when
  // read_only: a missing store is then NotFound).
  bool create_if_missing = true;
  // fsync the WAL on every write batch, so acknowledged writes survive a
  // machine crash. Default off: writes survive a process kill (WAL, no
  // sync), and Flush() syncs.
  bool sync_writes = false;
  // Diagnostics sink; empty = stderr, prefixed "kvtier: ".
  std::function<void(std::string_view)> log;
};

// Per-record metadata, readable without reading the payload.
struct RecordMeta {
  Hash128 key;
  Hash128 parent;
  Hash128 namespace_fp;
  uint32_t depth = 0;       // block index in its chain
  uint32_t num_tokens = 0;  // tokens in this block (= block_size)
  uint16_t flags = 0;       // RecordFlags
  DType dtype = DType::kF16;
  uint64_t raw_bytes = 0;     // decoded payload size
  uint64_t stored_bytes = 0;  // record size on disk
  uint64_t access_seq = 0;    // store-wide recency counter (higher = newer)
  int64_t last_access_us = 0;  // wall clock, microseconds since the epoch
};

// One namespace in the store's manifest.
struct NamespaceEntry {
  Hash128 fingerprint;
  Namespace ns;  // as registered (layout, model, revision, ...)
  uint64_t blocks = 0;
  uint64_t raw_bytes = 0;
  uint64_t stored_bytes = 0;
  int64_t last_use_us = 0;
};

struct StoreStats {
  uint32_t format_version = 0;
  uint64_t records = 0;
  uint64_t raw_bytes = 0;
  uint64_t stored_bytes = 0;
  uint64_t max_bytes = 0;        // 0 = no limit
  uint64_t files_bytes = 0;      // bytes of the store's files on disk (segments, SST, WAL, ...)
  uint64_t evicted_records = 0;  // since open, by the budget
  uint64_t orphans_collected = 0;  // since open: descendants of evicted records
  int64_t oldest_access_us = 0;
  int64_t newest_access_us = 0;
  bool read_only = false;
};

struct TrimResult {
  uint64_t records_deleted = 0;
  uint64_t bytes_freed = 0;  // stored bytes
  uint64_t orphans_collected = 0;
};

struct CompactResult {
  uint64_t files_bytes_before = 0;
  uint64_t files_bytes_after = 0;
};

class BlockStore {
 public:
  virtual ~BlockStore() = default;

  // Reads the records stored under `keys`. On return values->size() and
  // statuses->size() equal keys.size(); (*statuses)[i] is OK, NotFound, or
  // an IOError. Records are returned as stored: the caller decodes and
  // verifies them (a store never vouches for a record's content).
  virtual void MultiGet(std::span<const Hash128> keys, std::vector<std::string>* values,
                        std::vector<Status>* statuses) = 0;

  // (*present)[i] = 1 if a record is stored under keys[i].
  virtual Status Exists(std::span<const Hash128> keys, std::vector<uint8_t>* present) = 0;

  // Writes `records` in one atomic batch. Each record's header is parsed and
  // checked (ParseRecordHeader) and its key is Key() of that header; any bad
  // record rejects the whole batch with its reason, nothing written.
  // Re-writing an existing key refreshes its recency (records are content-
  // addressed, so the bytes are the same). Then evicts least recently used
  // records to stay within max_bytes. Registers unknown namespaces by
  // fingerprint (see RegisterNamespace for the full description).
  virtual Status Put(std::span<const std::string_view> records) = 0;

  // Marks the present `keys` as just used (absent keys are ignored).
  virtual Status Touch(std::span<const Hash128> keys) = 0;

  // Deletes the records under `keys` (absent keys are ignored).
  virtual Status Delete(std::span<const Hash128> keys) = 0;

  // Makes every acknowledged write durable (syncs the WAL).
  virtual Status Flush() = 0;

  virtual Status GetStats(StoreStats* stats) = 0;

  // Records `ns` in the manifest. InvalidArgument if the store already holds
  // a namespace with the same model, revision, tokenizer, tp rank/size and
  // salt but another layout (a misconfigured server), naming both layouts.
  virtual Status RegisterNamespace(const Namespace& ns) = 0;
  virtual Status ListNamespaces(std::vector<NamespaceEntry>* out) = 0;

  // Metadata of one record; NotFound if absent.
  virtual Status GetMeta(const Hash128& key, RecordMeta* meta) = 0;
  // Visits the metadata of every record (no payload read) until `fn`
  // returns false.
  virtual Status ForEachRecord(const std::function<bool(const RecordMeta&)>& fn) = 0;

  // Evicts least recently used records (deepest first among equally recent
  // ones, and every descendant of an evicted record with it, since a chain
  // without its head can never be served) until stored bytes <= max_bytes.
  virtual Status TrimToBytes(uint64_t max_bytes, TrimResult* result) = 0;
  // Deletes every record last used before `unix_us`, and their descendants.
  virtual Status TrimOlderThan(int64_t unix_us, TrimResult* result) = 0;
  // Deletes every record of a namespace and removes it from the manifest.
  virtual Status DropNamespace(const Hash128& fingerprint, TrimResult* result) = 0;
  // Compacts the store's files and reclaims the space of deleted records.
  virtual Status Compact(CompactResult* result) = 0;

  // "rocksdb:/path/to/dir" or "kvtierd:/run/kvtier.sock".
  virtual std::string Describe() const = 0;
};

// Opens the store at `location`: a directory path (RocksDB, embedded), or
// "unix:PATH" for the store shared through the kvtierd listening at PATH
// (kvtier/daemon.h; the daemon's options rule max_bytes and sync_writes,
// read_only refuses writes locally).
// Errors: Busy if another process holds the store (the message names the
// lock and points to read-only inspection and kvtierd); NotSupported for
// another store format version; InvalidArgument for a directory that is not
// a kvtier store; IOError for an unreadable or unwritable path. For
// "unix:PATH": Unavailable if no daemon answers there (once open, calls
// fail fast with Unavailable while the daemon is down and the store
// reconnects with backoff), IOError if the daemon refuses this process's
// uid/gid.
Status OpenBlockStore(const std::string& location, const StoreOptions& options,
                      std::unique_ptr<BlockStore>* store);

}  // namespace kvtier

#endif  // KVTIER_STORE_H_
