// RocksBlockStore: reading records from the record log and collecting the
// space of deleted ones (see rocks_block_store.h, "Segments").
#include <memory>

#include "store/rocks_block_store.h"
#include "store/store_format.h"

namespace kvtier {

namespace fmt = store_format;

namespace {

// Locations looked up per MultiGet while a segment is collected.
constexpr size_t kLookupChunk = 512;

}  // namespace

Status RocksBlockStore::ResolveRecord(const Hash128& key, std::string* value) {
  RecordLocation location;
  if (!DecodeLocation(*value, &location)) return Status::OK();  // format 1: inline
  Status s = log_->Read(location, value);
  if (s.IsCorruption()) {
    // Cut short (a torn segment): damage, not an I/O fault. Handed on as a
    // damaged (empty) record, the caller's decode rejects it, counts it and
    // deletes it, instead of meeting the same error on every lookup.
    value->clear();
    return Status::OK();
  }
  if (!s.IsNotFound()) return s;
  // The collector moved the record and removed the segment after we read
  // the location: its new location is committed by now.
  std::string current;
  rocksdb::Status g = db_->Get(rocksdb::ReadOptions(), cf_.records, fmt::EncodeKey(key), &current);
  if (g.IsNotFound()) return Status::NotFound("no record for key " + key.ToHex());
  if (!g.ok()) return FromRocks(g, "reading the location of record " + key.ToHex());
  RecordLocation moved;
  if (!DecodeLocation(current, &moved)) {
    *value = std::move(current);
    return Status::OK();
  }
  if (moved == location) return Status::IOError(s.message());
  return log_->Read(moved, value);
}

Status RocksBlockStore::CollectSegments(size_t max_segments) {
  // Closed: a failed eviction just now could not reopen the database.
  if (options_.read_only || db_ == nullptr) return Status::OK();
  size_t collected = 0;
  while (max_segments == 0 || collected < max_segments) {
    // Frame headers are dead space's only false positive: count them live.
    const uint64_t live = state_.counters.stored_bytes +
                          state_.counters.records * RecordLog::kFrameHeaderBytes;
    const uint64_t total = log_->total_bytes();
    const uint64_t slack = std::max(live / 4, 2 * log_->segment_bytes());
    if (total <= live + slack) return Status::OK();
    const std::vector<uint32_t> sealed = log_->SealedSegments();
    if (sealed.empty()) return Status::OK();
    Status s = CollectSegment(sealed.front());
    if (!s.ok()) {
      // Rate-limited: a segment that cannot be collected is tried again by
      // the next Put.
      LogFailure("collecting record segment " + log_->SegmentPath(sealed.front()) +
                 " failed (its records stay where they are): " + s.ToString());
      return s;
    }
    ++collected;
  }
  return Status::OK();
}

Status RocksBlockStore::LiveRecordsOf(uint32_t segment,
                                      std::vector<std::pair<Hash128, RecordLocation>>* live) {
  live->clear();
  std::vector<std::pair<Hash128, RecordLocation>> frames;
  Status s = log_->ForEachFrame(segment, [&](const Hash128& key, const RecordLocation& at) {
    frames.emplace_back(key, at);
  });
  if (s.IsCorruption()) {
    // A damaged frame header hides the frames after it: find this
    // segment's records through their locations instead.
    Log(s.ToString() + "; scanning every record location instead");
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_.records));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      RecordLocation at;
      Hash128 key;
      if (DecodeLocation(it->value().ToStringView(), &at) && at.segment == segment &&
          fmt::DecodeKey(it->key().ToStringView(), &key)) {
        live->emplace_back(key, at);
      }
    }
    if (!it->status().ok()) return FromRocks(it->status(), "reading record locations");
    return Status::OK();
  }
  if (!s.ok()) return s;
  // A frame is live if its key's location still names it.
  std::vector<std::string> key_bytes;
  std::vector<rocksdb::Slice> slices;
  std::vector<rocksdb::PinnableSlice> values;
  std::vector<rocksdb::Status> statuses;
  for (size_t begin = 0; begin < frames.size(); begin += kLookupChunk) {
    const size_t n = std::min(kLookupChunk, frames.size() - begin);
    key_bytes.resize(n);
    slices.resize(n);
    values.clear();
    values.resize(n);
    statuses.assign(n, rocksdb::Status());
    for (size_t i = 0; i < n; ++i) {
      key_bytes[i] = fmt::EncodeKey(frames[begin + i].first);
      slices[i] = key_bytes[i];
    }
    db_->MultiGet(rocksdb::ReadOptions(), cf_.records, n, slices.data(), values.data(),
                  statuses.data());
    for (size_t i = 0; i < n; ++i) {
      if (statuses[i].IsNotFound()) continue;
      if (!statuses[i].ok()) return FromRocks(statuses[i], "reading record locations");
      RecordLocation at;
      if (DecodeLocation(values[i].ToStringView(), &at) && at == frames[begin + i].second) {
        live->push_back(frames[begin + i]);
      }
    }
  }
  return Status::OK();
}

Status RocksBlockStore::CollectSegment(uint32_t segment) {
  std::vector<std::pair<Hash128, RecordLocation>> live;
  Status s = LiveRecordsOf(segment, &live);
  if (!s.ok()) return s;
  StoreMutation mutation(db_.get(), cf_, &state_);
  std::string record;
  for (const auto& [key, at] : live) {
    s = log_->Read(at, &record);
    if (!s.ok()) return s;
    RecordLocation moved;
    s = log_->Append(key, record, &moved);
    if (!s.ok()) return s;
    mutation.Relocate(key, EncodeLocation(moved));
  }
  // The copies, then their locations, are durable before the originals go:
  // a machine crash must not lose records that were synced before.
  s = log_->Sync();
  if (!s.ok()) return s;
  rocksdb::WriteOptions synced = write_options_;
  synced.sync = true;
  s = mutation.Commit(synced);
  if (!s.ok()) return AfterWriteFailure(s);
  return log_->Remove(segment);
}

}  // namespace kvtier
