// Records: the self-checking, compressed form of one block on disk and on
// the wire (kvtierd). Every store holds records; the CLI reads them.
//
// Layout (all integers little-endian):
//
//   offset size  field
//   0      4     magic "KVTR"
//   4      2     format version (kRecordFormatVersion)
//   6      2     flags: bit0 byte-shuffled, bit1 zstd-compressed (else raw)
//   8      1     dtype
//   9      3     reserved, zero
//   12     4     num_layers
//   16     4     num_kv_heads
//   20     4     head_dim
//   24     4     block_size (= number of token ids that follow the header)
//   28     4     depth (block index in its prefix chain, 0 = first block)
//   32     16    namespace fingerprint (canonical bytes)
//   48     16    parent hash h(depth-1) (canonical bytes; the fingerprint at depth 0)
//   64     8     raw payload size (= layout.block_bytes())
//   72     8     body size (bytes after the token ids)
//   80     8     XXH3-64 of the raw payload
//   88     8     XXH3-64 of bytes [0, 88) and the token ids
//   96     4*bs  token ids of the block
//   ...    body  the payload, shuffled and/or zstd-compressed per flags
//
// A record's key is ChainHash(parent, tokens): readers recompute it and
// compare with the key they read it under, so a record misplaced under
// another key, a 128-bit collision, or a damaged header is never served.
#ifndef KVTIER_RECORD_H_
#define KVTIER_RECORD_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvtier/hash.h"
#include "kvtier/layout.h"
#include "kvtier/status.h"

namespace kvtier {

inline constexpr uint16_t kRecordFormatVersion = 1;
inline constexpr size_t kRecordFixedHeaderBytes = 96;

enum RecordFlags : uint16_t {
  kRecordShuffled = 1u << 0,
  kRecordCompressed = 1u << 1,
};

struct CodecOptions {
  // Byte-shuffle the element bytes before compressing (Blosc's filter): the
  // exponent bytes of f16/bf16/f32 values gather and compress far better.
  // Ignored for 1-byte dtypes.
  bool shuffle = true;
  // zstd level; 1 measured best for K/V here (higher levels were not smaller).
  int zstd_level = 1;
  // A block whose compressed body would save less than this fraction of the
  // raw size is stored raw (no shuffle, no zstd) to spare CPU on promote.
  double min_saving = 0.03;
};

// What a record says about itself, parsed and checked by ParseRecordHeader().
struct RecordHeader {
  uint16_t version = 0;
  uint16_t flags = 0;
  BlockLayout layout;
  uint32_t depth = 0;
  Hash128 namespace_fp;
  Hash128 parent;
  uint64_t raw_size = 0;
  uint64_t body_size = 0;
  uint64_t payload_checksum = 0;
  std::vector<Token> tokens;

  bool shuffled() const { return (flags & kRecordShuffled) != 0; }
  bool compressed() const { return (flags & kRecordCompressed) != 0; }
  // ChainHash(parent, tokens): the key this record belongs under.
  Hash128 Key() const;
  // Total record size: header + tokens + body.
  size_t record_size() const {
    return kRecordFixedHeaderBytes + 4 * tokens.size() + static_cast<size_t>(body_size);
  }
};

// What the encoder needs besides the payload.
struct RecordIdentity {
  BlockLayout layout;
  uint32_t depth = 0;
  Hash128 namespace_fp;
  Hash128 parent;
  std::span<const Token> tokens;  // exactly layout.block_size ids
};

// Encodes one block into `out` (replacing its contents).
// InvalidArgument if the layout is invalid, tokens.size() != block_size, or
// payload.size() != layout.block_bytes(). Thread-safe: zstd contexts are
// per thread and reused.
Status EncodeRecord(const RecordIdentity& id, std::span<const std::byte> payload,
                    const CodecOptions& options, std::string* out);

// Parses and validates the header and token ids of `record`: magic, version
// (NotSupported for a newer one), flags, layout, sizes against the record's
// length, and the header checksum. Corruption with the reason otherwise.
// Does not touch the body.
Status ParseRecordHeader(std::string_view record, RecordHeader* header);

// Parses the header, then decodes the body into `payload` (resized to
// raw_size) and checks the payload checksum. Corruption for any mismatch.
Status DecodeRecord(std::string_view record, RecordHeader* header,
                    std::vector<std::byte>* payload);

// As DecodeRecord, into a caller buffer of exactly header.raw_size bytes
// (for promotion straight into a cache-owned block). `header` must come from
// ParseRecordHeader() of the same `record`.
Status DecodeRecordInto(std::string_view record, const RecordHeader& header,
                        std::span<std::byte> payload);

}  // namespace kvtier

#endif  // KVTIER_RECORD_H_
