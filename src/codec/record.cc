// The record codec: see kvtier/record.h for the byte layout and contracts.
#include "kvtier/record.h"

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>
#include <zstd.h>

#include <bit>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <limits>

#include "codec/shuffle.h"
#include "codec/thread_context.h"

namespace kvtier {

namespace {

static_assert(std::endian::native == std::endian::little,
              "records store integers and token ids little-endian, as this host does");

// Offsets of the fixed header fields.
constexpr size_t kMagicOffset = 0;
constexpr size_t kVersionOffset = 4;
constexpr size_t kFlagsOffset = 6;
constexpr size_t kDTypeOffset = 8;
constexpr size_t kReservedOffset = 9;
constexpr size_t kNumLayersOffset = 12;
constexpr size_t kNumKvHeadsOffset = 16;
constexpr size_t kHeadDimOffset = 20;
constexpr size_t kBlockSizeOffset = 24;
constexpr size_t kDepthOffset = 28;
constexpr size_t kNamespaceOffset = 32;
constexpr size_t kParentOffset = 48;
constexpr size_t kRawSizeOffset = 64;
constexpr size_t kBodySizeOffset = 72;
constexpr size_t kPayloadChecksumOffset = 80;
constexpr size_t kHeaderChecksumOffset = 88;
static_assert(kHeaderChecksumOffset + 8 == kRecordFixedHeaderBytes);

constexpr char kMagic[4] = {'K', 'V', 'T', 'R'};
constexpr uint16_t kKnownFlags = kRecordShuffled | kRecordCompressed;

void PutFixed16(char* dst, uint16_t v) { std::memcpy(dst, &v, sizeof(v)); }
void PutFixed32(char* dst, uint32_t v) { std::memcpy(dst, &v, sizeof(v)); }
void PutFixed64(char* dst, uint64_t v) { std::memcpy(dst, &v, sizeof(v)); }

uint16_t GetFixed16(const char* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
uint32_t GetFixed32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
uint64_t GetFixed64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

void PutHash(char* dst, const Hash128& h) { h.ToBytes(reinterpret_cast<uint8_t*>(dst)); }
Hash128 GetHash(const char* p) { return Hash128::FromBytes(reinterpret_cast<const uint8_t*>(p)); }

std::string HexBytes(const char* p, size_t n) {
  constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    const auto b = static_cast<uint8_t>(p[i]);
    out += kDigits[b >> 4];
    out += kDigits[b & 0xf];
  }
  return out;
}

std::string Hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016" PRIx64, v);
  return buf;
}

// XXH3-64 of the header bytes [0, 88) followed by the token ids.
uint64_t HeaderChecksum(const char* header, const char* token_ids, size_t token_bytes) {
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, header, kHeaderChecksumOffset);
  XXH3_64bits_update(&state, token_ids, token_bytes);
  return XXH3_64bits_digest(&state);
}

// Compresses `src` (raw_size bytes, `planes` byte planes of equal size after
// the shuffle, else 1) into `body` as one zstd frame. Each plane ends a zstd
// block, so each plane gets its own entropy tables: the low-entropy exponent
// plane and the near-random mantissa plane of a small block would otherwise
// share one 128 KiB zstd block and lose most of the shuffle's gain.
//
// Shuffled planes are matched with zstd's longest minimum match (7 bytes)
// at levels 1-3, instead of the level's default (6 at level 1 for these sizes): the
// sign+exponent plane of f16/bf16/f32 K/V is full of 6-byte repeats, and
// emitting each as its own sequence made bf16 encode at ~0.6x plain zstd-1;
// with 7-byte matches it encodes ~1.5x faster than plain zstd-1 and the
// frame is no larger (kvtier-bench ratio; docs/BENCHMARKS.md). Decoding does
// not depend on the parameter.
// Returns the frame size, or 0 if zstd failed or `capacity` was too small.
constexpr int kShuffledMinMatch = 7;
constexpr int kFastLevelMax = 3;  // the fast/dfast levels, where this was measured

size_t CompressPlanes(ZSTD_CCtx* cctx, const std::byte* src, size_t raw_size, size_t planes,
                      int level, char* body, size_t capacity) {
  ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
  if (ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level)) ||
      ZSTD_isError(ZSTD_CCtx_setPledgedSrcSize(cctx, raw_size))) {
    return 0;
  }
  if (planes > 1 && level >= 1 && level <= kFastLevelMax &&
      ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_minMatch, kShuffledMinMatch))) {
    return 0;
  }
  ZSTD_outBuffer out{body, capacity, 0};
  const size_t plane_size = raw_size / planes;
  for (size_t j = 0; j < planes; ++j) {
    const bool last = j + 1 == planes;
    const size_t end = last ? raw_size : (j + 1) * plane_size;
    ZSTD_inBuffer in{src + j * plane_size, end - j * plane_size, 0};
    const ZSTD_EndDirective mode = last ? ZSTD_e_end : ZSTD_e_flush;
    size_t remaining;
    do {
      remaining = ZSTD_compressStream2(cctx, &out, &in, mode);
      if (ZSTD_isError(remaining)) return 0;
    } while (remaining != 0 && out.pos < out.size);
    if (remaining != 0) return 0;  // out of room
  }
  return out.pos;
}

// Compresses `payload` into `body` (of `capacity` bytes), shuffled first when
// asked and the elements are wider than a byte. Returns the body size and
// sets *flags, or returns 0 when the body would not save options.min_saving
// of the raw size; the caller then stores the payload raw. A zstd failure
// also returns 0: raw is always a correct encoding (RocksDB likewise stores a
// block uncompressed when compression fails).
size_t CompressBody(std::span<const std::byte> payload, size_t element_size,
                    const CodecOptions& options, char* body, size_t capacity, uint16_t* flags) {
  ZSTD_CCtx* cctx = codec::ThreadCompressionContext();
  if (cctx == nullptr) return 0;
  const bool shuffle = options.shuffle && element_size > 1;
  const std::byte* src = payload.data();
  if (shuffle) {
    std::span<std::byte> shuffled = codec::ThreadScratch(payload.size());
    codec::ShuffleBytes(element_size, payload, shuffled);
    src = shuffled.data();
  }
  const size_t n = CompressPlanes(cctx, src, payload.size(), shuffle ? element_size : 1,
                                  options.zstd_level, body, capacity);
  if (shuffle) codec::ReleaseLargeScratch();
  if (n == 0 || n >= payload.size()) return 0;
  const double saving =
      static_cast<double>(payload.size() - n) / static_cast<double>(payload.size());
  if (!(saving >= options.min_saving)) return 0;
  *flags = kRecordCompressed | (shuffle ? kRecordShuffled : 0);
  return n;
}

}  // namespace

Hash128 RecordHeader::Key() const { return ChainHash(parent, tokens); }

Status EncodeRecord(const RecordIdentity& id, std::span<const std::byte> payload,
                    const CodecOptions& options, std::string* out) {
  const BlockLayout& layout = id.layout;
  if (Status s = layout.Validate(); !s.ok()) return Status::InvalidArgument("record: " + s.message());
  if (id.tokens.size() != layout.block_size) {
    return Status::InvalidArgument("record: " + std::to_string(id.tokens.size()) +
                                   " token ids, layout " + layout.ToString() + " needs " +
                                   std::to_string(layout.block_size));
  }
  const size_t raw_size = layout.block_bytes();
  if (payload.size() != raw_size) {
    return Status::InvalidArgument("record: payload is " + std::to_string(payload.size()) +
                                   " bytes, layout " + layout.ToString() + " needs " +
                                   std::to_string(raw_size));
  }
  if (options.zstd_level < ZSTD_minCLevel() || options.zstd_level > ZSTD_maxCLevel()) {
    return Status::InvalidArgument("record: zstd level " + std::to_string(options.zstd_level) +
                                   " is outside [" + std::to_string(ZSTD_minCLevel()) + ", " +
                                   std::to_string(ZSTD_maxCLevel()) + "]");
  }

  // Size `out` once for the worst case, compress straight into it, shrink.
  const size_t token_bytes = sizeof(Token) * id.tokens.size();
  const size_t body_offset = kRecordFixedHeaderBytes + token_bytes;
  const size_t capacity = ZSTD_compressBound(raw_size);  // >= raw_size
  out->resize(body_offset + capacity);
  char* body = out->data() + body_offset;
  uint16_t flags = 0;
  size_t body_size =
      CompressBody(payload, layout.element_size(), options, body, capacity, &flags);
  if (body_size == 0) {
    flags = 0;
    body_size = raw_size;
    std::memcpy(body, payload.data(), raw_size);
  }
  out->resize(body_offset + body_size);

  char* p = out->data();
  std::memcpy(p + kMagicOffset, kMagic, sizeof(kMagic));
  PutFixed16(p + kVersionOffset, kRecordFormatVersion);
  PutFixed16(p + kFlagsOffset, flags);
  p[kDTypeOffset] = static_cast<char>(layout.dtype);
  std::memset(p + kReservedOffset, 0, 3);
  PutFixed32(p + kNumLayersOffset, layout.num_layers);
  PutFixed32(p + kNumKvHeadsOffset, layout.num_kv_heads);
  PutFixed32(p + kHeadDimOffset, layout.head_dim);
  PutFixed32(p + kBlockSizeOffset, layout.block_size);
  PutFixed32(p + kDepthOffset, id.depth);
  PutHash(p + kNamespaceOffset, id.namespace_fp);
  PutHash(p + kParentOffset, id.parent);
  PutFixed64(p + kRawSizeOffset, raw_size);
  PutFixed64(p + kBodySizeOffset, body_size);
  PutFixed64(p + kPayloadChecksumOffset, XXH3_64bits(payload.data(), raw_size));
  std::memcpy(p + kRecordFixedHeaderBytes, id.tokens.data(), token_bytes);
  PutFixed64(p + kHeaderChecksumOffset,
             HeaderChecksum(p, p + kRecordFixedHeaderBytes, token_bytes));
  return Status::OK();
}

Status ParseRecordHeader(std::string_view record, RecordHeader* header) {
  const size_t size = record.size();
  if (size < kRecordFixedHeaderBytes) {
    return Status::Corruption("record: " + std::to_string(size) +
                              " bytes is shorter than the 96-byte header");
  }
  const char* p = record.data();
  if (std::memcmp(p + kMagicOffset, kMagic, sizeof(kMagic)) != 0) {
    return Status::Corruption("record: bad magic " + HexBytes(p + kMagicOffset, sizeof(kMagic)) +
                              " (expected 4b565452, \"KVTR\")");
  }
  // The version decides how to read the rest, so it is checked before the
  // header checksum: a newer record gets a clear NotSupported.
  const uint16_t version = GetFixed16(p + kVersionOffset);
  if (version == 0) return Status::Corruption("record: format version 0 is invalid");
  if (version > kRecordFormatVersion) {
    return Status::NotSupported("record: format version " + std::to_string(version) +
                                ", this build reads up to " +
                                std::to_string(kRecordFormatVersion));
  }
  // block_size locates the token ids the header checksum covers; a damaged
  // value is caught here or by the checksum.
  const uint32_t block_size = GetFixed32(p + kBlockSizeOffset);
  const size_t token_bytes = sizeof(Token) * size_t{block_size};
  const size_t body_offset = kRecordFixedHeaderBytes + token_bytes;
  if (size < body_offset) {
    return Status::Corruption("record: truncated: " + std::to_string(size) +
                              " bytes cannot hold the header and " + std::to_string(block_size) +
                              " token ids (" + std::to_string(body_offset) + " bytes)");
  }
  const uint64_t stored_checksum = GetFixed64(p + kHeaderChecksumOffset);
  const uint64_t checksum = HeaderChecksum(p, p + kRecordFixedHeaderBytes, token_bytes);
  if (stored_checksum != checksum) {
    return Status::Corruption("record: header checksum mismatch (stored " +
                              Hex64(stored_checksum) + ", computed " + Hex64(checksum) + ")");
  }

  const uint16_t flags = GetFixed16(p + kFlagsOffset);
  if ((flags & ~kKnownFlags) != 0) {
    return Status::Corruption("record: unknown flag bits 0x" +
                              Hex64(flags & ~kKnownFlags).substr(12));
  }
  if (p[kReservedOffset] != 0 || p[kReservedOffset + 1] != 0 || p[kReservedOffset + 2] != 0) {
    return Status::Corruption("record: reserved header bytes are not zero");
  }
  BlockLayout layout;
  layout.dtype = static_cast<DType>(static_cast<uint8_t>(p[kDTypeOffset]));
  layout.num_layers = GetFixed32(p + kNumLayersOffset);
  layout.num_kv_heads = GetFixed32(p + kNumKvHeadsOffset);
  layout.head_dim = GetFixed32(p + kHeadDimOffset);
  layout.block_size = block_size;
  if (Status s = layout.Validate(); !s.ok()) return Status::Corruption("record: " + s.message());
  const uint64_t raw_size = GetFixed64(p + kRawSizeOffset);
  if (raw_size != layout.block_bytes()) {
    return Status::Corruption("record: raw size " + std::to_string(raw_size) +
                              " does not match layout " + layout.ToString() + " (" +
                              std::to_string(layout.block_bytes()) + " bytes)");
  }
  const uint64_t body_size = GetFixed64(p + kBodySizeOffset);
  if ((flags & kRecordCompressed) == 0 && body_size != raw_size) {
    return Status::Corruption("record: uncompressed body size " + std::to_string(body_size) +
                              " differs from the raw size " + std::to_string(raw_size));
  }
  const size_t body_present = size - body_offset;
  if (body_size != body_present) {
    const uint64_t expected = body_size > std::numeric_limits<uint64_t>::max() - body_offset
                                  ? std::numeric_limits<uint64_t>::max()
                                  : body_offset + body_size;
    if (body_size > body_present) {
      return Status::Corruption("record: truncated: " + std::to_string(size) +
                                " bytes, header says " + std::to_string(expected));
    }
    return Status::Corruption("record: " + std::to_string(body_present - body_size) +
                              " trailing bytes: record is " + std::to_string(size) +
                              " bytes, header says " + std::to_string(expected));
  }

  header->version = version;
  header->flags = flags;
  header->layout = layout;
  header->depth = GetFixed32(p + kDepthOffset);
  header->namespace_fp = GetHash(p + kNamespaceOffset);
  header->parent = GetHash(p + kParentOffset);
  header->raw_size = raw_size;
  header->body_size = body_size;
  header->payload_checksum = GetFixed64(p + kPayloadChecksumOffset);
  header->tokens.resize(block_size);
  std::memcpy(header->tokens.data(), p + kRecordFixedHeaderBytes, token_bytes);
  return Status::OK();
}

Status DecodeRecord(std::string_view record, RecordHeader* header,
                    std::vector<std::byte>* payload) {
  Status s = ParseRecordHeader(record, header);
  if (!s.ok()) return s;
  payload->resize(header->raw_size);  // bounded: the layout was validated
  return DecodeRecordInto(record, *header, *payload);
}

Status DecodeRecordInto(std::string_view record, const RecordHeader& header,
                        std::span<std::byte> payload) {
  const size_t raw_size = payload.size();
  if (raw_size != header.raw_size) {
    return Status::InvalidArgument("record: payload buffer is " + std::to_string(raw_size) +
                                   " bytes, the record holds " + std::to_string(header.raw_size));
  }
  // Cheap checks that `header` describes `record`, so a mismatched pair
  // cannot lead outside either buffer.
  const size_t body_offset = kRecordFixedHeaderBytes + sizeof(Token) * header.tokens.size();
  if (record.size() < body_offset || record.size() - body_offset != header.body_size) {
    return Status::InvalidArgument("record: header describes a record of " +
                                   std::to_string(header.record_size()) + " bytes, got " +
                                   std::to_string(record.size()));
  }
  const size_t element_size = header.layout.element_size();
  if (element_size == 0) return Status::InvalidArgument("record: header has an unknown dtype");
  const char* body = record.data() + body_offset;
  const size_t body_size = header.body_size;

  if (header.compressed()) {
    ZSTD_DCtx* dctx = codec::ThreadDecompressionContext();
    if (dctx == nullptr) {
      return Status::IOError("record: could not allocate a zstd decompression context");
    }
    const unsigned long long content = ZSTD_getFrameContentSize(body, body_size);
    if (content == ZSTD_CONTENTSIZE_ERROR) {
      return Status::Corruption("record: body is not a zstd frame");
    }
    if (content != ZSTD_CONTENTSIZE_UNKNOWN && content != raw_size) {
      return Status::Corruption("record: zstd frame holds " + std::to_string(content) +
                                " bytes, header says " + std::to_string(raw_size));
    }
    const bool shuffled = header.shuffled();
    std::span<std::byte> target = shuffled ? codec::ThreadScratch(raw_size) : payload;
    const size_t n = ZSTD_decompressDCtx(dctx, target.data(), raw_size, body, body_size);
    Status s;
    if (ZSTD_isError(n)) {
      s = Status::Corruption(std::string("record: zstd body: ") + ZSTD_getErrorName(n));
    } else if (n != raw_size) {
      s = Status::Corruption("record: body decompressed to " + std::to_string(n) +
                             " bytes, header says " + std::to_string(raw_size));
    } else if (shuffled) {
      codec::UnshuffleBytes(element_size, target, payload);
    }
    if (shuffled) codec::ReleaseLargeScratch();
    if (!s.ok()) return s;
  } else {
    if (body_size != raw_size) {
      return Status::Corruption("record: uncompressed body size " + std::to_string(body_size) +
                                " differs from the raw size " + std::to_string(raw_size));
    }
    const std::span<const std::byte> stored(reinterpret_cast<const std::byte*>(body), body_size);
    if (header.shuffled()) {
      codec::UnshuffleBytes(element_size, stored, payload);
    } else if (raw_size > 0) {
      std::memcpy(payload.data(), body, raw_size);
    }
  }

  const uint64_t checksum = XXH3_64bits(payload.data(), raw_size);
  if (checksum != header.payload_checksum) {
    return Status::Corruption("record: payload checksum mismatch (stored " +
                              Hex64(header.payload_checksum) + ", computed " + Hex64(checksum) +
                              ")");
  }
  return Status::OK();
}

}  // namespace kvtier
