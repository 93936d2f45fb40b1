// BufferPool: recycles the large allocations behind BlockBuffers.
//
// Every promoted or inserted block needs a fresh buffer, and most blocks of a
// namespace have one size. Handing a freed buffer of that size to the next
// block instead of back to malloc spares the fresh-page faults (15-45 us per
// 4 KiB page on a VM) that a large malloc'd block takes on first touch:
// glibc serves such blocks with mmap, or from a heap top it trims.
#ifndef KVTIER_MEMORY_BUFFER_POOL_H_
#define KVTIER_MEMORY_BUFFER_POOL_H_

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "memory/chunk_arena.h"

namespace kvtier::internal {

struct BufferPoolStats {
  uint64_t kept_bytes = 0;    // freed allocations held for reuse
  uint64_t kept_buffers = 0;
  uint64_t reused = 0;        // Allocate() served from the kept ones
  uint64_t fresh = 0;         // pooled-size Allocate() that went to the system
  uint64_t dropped = 0;       // Free() that went to the system (over the cap)
  uint64_t chunks = 0;        // ChunkArena chunks held
};

// Thread-safe. Sizes below kMinPooledBytes are plain malloc. Sizes up to
// ChunkArena::kMaxSlotBytes are slots of 8 MiB huge-page chunks
// (chunk_arena.h); larger ones are kept on exact-size free lists when freed.
// At most `max_kept_bytes` of freed memory stays resident in total (beyond it
// larger buffers go back to malloc and chunk slots give their pages back),
// and Trim() returns all of it. Allocations of at least 2 MiB are 2 MiB-
// aligned and advised MADV_HUGEPAGE (transparent huge pages in `madvise`
// mode), so they fault in 2 MiB at a time.
class BufferPool {
 public:
  static constexpr size_t kMinPooledBytes = ChunkArena::kMinSlotBytes;
  static constexpr size_t kDefaultMaxKeptBytes = 64ull << 20;
  static constexpr size_t kHugePage = 2ull << 20;

  explicit BufferPool(size_t max_kept_bytes) : max_kept_(max_kept_bytes) {}
  ~BufferPool() { Trim(); }
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  // The process-wide pool BlockBuffer uses (never destroyed, so buffers
  // released during static destruction still have somewhere to go).
  static BufferPool& Default();

  // `bytes` bytes, 16-byte aligned (2 MiB-aligned from 2 MiB up). Throws
  // std::bad_alloc when the system has no memory.
  void* Allocate(size_t bytes);
  // Returns `p`, which Allocate(bytes) of this pool returned.
  void Free(void* p, size_t bytes) noexcept;
  // Returns every kept allocation to the system.
  void Trim();

  BufferPoolStats Stats() const;

 private:
  static void* SystemAllocate(size_t bytes);

  const size_t max_kept_;
  mutable std::mutex mu_;
  // Guarded by mu_:
  std::unordered_map<size_t, std::vector<void*>> kept_;  // sizes above the arena's
  ChunkArena arena_;
  BufferPoolStats stats_;
};

}  // namespace kvtier::internal

#endif  // KVTIER_MEMORY_BUFFER_POOL_H_
