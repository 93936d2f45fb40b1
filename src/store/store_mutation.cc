#include "store/store_mutation.h"

#include <algorithm>
#include <string>

namespace kvtier {

namespace fmt = store_format;

namespace {

// Counters never wrap: a bookkeeping mismatch must not turn into 2^64 bytes.
void Subtract(uint64_t* total, uint64_t amount) { *total -= std::min(*total, amount); }

rocksdb::Slice AsSlice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }

}  // namespace

Status FromRocks(const rocksdb::Status& s, std::string_view context) {
  std::string msg(context);
  msg += ": ";
  msg += s.ToString();
  if (s.IsCorruption()) return Status::Corruption(std::move(msg));
  if (s.IsInvalidArgument()) return Status::InvalidArgument(std::move(msg));
  if (s.IsNotSupported()) return Status::NotSupported(std::move(msg));
  if (s.IsNotFound()) return Status::NotFound(std::move(msg));
  return Status::IOError(std::move(msg));
}

Status LoadMetas(rocksdb::DB* db, const StoreFamilies& cf, std::span<const Hash128> keys,
                 std::vector<RecordMeta>* metas, std::vector<uint8_t>* found) {
  const size_t n = keys.size();
  metas->assign(n, RecordMeta{});
  found->assign(n, 0);
  if (n == 0) return Status::OK();
  std::vector<std::string> key_bytes(n);
  std::vector<rocksdb::Slice> slices(n);
  for (size_t i = 0; i < n; ++i) {
    key_bytes[i] = fmt::EncodeKey(keys[i]);
    slices[i] = key_bytes[i];
  }
  std::vector<rocksdb::PinnableSlice> values(n);
  std::vector<rocksdb::Status> statuses(n);
  db->MultiGet(rocksdb::ReadOptions(), cf.meta, n, slices.data(), values.data(),
               statuses.data());
  for (size_t i = 0; i < n; ++i) {
    if (statuses[i].IsNotFound()) continue;
    if (!statuses[i].ok()) return FromRocks(statuses[i], "reading record metadata");
    if (!fmt::DecodeMeta(keys[i], values[i].ToStringView(), &(*metas)[i])) {
      return Status::Corruption("metadata of record " + keys[i].ToHex() + " is malformed (" +
                                std::to_string(values[i].size()) + " bytes)");
    }
    (*found)[i] = 1;
  }
  return Status::OK();
}

Status LoadMeta(rocksdb::DB* db, const StoreFamilies& cf, const Hash128& key, RecordMeta* meta,
                bool* found) {
  std::vector<RecordMeta> metas;
  std::vector<uint8_t> present;
  Status s = LoadMetas(db, cf, std::span<const Hash128>(&key, 1), &metas, &present);
  if (!s.ok()) return s;
  *found = present[0] != 0;
  if (*found) *meta = metas[0];
  return Status::OK();
}

StoreMutation::StoreMutation(rocksdb::DB* db, const StoreFamilies& cf, WriterState* state,
                             size_t reserve_bytes)
    : db_(db), cf_(cf), state_(state), batch_(reserve_bytes), pending_(state->counters) {}

uint64_t StoreMutation::TakeSeq() {
  counters_changed_ = true;
  return pending_.next_seq++;
}

NamespaceEntry* StoreMutation::PendingNamespace(const Hash128& fingerprint, bool create) {
  auto it = touched_.find(fingerprint);
  if (it != touched_.end()) return &it->second;
  auto known = state_->namespaces.find(fingerprint);
  if (known != state_->namespaces.end()) return &(touched_[fingerprint] = known->second);
  if (!create) return nullptr;
  NamespaceEntry& entry = touched_[fingerprint];
  entry.fingerprint = fingerprint;  // fields unknown until RegisterNamespace
  return &entry;
}

void StoreMutation::AddRecord(const RecordMeta& meta, std::string_view location) {
  const std::string key = fmt::EncodeKey(meta.key);
  batch_.Put(cf_.records, key, AsSlice(location));
  batch_.Put(cf_.meta, key, fmt::EncodeMeta(meta));
  batch_.Put(cf_.lru, fmt::LruKey(meta.access_seq, meta.depth, meta.key), rocksdb::Slice());
  batch_.Put(cf_.children, fmt::ChildKey(meta.parent, meta.key), rocksdb::Slice());
  pending_.records += 1;
  pending_.raw_bytes += meta.raw_bytes;
  pending_.stored_bytes += meta.stored_bytes;
  counters_changed_ = true;
  NamespaceEntry* ns = PendingNamespace(meta.namespace_fp, /*create=*/true);
  ns->blocks += 1;
  ns->raw_bytes += meta.raw_bytes;
  ns->stored_bytes += meta.stored_bytes;
  ns->last_use_us = std::max(ns->last_use_us, meta.last_access_us);
  ++operations_;
}

void StoreMutation::Relocate(const Hash128& key, std::string_view location) {
  batch_.Put(cf_.records, fmt::EncodeKey(key), AsSlice(location));
  ++operations_;
}

void StoreMutation::Refresh(RecordMeta* meta, uint64_t seq, int64_t now_us) {
  batch_.Delete(cf_.lru, fmt::LruKey(meta->access_seq, meta->depth, meta->key));
  meta->access_seq = seq;
  meta->last_access_us = now_us;
  batch_.Put(cf_.lru, fmt::LruKey(meta->access_seq, meta->depth, meta->key), rocksdb::Slice());
  batch_.Put(cf_.meta, fmt::EncodeKey(meta->key), fmt::EncodeMeta(*meta));
  if (NamespaceEntry* ns = PendingNamespace(meta->namespace_fp, /*create=*/false)) {
    ns->last_use_us = std::max(ns->last_use_us, now_us);
  }
  ++operations_;
}

void StoreMutation::Erase(const RecordMeta& meta) {
  const std::string key = fmt::EncodeKey(meta.key);
  batch_.Delete(cf_.records, key);
  batch_.Delete(cf_.meta, key);
  batch_.Delete(cf_.lru, fmt::LruKey(meta.access_seq, meta.depth, meta.key));
  batch_.Delete(cf_.children, fmt::ChildKey(meta.parent, meta.key));
  Subtract(&pending_.records, 1);
  Subtract(&pending_.raw_bytes, meta.raw_bytes);
  Subtract(&pending_.stored_bytes, meta.stored_bytes);
  counters_changed_ = true;
  if (NamespaceEntry* ns = PendingNamespace(meta.namespace_fp, /*create=*/false)) {
    Subtract(&ns->blocks, 1);
    Subtract(&ns->raw_bytes, meta.raw_bytes);
    Subtract(&ns->stored_bytes, meta.stored_bytes);
  }
  ++operations_;
}

void StoreMutation::DeleteChildEntry(std::string_view child_key) {
  batch_.Delete(cf_.children, AsSlice(child_key));
}

void StoreMutation::DeleteLruEntry(std::string_view lru_key) {
  batch_.Delete(cf_.lru, AsSlice(lru_key));
  ++operations_;
}

void StoreMutation::SetNamespace(const Namespace& ns, const Hash128& fingerprint) {
  PendingNamespace(fingerprint, /*create=*/true)->ns = ns;
}

void StoreMutation::DropNamespace(const Hash128& fingerprint) {
  touched_.erase(fingerprint);
  dropped_.push_back(fingerprint);
}

Status StoreMutation::Commit(const rocksdb::WriteOptions& options) {
  if (operations_ == 0 && touched_.empty() && dropped_.empty() && !counters_changed_) {
    return Status::OK();
  }
  if (counters_changed_) batch_.Put(cf_.sys, fmt::kCountersKey, fmt::EncodeCounters(pending_));
  for (const auto& [fp, entry] : touched_) {
    batch_.Put(cf_.sys, fmt::NamespaceKey(fp), fmt::EncodeNamespaceEntry(entry));
  }
  for (const Hash128& fp : dropped_) batch_.Delete(cf_.sys, fmt::NamespaceKey(fp));

  rocksdb::Status s = db_->Write(options, &batch_);
  if (s.ok()) {
    state_->counters = pending_;
    for (auto& [fp, entry] : touched_) state_->namespaces[fp] = std::move(entry);
    for (const Hash128& fp : dropped_) state_->namespaces.erase(fp);
  } else {
    pending_ = state_->counters;
  }
  batch_.Clear();
  touched_.clear();
  dropped_.clear();
  operations_ = 0;
  counters_changed_ = false;
  if (!s.ok()) return FromRocks(s, "writing to the store");
  return Status::OK();
}

}  // namespace kvtier
