// RocksBlockStore: eviction to the budget, trims, namespace drops and
// compaction (segment collection is in store_segments.cc). Every deletion
// takes the record's descendants with it.
#include <functional>
#include <unordered_set>

#include "store/rocks_block_store.h"
#include "store/store_format.h"

namespace kvtier {

namespace fmt = store_format;

namespace {

// Deletions per WriteBatch: bounds the memory of a trim of a large store.
constexpr size_t kOperationsPerBatch = 4096;

// Deletes records together with every record below them in the prefix tree
// (found through the `children` index), in batches of bounded size.
// Everything it reads is committed state: the caller holds the writer mutex,
// and records erased by earlier batches of this walk are remembered.
class EraseWalk {
 public:
  // `target(key)` tells whether a descendant was to be deleted anyway; the
  // others count as orphans. REQUIRES: the store's writer mutex is held.
  EraseWalk(rocksdb::DB* db, const StoreFamilies& cf, WriterState* state,
            const rocksdb::WriteOptions& write_options,
            std::function<bool(const Hash128&)> target = nullptr)
      : db_(db),
        cf_(cf),
        write_options_(write_options),
        target_(std::move(target)),
        mutation_(db, cf, state),
        children_(db->NewIterator(rocksdb::ReadOptions(), cf.children)) {}

  bool erased(const Hash128& key) const { return erased_.count(key) != 0; }
  const fmt::Counters& pending() const { return mutation_.pending(); }
  StoreMutation& mutation() { return mutation_; }
  // What the committed batches removed.
  const TrimResult& committed() const { return committed_; }

  // Erases `root` and all its descendants.
  Status EraseTree(const RecordMeta& root) {
    std::vector<std::pair<RecordMeta, bool>> stack = {{root, true}};
    while (!stack.empty()) {
      auto [meta, is_root] = stack.back();
      stack.pop_back();
      if (!erased_.insert(meta.key).second) continue;
      mutation_.Erase(meta);
      result_.records_deleted += 1;
      result_.bytes_freed += meta.stored_bytes;
      if (!is_root && !(target_ && target_(meta.key))) result_.orphans_collected += 1;

      const std::string prefix = fmt::EncodeKey(meta.key);
      for (children_->Seek(prefix); children_->Valid() && children_->key().starts_with(prefix);
           children_->Next()) {
        Hash128 child;
        if (!fmt::ParseChildKey(children_->key().ToStringView(), &child)) continue;
        mutation_.DeleteChildEntry(children_->key().ToStringView());
        if (erased(child)) continue;
        RecordMeta child_meta;
        bool found = false;
        Status s = LoadMeta(db_, cf_, child, &child_meta, &found);
        if (!s.ok()) return s;
        if (found && child_meta.parent == meta.key) stack.push_back({child_meta, false});
      }
      if (!children_->status().ok()) {
        return FromRocks(children_->status(), "reading the children index");
      }
      if (mutation_.operations() >= kOperationsPerBatch) {
        Status s = Commit();
        if (!s.ok()) return s;
      }
    }
    return Status::OK();
  }

  Status Commit() {
    Status s = mutation_.Commit(write_options_);
    if (s.ok()) committed_ = result_;
    return s;
  }

 private:
  rocksdb::DB* db_;
  StoreFamilies cf_;
  const rocksdb::WriteOptions& write_options_;
  std::function<bool(const Hash128&)> target_;
  StoreMutation mutation_;
  std::unique_ptr<rocksdb::Iterator> children_;
  std::unordered_set<Hash128, Hash128Hasher> erased_;
  TrimResult result_;
  TrimResult committed_;
};

void Add(const TrimResult& from, TrimResult* to) {
  to->records_deleted += from.records_deleted;
  to->bytes_freed += from.bytes_freed;
  to->orphans_collected += from.orphans_collected;
}

// Every record's metadata for which `select` is true.
Status SelectRecords(rocksdb::DB* db, const StoreFamilies& cf,
                     const std::function<bool(const RecordMeta&)>& select,
                     std::vector<RecordMeta>* out) {
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), cf.meta));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    Hash128 key;
    RecordMeta meta;
    if (!fmt::DecodeKey(it->key().ToStringView(), &key) ||
        !fmt::DecodeMeta(key, it->value().ToStringView(), &meta)) {
      return Status::Corruption("metadata entry " + it->key().ToString(/*hex=*/true) +
                                " is malformed");
    }
    if (select(meta)) out->push_back(meta);
  }
  if (!it->status().ok()) return FromRocks(it->status(), "reading record metadata");
  return Status::OK();
}

}  // namespace

Status RocksBlockStore::EvictToBudget(uint64_t budget, TrimResult* result) {
  if (state_.counters.stored_bytes <= budget) return Status::OK();
  EraseWalk walk(db_.get(), cf_, &state_, write_options_);
  Status s;
  std::string floor = lru_floor_;  // advances past every entry this pass deletes
  {
    std::unique_ptr<rocksdb::Iterator> lru(db_->NewIterator(rocksdb::ReadOptions(), cf_.lru));
    for (lru->Seek(floor); s.ok() && lru->Valid() && walk.pending().stored_bytes > budget;
         lru->Next()) {
      floor = lru->key().ToString();
      uint64_t seq;
      uint32_t depth;
      Hash128 key;
      if (!fmt::ParseLruKey(lru->key().ToStringView(), &seq, &depth, &key)) continue;
      if (walk.erased(key)) continue;
      RecordMeta meta;
      bool found = false;
      s = LoadMeta(db_.get(), cf_, key, &meta, &found);
      if (!s.ok()) break;
      if (!found || meta.access_seq != seq) {
        walk.mutation().DeleteLruEntry(lru->key().ToStringView());
        continue;
      }
      s = walk.EraseTree(meta);
    }
    if (s.ok() && !lru->status().ok()) s = FromRocks(lru->status(), "reading the recency index");
  }
  if (s.ok()) s = walk.Commit();
  if (s.ok()) lru_floor_ = floor;
  Add(walk.committed(), result);
  evicted_records_ += walk.committed().records_deleted;
  orphans_collected_ += walk.committed().orphans_collected;
  Publish();
  return s;
}

Status RocksBlockStore::TrimToBytes(uint64_t max_bytes, TrimResult* result) {
  *result = TrimResult{};
  Status s = CheckWritable();
  if (!s.ok()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  s = EnsureOpenLocked();
  if (!s.ok()) return s;
  s = EvictToBudget(max_bytes, result);
  if (!s.ok()) return AfterWriteFailure(s);
  (void)CollectSegments(/*max_segments=*/0);  // logs its errors; the trim is done
  return Status::OK();
}

Status RocksBlockStore::TrimOlderThan(int64_t unix_us, TrimResult* result) {
  *result = TrimResult{};
  Status s = CheckWritable();
  if (!s.ok()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  s = EnsureOpenLocked();
  if (!s.ok()) return s;
  std::vector<RecordMeta> old;
  s = SelectRecords(
      db_.get(), cf_, [&](const RecordMeta& m) { return m.last_access_us < unix_us; }, &old);
  if (!s.ok()) return AfterWriteFailure(s);
  std::unordered_set<Hash128, Hash128Hasher> old_keys;
  for (const RecordMeta& m : old) old_keys.insert(m.key);
  {
    EraseWalk walk(db_.get(), cf_, &state_, write_options_,
                   [&](const Hash128& key) { return old_keys.count(key) != 0; });
    for (const RecordMeta& m : old) {
      if (!walk.erased(m.key)) s = walk.EraseTree(m);
      if (!s.ok()) break;
    }
    if (s.ok()) s = walk.Commit();
    *result = walk.committed();
    Publish();
  }  // the walk's iterator is gone before a reopen
  if (!s.ok()) return AfterWriteFailure(s);
  (void)CollectSegments(/*max_segments=*/0);  // logs its errors; the deletion is done
  return Status::OK();
}

Status RocksBlockStore::DropNamespace(const Hash128& fingerprint, TrimResult* result) {
  *result = TrimResult{};
  Status s = CheckWritable();
  if (!s.ok()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  s = EnsureOpenLocked();
  if (!s.ok()) return s;
  std::vector<RecordMeta> members;
  s = SelectRecords(
      db_.get(), cf_, [&](const RecordMeta& m) { return m.namespace_fp == fingerprint; },
      &members);
  if (!s.ok()) return AfterWriteFailure(s);
  if (members.empty() && state_.namespaces.count(fingerprint) == 0) {
    return Status::NotFound("store " + dir_ + " holds no namespace " + fingerprint.ToHex());
  }
  std::unordered_set<Hash128, Hash128Hasher> member_keys;
  for (const RecordMeta& m : members) member_keys.insert(m.key);
  {
    EraseWalk walk(db_.get(), cf_, &state_, write_options_,
                   [&](const Hash128& key) { return member_keys.count(key) != 0; });
    for (const RecordMeta& m : members) {
      if (!walk.erased(m.key)) s = walk.EraseTree(m);
      if (!s.ok()) break;
    }
    if (s.ok()) {
      walk.mutation().DropNamespace(fingerprint);
      s = walk.Commit();
    }
    *result = walk.committed();
    Publish();
  }  // the walk's iterator is gone before a reopen
  if (!s.ok()) return AfterWriteFailure(s);
  (void)CollectSegments(/*max_segments=*/0);  // logs its errors; the deletion is done
  return Status::OK();
}

Status RocksBlockStore::Compact(CompactResult* result) {
  *result = CompactResult{};
  Status s = CheckWritable();
  if (!s.ok()) return s;
  result->files_bytes_before = FilesBytes();
  {
    // Every segment, the active one included, is rewritten with only its
    // live records.
    std::lock_guard<std::mutex> lock(mu_);
    s = EnsureOpenLocked();
    if (s.ok()) s = log_->Seal();
    for (uint32_t segment : s.ok() ? log_->SealedSegments() : std::vector<uint32_t>()) {
      s = CollectSegment(segment);
      if (!s.ok()) break;
    }
    if (s.ok()) s = log_->Seal();
    if (!s.ok()) return s;
  }
  rocksdb::CompactRangeOptions options;
  options.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForceOptimized;
  // Format-1 stores: rewrite the live blobs of every blob file so files
  // holding deleted records are freed whole.
  options.blob_garbage_collection_policy = rocksdb::BlobGarbageCollectionPolicy::kForce;
  options.blob_garbage_collection_age_cutoff = 1.0;
  {
    // Compaction runs beside writers (it can take long), under the reader
    // lock; a failure reopens the database once the lock is dropped.
    std::shared_lock<std::shared_mutex> db_lock;
    s = AcquireDatabase(&db_lock);
    if (!s.ok()) return s;
    for (rocksdb::ColumnFamilyHandle* family : {cf_.records, cf_.meta, cf_.lru, cf_.children,
                                                cf_.sys}) {
      rocksdb::Status rs = db_->CompactRange(options, family, nullptr, nullptr);
      if (!rs.ok()) {
        s = FromRocks(rs, "compacting " + dir_);
        break;
      }
    }
  }
  if (!s.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    return AfterWriteFailure(s);
  }
  result->files_bytes_after = FilesBytes();
  return Status::OK();
}

}  // namespace kvtier
