// The codec floors the bench compares kvtier with: zstd alone, and the
// bench's own byte-shuffle + zstd, on whole block payloads with reused zstd
// contexts (what a careful user of libzstd would write).
#ifndef KVTIER_TOOLS_BENCH_CODEC_FLOOR_H_
#define KVTIER_TOOLS_BENCH_CODEC_FLOOR_H_

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvtier/status.h"

struct ZSTD_CCtx_s;
struct ZSTD_DCtx_s;

namespace kvtier::bench {

// Blosc's byte shuffle: byte b of element i goes to out[b * n + i], n =
// in.size() / esize; a tail of in.size() % esize bytes is copied as is.
void ByteShuffle(std::span<const std::byte> in, size_t esize, std::byte* out);
// The inverse of ByteShuffle.
void ByteUnshuffle(std::span<const std::byte> in, size_t esize, std::byte* out);

// One thread's zstd codec, optionally with the shuffle filter. Not
// thread-safe: one per thread.
class ZstdFloor {
 public:
  // esize = element size for the shuffle (ignored when !shuffle).
  ZstdFloor(int level, bool shuffle, size_t esize);
  ~ZstdFloor();
  ZstdFloor(const ZstdFloor&) = delete;
  ZstdFloor& operator=(const ZstdFloor&) = delete;

  // Compresses `in` into `out` (resized to the frame).
  void Compress(std::span<const std::byte> in, std::string* out);
  // Decompresses a frame of Compress() into `out` (exactly the raw size).
  // Corruption if the frame is bad or its size differs.
  Status Decompress(std::string_view in, std::span<std::byte> out);

  std::string Describe() const;

 private:
  int level_;
  bool shuffle_;
  size_t esize_;
  ZSTD_CCtx_s* cctx_;
  ZSTD_DCtx_s* dctx_;
  std::vector<std::byte> scratch_;
};

}  // namespace kvtier::bench

#endif  // KVTIER_TOOLS_BENCH_CODEC_FLOOR_H_
