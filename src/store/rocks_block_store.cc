// RocksBlockStore: reads, writes and the manifest. Opening is in
// store_open.cc, eviction and maintenance in store_eviction.cc.
#include "store/rocks_block_store.h"

#include <chrono>
#include <filesystem>
#include <iostream>
#include <unordered_set>

#include "kvtier/record.h"
#include "store/store_format.h"

namespace kvtier {

namespace fmt = store_format;

namespace {

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::vector<std::string> EncodeKeys(std::span<const Hash128> keys) {
  std::vector<std::string> out;
  out.reserve(keys.size());
  for (const Hash128& key : keys) out.push_back(fmt::EncodeKey(key));
  return out;
}

bool SameIdentity(const Namespace& a, const Namespace& b) {
  return a.model == b.model && a.revision == b.revision && a.tokenizer == b.tokenizer &&
         a.tp_rank == b.tp_rank && a.tp_size == b.tp_size && a.salt == b.salt;
}

}  // namespace

void RocksBlockStore::MultiGet(std::span<const Hash128> keys, std::vector<std::string>* values,
                               std::vector<Status>* statuses) {
  const size_t n = keys.size();
  values->resize(n);  // keeps the caller's buffers: a warm read allocates nothing
  statuses->assign(n, Status::OK());
  if (n == 0) return;
  std::shared_lock<std::shared_mutex> db_lock;
  if (Status s = AcquireDatabase(&db_lock); !s.ok()) {
    for (size_t i = 0; i < n; ++i) {
      (*values)[i].clear();
      (*statuses)[i] = s;
    }
    return;
  }
  const std::vector<std::string> key_bytes = EncodeKeys(keys);
  std::vector<rocksdb::Slice> slices(key_bytes.begin(), key_bytes.end());
  // The values are locations (a format-1 store: the records themselves);
  // each PinnableSlice copies into (*values)[i] when it cannot pin, then
  // ResolveRecord reads the record over the location in the same string.
  std::vector<rocksdb::PinnableSlice> pins;
  pins.reserve(n);
  for (size_t i = 0; i < n; ++i) pins.emplace_back(&(*values)[i]);
  std::vector<rocksdb::Status> found(n);
  rocksdb::ReadOptions read_options;
  read_options.verify_checksums = false;  // records carry their own XXH3 checksums
  db_->MultiGet(read_options, cf_.records, n, slices.data(), pins.data(), found.data());
  for (size_t i = 0; i < n; ++i) {
    std::string& value = (*values)[i];
    if (found[i].ok()) {
      if (pins[i].IsPinned()) {  // memtable or block cache memory, never `value`
        value.assign(pins[i].data(), pins[i].size());
      } else if (pins[i].data() != value.data() || pins[i].size() != value.size()) {
        std::string copy(pins[i].data(), pins[i].size());
        value.swap(copy);
      }
    } else {
      value.clear();
      (*statuses)[i] = found[i].IsNotFound()
                           ? Status::NotFound("no record for key " + keys[i].ToHex())
                           : FromRocks(found[i], "reading record " + keys[i].ToHex());
    }
    pins[i].Reset();
    if ((*statuses)[i].ok()) {
      Status r = ResolveRecord(keys[i], &value);
      if (!r.ok()) {
        value.clear();
        (*statuses)[i] = r;
      }
    }
  }
}

Status RocksBlockStore::Exists(std::span<const Hash128> keys, std::vector<uint8_t>* present) {
  // The metadata is written in the same batch as the record and is a few
  // dozen bytes: checking it spares reading the records.
  std::shared_lock<std::shared_mutex> db_lock;
  if (Status s = AcquireDatabase(&db_lock); !s.ok()) return s;
  std::vector<RecordMeta> metas;
  return LoadMetas(db_.get(), cf_, keys, &metas, present);
}

Status RocksBlockStore::Put(std::span<const std::string_view> records) {
  Status s = CheckWritable();
  if (!s.ok() || records.empty()) return s;
  const size_t n = records.size();
  std::vector<RecordMeta> incoming(n);
  std::vector<Hash128> keys(n);
  for (size_t i = 0; i < n; ++i) {
    RecordHeader header;
    s = ParseRecordHeader(records[i], &header);
    if (!s.ok()) {
      return s.WithContext("record " + std::to_string(i) + " of " + std::to_string(n) +
                           " rejected, nothing written");
    }
    RecordMeta& meta = incoming[i];
    meta.key = keys[i] = header.Key();
    meta.parent = header.parent;
    meta.namespace_fp = header.namespace_fp;
    meta.depth = header.depth;
    meta.num_tokens = static_cast<uint32_t>(header.tokens.size());
    meta.flags = header.flags;
    meta.dtype = header.layout.dtype;
    meta.raw_bytes = header.raw_size;
    meta.stored_bytes = records[i].size();
    if (options_.max_bytes != 0 && meta.stored_bytes > options_.max_bytes) {
      return Status::Full("record " + meta.key.ToHex() + " is " +
                          std::to_string(meta.stored_bytes) +
                          " bytes, more than the store's whole budget (max_bytes " +
                          std::to_string(options_.max_bytes) + "); nothing written");
    }
  }

  std::lock_guard<std::mutex> lock(mu_);
  s = EnsureOpenLocked();
  if (!s.ok()) return s;
  std::vector<RecordMeta> stored;
  std::vector<uint8_t> found;
  s = LoadMetas(db_.get(), cf_, keys, &stored, &found);
  if (!s.ok()) return AfterWriteFailure(s);
  StoreMutation mutation(db_.get(), cf_, &state_, /*reserve_bytes=*/n * 256);
  const uint64_t seq = mutation.TakeSeq();
  const int64_t now = NowMicros();
  std::unordered_set<Hash128, Hash128Hasher> seen;
  for (size_t i = 0; i < n; ++i) {
    if (!seen.insert(keys[i]).second) continue;  // the same record twice in one batch
    if (found[i]) {
      mutation.Refresh(&stored[i], seq, now);
    } else {
      incoming[i].access_seq = seq;
      incoming[i].last_access_us = now;
      RecordLocation location;
      s = log_->Append(keys[i], records[i], &location);
      if (!s.ok()) return s.WithContext("nothing written");  // appended frames are dead space
      mutation.AddRecord(incoming[i], EncodeLocation(location));
    }
  }
  if (options_.sync_writes) {
    s = log_->Sync();
    if (!s.ok()) return s.WithContext("nothing written");
  }
  s = mutation.Commit(write_options_);
  if (!s.ok()) return AfterWriteFailure(s);
  Publish();
  if (options_.max_bytes != 0 && state_.counters.stored_bytes > options_.max_bytes) {
    TrimResult evicted;
    Status e = EvictToBudget(options_.max_bytes, &evicted);
    // The records are durable; the next Put retries the eviction.
    if (!e.ok()) {
      Log("records written to " + dir_ + ", but eviction failed: " + e.ToString());
      (void)AfterWriteFailure(e);
    }
  }
  (void)CollectSegments(/*max_segments=*/1);  // logs its errors; the records are written
  return Status::OK();
}

Status RocksBlockStore::Touch(std::span<const Hash128> keys) {
  Status s = CheckWritable();
  if (!s.ok() || keys.empty()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  s = EnsureOpenLocked();
  if (!s.ok()) return s;
  std::vector<RecordMeta> metas;
  std::vector<uint8_t> found;
  s = LoadMetas(db_.get(), cf_, keys, &metas, &found);
  if (!s.ok()) return AfterWriteFailure(s);
  StoreMutation mutation(db_.get(), cf_, &state_);
  uint64_t seq = 0;
  const int64_t now = NowMicros();
  std::unordered_set<Hash128, Hash128Hasher> seen;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!found[i] || !seen.insert(keys[i]).second) continue;
    if (seq == 0) seq = mutation.TakeSeq();
    mutation.Refresh(&metas[i], seq, now);
  }
  s = mutation.Commit(write_options_);
  if (!s.ok()) return AfterWriteFailure(s);
  Publish();
  return s;
}

Status RocksBlockStore::Delete(std::span<const Hash128> keys) {
  Status s = CheckWritable();
  if (!s.ok() || keys.empty()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  s = EnsureOpenLocked();
  if (!s.ok()) return s;
  std::vector<RecordMeta> metas;
  std::vector<uint8_t> found;
  s = LoadMetas(db_.get(), cf_, keys, &metas, &found);
  if (!s.ok()) return AfterWriteFailure(s);
  StoreMutation mutation(db_.get(), cf_, &state_);
  std::unordered_set<Hash128, Hash128Hasher> seen;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (found[i] && seen.insert(keys[i]).second) mutation.Erase(metas[i]);
  }
  s = mutation.Commit(write_options_);
  if (!s.ok()) return AfterWriteFailure(s);
  Publish();
  (void)CollectSegments(/*max_segments=*/0);
  return s;
}

Status RocksBlockStore::Flush() {
  if (options_.read_only) return Status::OK();  // nothing of ours to sync
  std::lock_guard<std::mutex> lock(mu_);
  Status open = EnsureOpenLocked();
  if (!open.ok()) return open;
  // Record bytes first: a durable location must name durable bytes.
  if (Status l = log_->Sync(); !l.ok()) return l;
  rocksdb::Status s = db_->FlushWAL(/*sync=*/true);
  if (!s.ok()) return AfterWriteFailure(FromRocks(s, "syncing the WAL of " + dir_));
  return Status::OK();
}

Status RocksBlockStore::GetStats(StoreStats* stats) {
  PublishedStats p;
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    p = published_;
  }
  *stats = StoreStats{};
  stats->format_version = format_version_;
  stats->records = p.counters.records;
  stats->raw_bytes = p.counters.raw_bytes;
  stats->stored_bytes = p.counters.stored_bytes;
  stats->max_bytes = options_.max_bytes;
  stats->files_bytes = FilesBytes();
  stats->evicted_records = p.evicted_records;
  stats->orphans_collected = p.orphans_collected;
  stats->read_only = options_.read_only;

  // A store closed after a failure still reports its counters.
  std::shared_lock<std::shared_mutex> db_lock;
  if (!AcquireDatabase(&db_lock).ok()) return Status::OK();
  // The ends of the recency index name the oldest and newest records.
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_.lru));
  for (int end = 0; end < 2; ++end) {
    if (end == 0) {
      it->Seek(p.lru_floor);  // the empty key: the first
    } else {
      it->SeekToLast();
    }
    if (!it->Valid()) break;
    uint64_t seq;
    uint32_t depth;
    Hash128 key;
    RecordMeta meta;
    bool found = false;
    if (!fmt::ParseLruKey(it->key().ToStringView(), &seq, &depth, &key)) continue;
    Status s = LoadMeta(db_.get(), cf_, key, &meta, &found);
    if (!s.ok()) return s;
    if (found) (end == 0 ? stats->oldest_access_us : stats->newest_access_us) = meta.last_access_us;
  }
  if (!it->status().ok()) return FromRocks(it->status(), "reading the recency index");
  return Status::OK();
}

Status RocksBlockStore::RegisterNamespace(const Namespace& ns) {
  Status s = CheckWritable();
  if (!s.ok()) return s;
  s = ns.Validate();
  if (!s.ok()) return s.WithContext("cannot register namespace");
  const Hash128 fp = ns.Fingerprint();
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [other_fp, entry] : state_.namespaces) {
    if (other_fp != fp && !entry.ns.model.empty() && SameIdentity(entry.ns, ns) &&
        !(entry.ns.layout == ns.layout)) {
      return Status::InvalidArgument(
          "namespace " + ns.Describe() + " does not match store " + dir_ +
          ", which holds the same model, revision, tokenizer, tp rank/size and salt with layout " +
          entry.ns.layout.ToString() + " (this server has layout " + ns.layout.ToString() + ")");
    }
  }
  auto known = state_.namespaces.find(fp);
  if (known != state_.namespaces.end() && !known->second.ns.model.empty()) return Status::OK();
  s = EnsureOpenLocked();
  if (!s.ok()) return s;
  StoreMutation mutation(db_.get(), cf_, &state_);
  mutation.SetNamespace(ns, fp);
  s = mutation.Commit(write_options_);
  if (!s.ok()) return AfterWriteFailure(s);
  return s;
}

Status RocksBlockStore::ListNamespaces(std::vector<NamespaceEntry>* out) {
  out->clear();
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [fp, entry] : state_.namespaces) out->push_back(entry);
  return Status::OK();
}

Status RocksBlockStore::GetMeta(const Hash128& key, RecordMeta* meta) {
  std::shared_lock<std::shared_mutex> db_lock;
  if (Status s = AcquireDatabase(&db_lock); !s.ok()) return s;
  bool found = false;
  Status s = LoadMeta(db_.get(), cf_, key, meta, &found);
  if (s.ok() && !found) return Status::NotFound("no record for key " + key.ToHex());
  return s;
}

Status RocksBlockStore::ForEachRecord(const std::function<bool(const RecordMeta&)>& fn) {
  // Pages of metadata are read under the database lock and handed to `fn`
  // without it, so `fn` may call any method of this store (a write that
  // fails reopens the database, which waits for readers) and a slow `fn`
  // never holds up a reopen.
  constexpr size_t kPage = 1024;
  std::string next;  // the first key of the next page; "" = the first key
  std::vector<RecordMeta> page;
  for (bool more = true; more;) {
    page.clear();
    more = false;
    {
      std::shared_lock<std::shared_mutex> db_lock;
      if (Status s = AcquireDatabase(&db_lock); !s.ok()) return s;
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_.meta));
      for (it->Seek(next); it->Valid(); it->Next()) {
        if (page.size() == kPage) {
          next = it->key().ToString();
          more = true;
          break;
        }
        Hash128 key;
        RecordMeta meta;
        if (!fmt::DecodeKey(it->key().ToStringView(), &key) ||
            !fmt::DecodeMeta(key, it->value().ToStringView(), &meta)) {
          return Status::Corruption("metadata entry " + it->key().ToString(/*hex=*/true) +
                                    " of store " + dir_ + " is malformed");
        }
        page.push_back(meta);
      }
      if (!it->status().ok()) return FromRocks(it->status(), "reading the metadata of " + dir_);
    }
    for (const RecordMeta& meta : page) {
      if (!fn(meta)) return Status::OK();
    }
  }
  return Status::OK();
}

std::string RocksBlockStore::Describe() const { return "rocksdb:" + dir_; }

Status RocksBlockStore::CheckWritable() const {
  if (options_.read_only) return Status::NotSupported("store opened read-only");
  return Status::OK();
}

void RocksBlockStore::Log(const std::string& message) const {
  if (options_.log) {
    options_.log(message);
  } else {
    std::cerr << "kvtier: " << message << "\n";
  }
}

void RocksBlockStore::Publish() {
  std::lock_guard<std::mutex> lock(stats_mu_);
  published_.counters = state_.counters;
  published_.evicted_records = evicted_records_;
  published_.orphans_collected = orphans_collected_;
  published_.lru_floor = lru_floor_;
}

uint64_t RocksBlockStore::FilesBytes() const {
  // Record segments, SST and blob files plus the WAL: what the records
  // cost on disk.
  uint64_t total = log_ != nullptr ? log_->total_bytes() : 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    const std::string ext = entry.path().extension().string();
    if (ext != ".sst" && ext != ".blob" && ext != ".log") continue;
    std::error_code size_ec;  // a file may vanish under a running compaction
    const uintmax_t size = entry.file_size(size_ec);
    if (!size_ec) total += size;
  }
  return total;
}

}  // namespace kvtier
