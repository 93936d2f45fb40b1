// Archive: a portable, checksummed file of records, written by `kvtier
// export` and read by `kvtier import` (to move a warm cache to another node).
//
// Format version 1 (all integers little-endian):
//
//   file header, 24 bytes
//     0   8  magic "KVTARCHV"
//     8   4  archive format version (kArchiveVersion)
//     12  4  reserved, zero
//     16  8  XXH3-64 of bytes [0, 16)
//   frames, each a 24-byte frame header followed by `length` body bytes
//     0   1  type: 'N' namespace, 'R' record, 'E' end
//     1   3  reserved, zero
//     4   4  body length (at most kMaxFrameBody)
//     8   8  XXH3-64 of the body
//     16  8  XXH3-64 of frame header bytes [0, 16)
//   bodies
//     'N'  the namespace's description (EncodeNamespace)
//     'R'  16-byte key (canonical bytes), then the record exactly as stored
//     'E'  u64 namespace frames, u64 record frames, u64 XXH3-64 of every
//          frame header before this one, concatenated. The last frame.
//
// What damage means: a bad file header, a frame header whose checksum
// fails, a length past the end of the file, a missing end frame
// (truncation), an end frame whose counts or digest disagree (frames lost,
// added or reordered), or bytes after it: the whole archive is malformed
// (Corruption). A body whose checksum fails spoils only its own frame: the
// frame header still gives its length, so the reader reports it and goes on.
#ifndef KVTIER_TOOLS_CLI_ARCHIVE_H_
#define KVTIER_TOOLS_CLI_ARCHIVE_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>

#include "kvtier/hash.h"
#include "kvtier/layout.h"
#include "kvtier/status.h"

namespace kvtier::cli {

inline constexpr uint32_t kArchiveVersion = 1;
inline constexpr size_t kArchiveHeaderBytes = 24;
inline constexpr size_t kFrameHeaderBytes = 24;
inline constexpr uint32_t kMaxFrameBody = 512u << 20;

enum class FrameType : uint8_t { kNamespace = 'N', kRecord = 'R', kEnd = 'E' };

struct Frame {
  FrameType type = FrameType::kEnd;
  uint64_t offset = 0;   // of the frame header in the file
  std::string body;
  bool body_ok = false;  // the body matches its checksum
};

// The 'N' body: fingerprint (16 canonical bytes), u32 num_layers,
// num_kv_heads, head_dim, block_size, u8 dtype, 3 zero bytes, u32 tp_rank,
// tp_size, then model, revision, tokenizer, salt as u32 length + bytes.
std::string EncodeNamespace(const Namespace& ns);
// Corruption unless `body` is a whole encoding whose fingerprint is the
// Fingerprint() of the namespace it describes.
Status DecodeNamespace(std::string_view body, Namespace* ns);

// Splits an 'R' body into its key and record. Corruption if too short.
Status SplitRecordBody(std::string_view body, Hash128* key, std::string_view* record);

struct FrameDigest;  // the running digest of frame headers (private)

// Reads an archive front to back. Not thread-safe.
class ArchiveReader {
 public:
  // Opens `path` and checks its file header: NotFound, IOError, Corruption
  // (not an archive, damaged header) or NotSupported (a newer version).
  static Status Open(const std::string& path, std::unique_ptr<ArchiveReader>* reader);
  ArchiveReader(const ArchiveReader&) = delete;
  ArchiveReader& operator=(const ArchiveReader&) = delete;
  ~ArchiveReader();

  // Reads the next frame. When it is the end frame, checks it against what
  // was read (counts, digest) and that the file ends there, and sets
  // *done. Corruption (with the byte offset) when the archive is malformed.
  Status Next(Frame* frame, bool* done);

  uint64_t file_size() const { return file_size_; }
  uint64_t offset() const { return offset_; }

 private:
  ArchiveReader(std::FILE* file, std::string path, uint64_t size);
  Status ReadExactly(size_t n, std::string* out, std::string_view what);

  std::FILE* file_;
  std::string path_;
  uint64_t file_size_;
  uint64_t offset_ = kArchiveHeaderBytes;
  uint64_t namespaces_ = 0;
  uint64_t records_ = 0;
  std::unique_ptr<FrameDigest> digest_;
};

// Writes an archive to a temporary file beside its path and renames it into
// place on Finish(), so a failed export never leaves a partial archive.
class ArchiveWriter {
 public:
  // InvalidArgument if `path` exists and !overwrite; IOError if the
  // temporary file cannot be created.
  static Status Create(const std::string& path, bool overwrite, std::unique_ptr<ArchiveWriter>* writer);
  ArchiveWriter(const ArchiveWriter&) = delete;
  ArchiveWriter& operator=(const ArchiveWriter&) = delete;
  // Removes the temporary file unless Finish() succeeded.
  ~ArchiveWriter();

  Status AddNamespace(const Namespace& ns);
  Status AddRecord(const Hash128& key, std::string_view record);
  // Writes the end frame, syncs, and renames the file into place.
  Status Finish();

  uint64_t bytes_written() const { return offset_; }

 private:
  ArchiveWriter(std::FILE* file, std::string path, std::string temp_path);
  Status AddFrame(FrameType type, std::string_view part1, std::string_view part2);

  std::FILE* file_;
  std::string path_;
  std::string temp_path_;
  bool finished_ = false;
  uint64_t offset_ = 0;
  uint64_t namespaces_ = 0;
  uint64_t records_ = 0;
  std::unique_ptr<FrameDigest> digest_;
};

}  // namespace kvtier::cli

#endif  // KVTIER_TOOLS_CLI_ARCHIVE_H_
