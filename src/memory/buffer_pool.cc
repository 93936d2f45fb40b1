#include "memory/buffer_pool.h"

#include <sys/mman.h>

#include <cstdlib>
#include <new>

namespace kvtier::internal {

BufferPool& BufferPool::Default() {
  static BufferPool* pool = new BufferPool(kDefaultMaxKeptBytes);
  return *pool;
}

void* BufferPool::SystemAllocate(size_t bytes) {
  if (bytes < kHugePage) {
    void* p = std::malloc(bytes);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }
  void* p = nullptr;
  if (posix_memalign(&p, kHugePage, bytes) != 0) throw std::bad_alloc();
  // Advice only: where THP is off or unsupported, 4 KiB pages it is.
  (void)madvise(p, bytes & ~(kHugePage - 1), MADV_HUGEPAGE);
  return p;
}

void* BufferPool::Allocate(size_t bytes) {
  if (bytes < kMinPooledBytes) return SystemAllocate(bytes);
  if (bytes <= ChunkArena::kMaxSlotBytes) {
    std::lock_guard<std::mutex> lock(mu_);
    bool reused = false;
    void* p = arena_.Allocate(bytes, &reused);
    ++(reused ? stats_.reused : stats_.fresh);
    return p;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = kept_.find(bytes);
    if (it != kept_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      stats_.kept_bytes -= bytes;
      --stats_.kept_buffers;
      ++stats_.reused;
      return p;
    }
    ++stats_.fresh;
  }
  return SystemAllocate(bytes);
}

void BufferPool::Free(void* p, size_t bytes) noexcept {
  if (p == nullptr) return;
  if (bytes >= kMinPooledBytes && bytes <= ChunkArena::kMaxSlotBytes) {
    std::lock_guard<std::mutex> lock(mu_);
    const size_t room = max_kept_ > stats_.kept_bytes ? max_kept_ - stats_.kept_bytes : 0;
    if (!arena_.Free(p, bytes, room)) ++stats_.dropped;
    return;
  }
  if (bytes >= kMinPooledBytes) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stats_.kept_bytes + arena_.kept_bytes() + bytes <= max_kept_) {
      try {
        kept_[bytes].push_back(p);
        stats_.kept_bytes += bytes;
        ++stats_.kept_buffers;
        return;
      } catch (const std::bad_alloc&) {
        // No memory for the free list's entry: give the buffer back instead.
      }
    }
    ++stats_.dropped;
  }
  std::free(p);
}

void BufferPool::Trim() {
  std::unordered_map<size_t, std::vector<void*>> kept;
  {
    std::lock_guard<std::mutex> lock(mu_);
    kept.swap(kept_);
    stats_.kept_bytes = 0;
    stats_.kept_buffers = 0;
    arena_.Trim();
  }
  for (auto& [bytes, list] : kept)
    for (void* p : list) std::free(p);
}

BufferPoolStats BufferPool::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  BufferPoolStats s = stats_;
  s.kept_bytes += arena_.kept_bytes();
  s.kept_buffers += arena_.kept_slots();
  s.chunks = arena_.chunks();
  return s;
}

}  // namespace kvtier::internal
