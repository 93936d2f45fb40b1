#include "codec_floor.h"

#include <zstd.h>

#include <cstring>

namespace kvtier::bench {

namespace {

template <size_t E>
void ShuffleFixed(const std::byte* in, size_t n, std::byte* out) {
  for (size_t i = 0; i < n; ++i) {
    for (size_t b = 0; b < E; ++b) out[b * n + i] = in[i * E + b];
  }
}

template <size_t E>
void UnshuffleFixed(const std::byte* in, size_t n, std::byte* out) {
  for (size_t i = 0; i < n; ++i) {
    for (size_t b = 0; b < E; ++b) out[i * E + b] = in[b * n + i];
  }
}

}  // namespace

void ByteShuffle(std::span<const std::byte> in, size_t esize, std::byte* out) {
  const size_t n = esize ? in.size() / esize : 0;
  switch (esize) {
    case 2: ShuffleFixed<2>(in.data(), n, out); break;
    case 4: ShuffleFixed<4>(in.data(), n, out); break;
    case 8: ShuffleFixed<8>(in.data(), n, out); break;
    default:
      for (size_t i = 0; i < n; ++i) {
        for (size_t b = 0; b < esize; ++b) out[b * n + i] = in[i * esize + b];
      }
  }
  const size_t done = n * esize;
  if (done < in.size()) std::memcpy(out + done, in.data() + done, in.size() - done);
}

void ByteUnshuffle(std::span<const std::byte> in, size_t esize, std::byte* out) {
  const size_t n = esize ? in.size() / esize : 0;
  switch (esize) {
    case 2: UnshuffleFixed<2>(in.data(), n, out); break;
    case 4: UnshuffleFixed<4>(in.data(), n, out); break;
    case 8: UnshuffleFixed<8>(in.data(), n, out); break;
    default:
      for (size_t i = 0; i < n; ++i) {
        for (size_t b = 0; b < esize; ++b) out[i * esize + b] = in[b * n + i];
      }
  }
  const size_t done = n * esize;
  if (done < in.size()) std::memcpy(out + done, in.data() + done, in.size() - done);
}

ZstdFloor::ZstdFloor(int level, bool shuffle, size_t esize)
    : level_(level),
      shuffle_(shuffle && esize > 1),
      esize_(esize),
      cctx_(ZSTD_createCCtx()),
      dctx_(ZSTD_createDCtx()) {}

ZstdFloor::~ZstdFloor() {
  ZSTD_freeCCtx(cctx_);
  ZSTD_freeDCtx(dctx_);
}

void ZstdFloor::Compress(std::span<const std::byte> in, std::string* out) {
  const void* src = in.data();
  if (shuffle_) {
    scratch_.resize(in.size());
    ByteShuffle(in, esize_, scratch_.data());
    src = scratch_.data();
  }
  out->resize(ZSTD_compressBound(in.size()));
  size_t n = ZSTD_compressCCtx(cctx_, out->data(), out->size(), src, in.size(), level_);
  out->resize(ZSTD_isError(n) ? 0 : n);
}

Status ZstdFloor::Decompress(std::string_view in, std::span<std::byte> out) {
  void* dst = out.data();
  if (shuffle_) {
    scratch_.resize(out.size());
    dst = scratch_.data();
  }
  size_t n = ZSTD_decompressDCtx(dctx_, dst, out.size(), in.data(), in.size());
  if (ZSTD_isError(n)) {
    return Status::Corruption(std::string("zstd frame: ") + ZSTD_getErrorName(n));
  }
  if (n != out.size()) {
    return Status::Corruption("zstd frame holds " + std::to_string(n) + " bytes, expected " +
                              std::to_string(out.size()));
  }
  if (shuffle_) ByteUnshuffle(scratch_, esize_, out.data());
  return Status::OK();
}

std::string ZstdFloor::Describe() const {
  return std::string(shuffle_ ? "byte-shuffle + " : "") + "zstd level " +
         std::to_string(level_) + " (libzstd " + ZSTD_versionString() + ", reused contexts)";
}

}  // namespace kvtier::bench
