// Per-thread state of the record codec: one zstd compression context, one
// decompression context and one scratch buffer for the shuffle filter, made
// on a thread's first use and reused by every record it encodes or decodes
// (a context allocates its tables once; one per block would redo that work,
// and the allocation, for every block). Freed when the thread exits.
//
// Each accessor hands out state owned by the calling thread only, so no
// locking is needed; the codec is not re-entrant within one thread, and the
// state must not be passed to another thread.
#ifndef KVTIER_CODEC_THREAD_CONTEXT_H_
#define KVTIER_CODEC_THREAD_CONTEXT_H_

#include <zstd.h>

#include <cstddef>
#include <span>

namespace kvtier::codec {

// This thread's compression context; nullptr if zstd could not allocate one.
ZSTD_CCtx* ThreadCompressionContext();

// This thread's decompression context; nullptr if zstd could not allocate one.
ZSTD_DCtx* ThreadDecompressionContext();

// This thread's scratch buffer, grown to at least `size` bytes (contents
// unspecified). Valid until the next ThreadScratch() or ReleaseLargeScratch()
// call on this thread.
std::span<std::byte> ThreadScratch(size_t size);

// Frees this thread's scratch buffer if it grew past what typical blocks need
// (a few MiB), so one huge block does not pin its size in every thread.
void ReleaseLargeScratch();

}  // namespace kvtier::codec

#endif  // KVTIER_CODEC_THREAD_CONTEXT_H_
