// StoreMutation: one atomic change to a RocksDB store. It gathers record
// location, metadata and index writes in a rocksdb::WriteBatch together with the
// counters they change, writes the new counters (absolute values) into the
// same batch, and applies them to the in-memory WriterState only once the
// batch is durable in the WAL. So the persisted counters always match the
// persisted records, and a failed write leaves memory unchanged.
//
// Thread-safety: none. The caller holds the store's writer mutex for the
// mutation's whole life.
#ifndef KVTIER_STORE_STORE_MUTATION_H_
#define KVTIER_STORE_STORE_MUTATION_H_

#include <cstdint>
#include <map>
#include <span>
#include <string_view>
#include <vector>

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include "kvtier/store.h"
#include "store/store_format.h"

namespace kvtier {

// The column families of an open store (owned by the store).
struct StoreFamilies {
  rocksdb::ColumnFamilyHandle* records = nullptr;  // "default"
  rocksdb::ColumnFamilyHandle* meta = nullptr;
  rocksdb::ColumnFamilyHandle* lru = nullptr;
  rocksdb::ColumnFamilyHandle* children = nullptr;
  rocksdb::ColumnFamilyHandle* sys = nullptr;
};

// What a writer keeps in memory between batches.
struct WriterState {
  store_format::Counters counters;
  std::map<Hash128, NamespaceEntry> namespaces;
};

// "<context>: <RocksDB message>" with the closest kvtier code (IOError for
// anything that is not corruption or a caller error).
Status FromRocks(const rocksdb::Status& s, std::string_view context);

// Reads the metadata of `keys` in one MultiGet. (*found)[i] = 1 and
// (*metas)[i] set for present keys. Corruption for undecodable metadata.
Status LoadMetas(rocksdb::DB* db, const StoreFamilies& cf, std::span<const Hash128> keys,
                 std::vector<RecordMeta>* metas, std::vector<uint8_t>* found);
// One key; *found = false when absent.
Status LoadMeta(rocksdb::DB* db, const StoreFamilies& cf, const Hash128& key, RecordMeta* meta,
                bool* found);

class StoreMutation {
 public:
  // REQUIRES: db, cf and state outlive the mutation.
  // `reserve_bytes` sizes the batch up front: records are large, and a
  // batch that regrows re-copies them into fresh memory.
  StoreMutation(rocksdb::DB* db, const StoreFamilies& cf, WriterState* state,
                size_t reserve_bytes = 0);

  StoreMutation(const StoreMutation&) = delete;
  StoreMutation& operator=(const StoreMutation&) = delete;

  // Takes the next access sequence number for this batch.
  uint64_t TakeSeq();

  // Adds a record that is not in the store yet, with `meta` (whose
  // access_seq and last_access_us are already set) and `location` (its
  // EncodeLocation() in the record log). Registers an unknown namespace
  // fingerprint with an empty Namespace.
  void AddRecord(const RecordMeta& meta, std::string_view location);
  // Points a stored record at its new location (the segment collector).
  void Relocate(const Hash128& key, std::string_view location);
  // Marks a stored record as used at (seq, now_us): moves its `lru` entry
  // and updates *meta in place and in the batch.
  void Refresh(RecordMeta* meta, uint64_t seq, int64_t now_us);
  // Removes a stored record with its metadata and index entries. Entries
  // `meta.key || child` of its children are left to the caller.
  void Erase(const RecordMeta& meta);
  // Delete one `children` entry (descendant walks) or one `lru` entry
  // that names no stored record (a stale index entry).
  void DeleteChildEntry(std::string_view child_key);
  void DeleteLruEntry(std::string_view lru_key);

  // Sets the full Namespace of a manifest entry, creating the entry if
  // needed and keeping its counters.
  void SetNamespace(const Namespace& ns, const Hash128& fingerprint);
  // Removes the namespace's manifest entry at commit.
  void DropNamespace(const Hash128& fingerprint);

  const store_format::Counters& pending() const { return pending_; }
  // Manifest entries this batch has changed so far (their new values).
  const std::map<Hash128, NamespaceEntry>& touched_namespaces() const { return touched_; }
  // Record, refresh and erase operations gathered since the last commit.
  size_t operations() const { return operations_; }

  // Writes the batch with the new counters; on success applies them to the
  // WriterState and starts a fresh, empty batch. On failure nothing changes
  // in memory and the gathered operations are dropped.
  Status Commit(const rocksdb::WriteOptions& options);

 private:
  NamespaceEntry* PendingNamespace(const Hash128& fingerprint, bool create);

  rocksdb::DB* db_;
  StoreFamilies cf_;
  WriterState* state_;
  rocksdb::WriteBatch batch_;
  store_format::Counters pending_;
  std::map<Hash128, NamespaceEntry> touched_;
  std::vector<Hash128> dropped_;
  size_t operations_ = 0;
  bool counters_changed_ = false;
};

}  // namespace kvtier

#endif  // KVTIER_STORE_STORE_MUTATION_H_
