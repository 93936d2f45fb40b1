#include "codec/thread_context.h"

#include <memory>

namespace kvtier::codec {

namespace {

// Scratch buffers up to this size stay allocated between records: enough for
// the blocks of common models (32x8x128 bs16 f16 is 2 MiB).
constexpr size_t kKeptScratchBytes = size_t{32} << 20;

struct CCtxDeleter {
  void operator()(ZSTD_CCtx* ctx) const { ZSTD_freeCCtx(ctx); }
};
struct DCtxDeleter {
  void operator()(ZSTD_DCtx* ctx) const { ZSTD_freeDCtx(ctx); }
};

struct ScratchBuffer {
  std::unique_ptr<std::byte[]> data;
  size_t size = 0;
};

thread_local std::unique_ptr<ZSTD_CCtx, CCtxDeleter> compression_context;
thread_local std::unique_ptr<ZSTD_DCtx, DCtxDeleter> decompression_context;
thread_local ScratchBuffer scratch;

}  // namespace

ZSTD_CCtx* ThreadCompressionContext() {
  if (!compression_context) compression_context.reset(ZSTD_createCCtx());
  return compression_context.get();
}

ZSTD_DCtx* ThreadDecompressionContext() {
  if (!decompression_context) decompression_context.reset(ZSTD_createDCtx());
  return decompression_context.get();
}

std::span<std::byte> ThreadScratch(size_t size) {
  if (scratch.size < size) {
    scratch.data.reset();  // free the old buffer before taking the new one
    scratch.size = 0;
    scratch.data = std::make_unique_for_overwrite<std::byte[]>(size);
    scratch.size = size;
  }
  return {scratch.data.get(), size};
}

void ReleaseLargeScratch() {
  if (scratch.size > kKeptScratchBytes) {
    scratch.data.reset();
    scratch.size = 0;
  }
}

}  // namespace kvtier::codec
