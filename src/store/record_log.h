// RecordLog: the record bytes of a RocksDB store, in append-only segment
// files beside the database (`<store>/segments/NNNNNNNN.kvr`), so that each
// record is written once. RocksDB keeps only each record's location (the
// `default` family; see store_format.h), written in the same WAL batch as
// its metadata after the record's bytes are in the segment file.
//
// Why: through RocksDB every record was written twice (into the WAL, then
// into a blob file when the memtable flushed) and copied and CRC'd on each
// way; a segment append is one write(2) of the record (docs/BENCHMARKS.md).
//
// Segment file: a sequence of frames, each
//   u32 magic "KVRF" | u32 record length | key(16) | u64 XXH3-64 of the 24
//   bytes before it | the record bytes
// A location names the record bytes (segment, offset of the bytes, length),
// so a read is one pread into the caller's buffer. The frame header exists
// for the collector (store_segments.cc), which walks a segment's frames to
// find the records that still live in it. Records carry their own XXH3
// checksums (record.h); a damaged record is found by the decoder, not here.
//
// Durability: an append is in the page cache when Append returns (a process
// kill keeps it); Sync() makes every append so far durable. A full segment
// is synced when the log moves on to the next one. Each open for writing
// starts a new segment, so a torn frame (a crash mid-append) is only ever
// the last one of a segment, never written after.
//
// Threads: Append, Sync, Seal and Remove need the store's writer lock (one
// caller at a time); Read and the size queries may run concurrently with
// them and each other.
#ifndef KVTIER_STORE_RECORD_LOG_H_
#define KVTIER_STORE_RECORD_LOG_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <rocksdb/file_system.h>

#include "kvtier/hash.h"
#include "kvtier/status.h"

namespace kvtier {

struct RecordLocation {
  uint32_t segment = 0;
  uint64_t offset = 0;  // of the record bytes (after the frame header)
  uint32_t length = 0;

  bool operator==(const RecordLocation&) const = default;
};

class RecordLog {
 public:
  static constexpr size_t kFrameHeaderBytes = 32;

  // Opens the log in `dir` (created on the first Append) on `fs`. Lists the
  // segments and their sizes; removes empty ones unless `read_only`.
  // `segment_bytes`: a segment is sealed once it holds at least this much.
  static Status Open(std::string dir, std::shared_ptr<rocksdb::FileSystem> fs, bool read_only,
                     uint64_t segment_bytes, std::unique_ptr<RecordLog>* log);

  RecordLog(const RecordLog&) = delete;
  RecordLog& operator=(const RecordLog&) = delete;
  // Syncs and closes the active segment (errors are dropped: call Sync()
  // first to see them).
  ~RecordLog();

  // Appends one frame to the active segment (creating it, and the
  // directory, if needed) and sets *location. An I/O error seals the
  // segment (the next append starts a new one); what was partly written
  // stays as dead space for the collector.
  Status Append(const Hash128& key, std::string_view record, RecordLocation* location);
  // Makes every append so far durable (fdatasync of the active segment).
  Status Sync();
  // Syncs and closes the active segment; the next Append starts a new one.
  Status Seal();
  // Deletes a segment that is not the active one. Readers that already
  // opened it keep reading it until they let go.
  Status Remove(uint32_t segment);

  // Reads a record into *out (resized to location.length). NotFound if the
  // segment file no longer exists (the collector moved its records: read
  // the location again); Corruption if the file ends before the record
  // does (a segment torn by a machine crash); IOError naming the segment
  // for anything else.
  Status Read(const RecordLocation& location, std::string* out);

  // Calls fn(key, location) for every well-formed frame of `segment`, in
  // order. Corruption if a frame header is malformed before the end of the
  // file (the frames after it cannot be found by walking); OK at a torn
  // final frame.
  Status ForEachFrame(uint32_t segment,
                      const std::function<void(const Hash128&, const RecordLocation&)>& fn);

  // Sealed segments (every one but the active), oldest first.
  std::vector<uint32_t> SealedSegments() const;
  // Bytes of all segment files.
  uint64_t total_bytes() const;
  uint64_t segment_bytes() const { return segment_bytes_; }
  const std::string& dir() const { return dir_; }
  std::string SegmentPath(uint32_t segment) const;

 private:
  RecordLog(std::string dir, std::shared_ptr<rocksdb::FileSystem> fs, bool read_only,
            uint64_t segment_bytes);
  Status StartSegment();
  Status SealLocked();
  std::shared_ptr<rocksdb::FSRandomAccessFile> Reader(uint32_t segment, Status* status);

  const std::string dir_;
  const std::shared_ptr<rocksdb::FileSystem> fs_;
  const bool read_only_;
  const uint64_t segment_bytes_;

  // Writer state (the store's writer lock).
  std::unique_ptr<rocksdb::FSWritableFile> active_file_;
  uint32_t active_ = 0;  // 0: none
  uint32_t next_segment_ = 1;
  uint64_t range_synced_ = 0;  // of the active segment: writeback started up to here
  bool dir_synced_ = false;

  mutable std::mutex mu_;  // guards sizes_ and readers_
  std::map<uint32_t, uint64_t> sizes_;  // every segment file -> bytes
  std::map<uint32_t, std::shared_ptr<rocksdb::FSRandomAccessFile>> readers_;
};

// The 20-byte value the `default` family holds for a record in the log.
std::string EncodeLocation(const RecordLocation& location);
// False for anything else (e.g. a record stored inline by format 1).
bool DecodeLocation(std::string_view value, RecordLocation* location);

}  // namespace kvtier

#endif  // KVTIER_STORE_RECORD_LOG_H_
