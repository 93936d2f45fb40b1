#include "store/record_log.h"

#include <xxhash.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "store/store_mutation.h"  // FromRocks

namespace kvtier {

namespace {

constexpr uint32_t kFrameMagic = 0x4652564b;     // "KVRF" little-endian
constexpr uint32_t kLocationMagic = 0x314c564b;  // "KVL1" little-endian
constexpr size_t kLocationBytes = 4 + 4 + 8 + 4;
constexpr char kSuffix[] = ".kvr";
constexpr size_t kMaxOpenReaders = 256;
// Appended bytes between two writeback hints (see Append).
constexpr uint64_t kRangeSyncBytes = 1ull << 20;

void PutU32(char* p, uint32_t v) { std::memcpy(p, &v, 4); }
void PutU64(char* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint32_t GetU32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint64_t GetU64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// "NNNNNNNN.kvr" -> segment number; false for any other name.
bool ParseSegmentName(const std::string& name, uint32_t* segment) {
  if (name.size() != 8 + sizeof(kSuffix) - 1 || name.compare(8, std::string::npos, kSuffix) != 0) {
    return false;
  }
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
    v = v * 10 + static_cast<uint64_t>(name[i] - '0');
  }
  if (v == 0 || v > UINT32_MAX) return false;
  *segment = static_cast<uint32_t>(v);
  return true;
}

}  // namespace

std::string EncodeLocation(const RecordLocation& location) {
  std::string out(kLocationBytes, '\0');
  PutU32(out.data(), kLocationMagic);
  PutU32(out.data() + 4, location.segment);
  PutU64(out.data() + 8, location.offset);
  PutU32(out.data() + 16, location.length);
  return out;
}

bool DecodeLocation(std::string_view value, RecordLocation* location) {
  if (value.size() != kLocationBytes || GetU32(value.data()) != kLocationMagic) return false;
  location->segment = GetU32(value.data() + 4);
  location->offset = GetU64(value.data() + 8);
  location->length = GetU32(value.data() + 16);
  return location->segment != 0;
}

RecordLog::RecordLog(std::string dir, std::shared_ptr<rocksdb::FileSystem> fs, bool read_only,
                     uint64_t segment_bytes)
    : dir_(std::move(dir)), fs_(std::move(fs)), read_only_(read_only),
      segment_bytes_(segment_bytes) {}

RecordLog::~RecordLog() { (void)SealLocked(); }

Status RecordLog::Open(std::string dir, std::shared_ptr<rocksdb::FileSystem> fs, bool read_only,
                       uint64_t segment_bytes, std::unique_ptr<RecordLog>* log) {
  std::unique_ptr<RecordLog> opened(new RecordLog(std::move(dir), std::move(fs), read_only,
                                                  segment_bytes));
  const rocksdb::IOOptions io;
  std::vector<std::string> names;
  rocksdb::IOStatus s = opened->fs_->GetChildren(opened->dir_, io, &names, nullptr);
  if (s.IsNotFound() || s.IsPathNotFound()) {
    names.clear();  // no record written yet
  } else if (!s.ok()) {
    return FromRocks(s, "listing the record segments in " + opened->dir_);
  }
  for (const std::string& name : names) {
    uint32_t segment = 0;
    if (!ParseSegmentName(name, &segment)) continue;
    const std::string path = opened->SegmentPath(segment);
    uint64_t size = 0;
    s = opened->fs_->GetFileSize(path, io, &size, nullptr);
    if (!s.ok()) return FromRocks(s, "reading the size of " + path);
    opened->next_segment_ = std::max(opened->next_segment_, segment + 1);
    if (size == 0 && !read_only) {
      // Created, never written (a crash or a failed first append).
      s = opened->fs_->DeleteFile(path, io, nullptr);
      if (!s.ok()) return FromRocks(s, "removing the empty segment " + path);
      continue;
    }
    opened->sizes_[segment] = size;
  }
  *log = std::move(opened);
  return Status::OK();
}

std::string RecordLog::SegmentPath(uint32_t segment) const {
  char name[32];
  std::snprintf(name, sizeof(name), "/%08" PRIu32 "%s", segment, kSuffix);
  return dir_ + name;
}

Status RecordLog::StartSegment() {
  if (read_only_) return Status::NotSupported("record log opened read-only");
  const rocksdb::IOOptions io;
  rocksdb::IOStatus s = fs_->CreateDirIfMissing(dir_, io, nullptr);
  if (!s.ok()) return FromRocks(s, "creating the record directory " + dir_);
  const uint32_t segment = next_segment_;
  const std::string path = SegmentPath(segment);
  std::unique_ptr<rocksdb::FSWritableFile> file;
  s = fs_->NewWritableFile(path, rocksdb::FileOptions(), &file, nullptr);
  if (!s.ok()) return FromRocks(s, "creating the record segment " + path);
  ++next_segment_;
  // The new file's name must survive a machine crash as well as its bytes.
  std::unique_ptr<rocksdb::FSDirectory> dir;
  s = fs_->NewDirectory(dir_, io, &dir, nullptr);
  if (s.ok()) s = dir->FsyncWithDirOptions(io, nullptr, rocksdb::DirFsyncOptions());
  if (!s.ok()) {
    (void)file->Close(io, nullptr);
    (void)fs_->DeleteFile(path, io, nullptr);
    return FromRocks(s, "syncing the record directory " + dir_);
  }
  active_file_ = std::move(file);
  active_ = segment;
  range_synced_ = 0;
  std::lock_guard<std::mutex> lock(mu_);
  sizes_[segment] = 0;
  return Status::OK();
}

Status RecordLog::Append(const Hash128& key, std::string_view record,
                         RecordLocation* location) {
  if (record.size() > UINT32_MAX) {
    return Status::InvalidArgument("record of " + std::to_string(record.size()) +
                                   " bytes is too large for a record segment");
  }
  if (active_file_ == nullptr) {
    Status s = StartSegment();
    if (!s.ok()) return s;
  }
  uint64_t offset;
  {
    std::lock_guard<std::mutex> lock(mu_);
    offset = sizes_[active_];
  }
  char header[kFrameHeaderBytes];
  PutU32(header, kFrameMagic);
  PutU32(header + 4, static_cast<uint32_t>(record.size()));
  key.ToBytes(reinterpret_cast<uint8_t*>(header + 8));
  PutU64(header + 24, XXH3_64bits(header, 24));
  const rocksdb::IOOptions io;
  rocksdb::IOStatus s = active_file_->Append(rocksdb::Slice(header, sizeof(header)), io, nullptr);
  if (s.ok()) s = active_file_->Append(rocksdb::Slice(record.data(), record.size()), io, nullptr);
  const uint32_t segment = active_;
  if (!s.ok()) {
    // What reached the file is unknown: never append after it.
    const std::string path = SegmentPath(segment);
    (void)active_file_->Close(io, nullptr);
    active_file_.reset();
    active_ = 0;
    uint64_t size = 0;
    std::lock_guard<std::mutex> lock(mu_);
    if (fs_->GetFileSize(path, io, &size, nullptr).ok()) sizes_[segment] = size;
    return FromRocks(s, "appending a record to " + path);
  }
  location->segment = segment;
  location->offset = offset + kFrameHeaderBytes;
  location->length = static_cast<uint32_t>(record.size());
  uint64_t size;
  {
    std::lock_guard<std::mutex> lock(mu_);
    size = sizes_[segment] = offset + kFrameHeaderBytes + record.size();
  }
  if (size >= segment_bytes_) return Seal();
  if (size - range_synced_ >= kRangeSyncBytes) {
    // Start writing back what is appended (sync_file_range, no wait), as
    // RocksDB's bytes_per_sync does: a later Sync() then finds little left
    // to write, and the page cache does not fill with dirty pages. A hint:
    // its failure changes nothing.
    (void)active_file_->RangeSync(range_synced_, size - range_synced_, io, nullptr);
    range_synced_ = size;
  }
  return Status::OK();
}

Status RecordLog::Sync() {
  if (active_file_ == nullptr) return Status::OK();
  rocksdb::IOStatus s = active_file_->Sync(rocksdb::IOOptions(), nullptr);
  if (!s.ok()) return FromRocks(s, "syncing " + SegmentPath(active_));
  return Status::OK();
}

Status RecordLog::Seal() { return SealLocked(); }

Status RecordLog::SealLocked() {
  if (active_file_ == nullptr) return Status::OK();
  const rocksdb::IOOptions io;
  rocksdb::IOStatus s = active_file_->Sync(io, nullptr);
  rocksdb::IOStatus c = active_file_->Close(io, nullptr);
  const std::string path = SegmentPath(active_);
  active_file_.reset();
  active_ = 0;
  if (!s.ok()) return FromRocks(s, "syncing " + path);
  if (!c.ok()) return FromRocks(c, "closing " + path);
  return Status::OK();
}

Status RecordLog::Remove(uint32_t segment) {
  if (segment == active_) return Status::InvalidArgument("cannot remove the active segment");
  const std::string path = SegmentPath(segment);
  rocksdb::IOStatus s = fs_->DeleteFile(path, rocksdb::IOOptions(), nullptr);
  if (!s.ok() && !s.IsNotFound() && !s.IsPathNotFound()) {
    return FromRocks(s, "removing " + path);
  }
  std::lock_guard<std::mutex> lock(mu_);
  sizes_.erase(segment);
  readers_.erase(segment);
  return Status::OK();
}

std::shared_ptr<rocksdb::FSRandomAccessFile> RecordLog::Reader(uint32_t segment,
                                                               Status* status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = readers_.find(segment);
    if (it != readers_.end()) return it->second;
  }
  const std::string path = SegmentPath(segment);
  std::unique_ptr<rocksdb::FSRandomAccessFile> file;
  rocksdb::IOStatus s = fs_->NewRandomAccessFile(path, rocksdb::FileOptions(), &file, nullptr);
  if (!s.ok()) {
    *status = s.IsNotFound() || s.IsPathNotFound()
                  ? Status::NotFound("record segment " + path + " no longer exists")
                  : FromRocks(s, "opening " + path);
    return nullptr;
  }
  std::lock_guard<std::mutex> lock(mu_);
  // Bounded: a large store has thousands of segments. An evicted reader
  // stays open for whoever still holds it.
  if (readers_.size() >= kMaxOpenReaders) readers_.erase(readers_.begin());
  auto [it, inserted] = readers_.emplace(segment, std::move(file));
  return it->second;
}

Status RecordLog::Read(const RecordLocation& location, std::string* out) {
  Status status;
  std::shared_ptr<rocksdb::FSRandomAccessFile> file = Reader(location.segment, &status);
  if (file == nullptr) return status;
  out->resize(location.length);
  if (location.length == 0) return Status::OK();  // (POSIX Read fails n == 0)
  rocksdb::Slice result;
  rocksdb::IOStatus s = file->Read(location.offset, location.length, rocksdb::IOOptions(),
                                   &result, out->data(), nullptr);
  if (!s.ok()) return FromRocks(s, "reading a record from " + SegmentPath(location.segment));
  if (result.size() != location.length) {
    return Status::Corruption("record at offset " + std::to_string(location.offset) + " of " +
                              SegmentPath(location.segment) + " is cut short: " +
                              std::to_string(result.size()) + " of " +
                              std::to_string(location.length) + " bytes");
  }
  if (result.data() != out->data()) std::memcpy(out->data(), result.data(), result.size());
  return Status::OK();
}

Status RecordLog::ForEachFrame(
    uint32_t segment, const std::function<void(const Hash128&, const RecordLocation&)>& fn) {
  Status status;
  std::shared_ptr<rocksdb::FSRandomAccessFile> file = Reader(segment, &status);
  if (file == nullptr) return status;
  const std::string path = SegmentPath(segment);
  uint64_t size = 0;
  rocksdb::IOStatus s = fs_->GetFileSize(path, rocksdb::IOOptions(), &size, nullptr);
  if (!s.ok()) return FromRocks(s, "reading the size of " + path);
  uint64_t offset = 0;
  char header[kFrameHeaderBytes];
  while (offset + kFrameHeaderBytes <= size) {
    rocksdb::Slice result;
    s = file->Read(offset, sizeof(header), rocksdb::IOOptions(), &result, header, nullptr);
    if (!s.ok()) return FromRocks(s, "reading a frame header of " + path);
    if (result.size() != sizeof(header)) break;  // the file shrank: torn tail
    const uint32_t length = GetU32(result.data() + 4);
    if (GetU32(result.data()) != kFrameMagic ||
        GetU64(result.data() + 24) != XXH3_64bits(result.data(), 24)) {
      return Status::Corruption("malformed frame header at offset " + std::to_string(offset) +
                                " of " + path);
    }
    const uint64_t end = offset + kFrameHeaderBytes + length;
    if (end > size) break;  // torn final frame
    Hash128 key = Hash128::FromBytes(reinterpret_cast<const uint8_t*>(result.data() + 8));
    fn(key, RecordLocation{segment, offset + kFrameHeaderBytes, length});
    offset = end;
  }
  return Status::OK();
}

std::vector<uint32_t> RecordLog::SealedSegments() const {
  std::vector<uint32_t> out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [segment, size] : sizes_) {
    if (segment != active_) out.push_back(segment);
  }
  return out;
}

uint64_t RecordLog::total_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t total = 0;
  for (const auto& [segment, size] : sizes_) total += size;
  return total;
}

}  // namespace kvtier
