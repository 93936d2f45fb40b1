// ChunkArena: mid-sized block buffers carved from 8 MiB huge-page chunks.
#ifndef KVTIER_MEMORY_CHUNK_ARENA_H_
#define KVTIER_MEMORY_CHUNK_ARENA_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

namespace kvtier::internal {

// Buffers of kMinSlotBytes..kMaxSlotBytes are slots of 8 MiB chunks (8 MiB-
// aligned, advised MADV_HUGEPAGE), one chunk per size: a new block's first
// touch then faults a 2 MiB huge page for many blocks instead of a 4 KiB page
// at a time. A freed slot is handed to the next buffer of its size. Bounds:
// free slots whose bytes are kept resident never exceed the `max_kept`
// passed to Free() (beyond it a freed slot's pages are given back with
// MADV_DONTNEED, the slot stays reusable), and a chunk whose every slot is
// free is returned to the system once more than half of `max_kept` is kept.
// Not thread-safe (BufferPool's mutex guards it).
class ChunkArena {
 public:
  static constexpr size_t kChunkBytes = 8ull << 20;
  static constexpr size_t kMinSlotBytes = 32ull << 10;
  static constexpr size_t kMaxSlotBytes = 1ull << 20;

  ChunkArena() = default;
  // Releases every chunk with no live slot (live slots' chunks are left
  // alone: their buffers are still in use).
  ~ChunkArena();
  ChunkArena(const ChunkArena&) = delete;
  ChunkArena& operator=(const ChunkArena&) = delete;

  // A slot of `bytes` (kMinSlotBytes..kMaxSlotBytes), 16-byte aligned; sets
  // *reused when it was freed before. Throws std::bad_alloc.
  void* Allocate(size_t bytes, bool* reused);
  // Returns `p` (from Allocate(bytes)); keeps its pages resident only while
  // the kept bytes stay within `max_kept`. Returns false when it gave the
  // pages back instead.
  bool Free(void* p, size_t bytes, size_t max_kept) noexcept;
  // Returns every chunk with no live slot and gives back the pages of every
  // free slot.
  void Trim();

  uint64_t kept_bytes() const { return kept_bytes_; }
  uint64_t kept_slots() const { return kept_slots_; }
  size_t chunks() const { return chunks_.size(); }

 private:
  static constexpr uint32_t kDiscarded = 1u << 31;  // free-list flag: pages given back
  struct Chunk {
    std::byte* base = nullptr;
    size_t slot_bytes = 0;
    uint32_t slots = 0;
    uint32_t carved = 0;  // slots [0, carved) were handed out at least once
    uint32_t live = 0;
    bool has_space_listed = false;
    std::vector<uint32_t> free;  // slot numbers, | kDiscarded when not resident
  };
  Chunk* NewChunk(size_t bytes);
  void ReleaseChunk(Chunk* c) noexcept;
  static void Discard(Chunk* c, uint32_t slot) noexcept;

  std::unordered_map<uintptr_t, std::unique_ptr<Chunk>> chunks_;    // by base address
  std::unordered_map<size_t, std::vector<Chunk*>> with_space_;       // by slot size
  uint64_t kept_bytes_ = 0;
  uint64_t kept_slots_ = 0;
};

}  // namespace kvtier::internal

#endif  // KVTIER_MEMORY_CHUNK_ARENA_H_
