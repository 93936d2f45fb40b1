#include "memory/chunk_arena.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <new>

namespace kvtier::internal {

ChunkArena::~ChunkArena() {
  for (auto& [base, c] : chunks_)
    if (c->live == 0) std::free(c->base);
}

ChunkArena::Chunk* ChunkArena::NewChunk(size_t bytes) {
  void* base = nullptr;
  if (posix_memalign(&base, kChunkBytes, kChunkBytes) != 0) throw std::bad_alloc();
  // Advice only: where THP is off, 4 KiB pages it is.
  (void)madvise(base, kChunkBytes, MADV_HUGEPAGE);
  auto c = std::make_unique<Chunk>();
  c->base = static_cast<std::byte*>(base);
  c->slot_bytes = bytes;
  c->slots = static_cast<uint32_t>(kChunkBytes / bytes);
  Chunk* raw = c.get();
  try {
    raw->free.reserve(raw->slots);  // Free() never allocates
    std::vector<Chunk*>& list = with_space_[bytes];
    list.reserve(list.size() + 1);
    chunks_.emplace(reinterpret_cast<uintptr_t>(base), std::move(c));
    list.push_back(raw);
    raw->has_space_listed = true;
  } catch (...) {
    chunks_.erase(reinterpret_cast<uintptr_t>(base));
    std::free(base);
    throw;
  }
  return raw;
}

void* ChunkArena::Allocate(size_t bytes, bool* reused) {
  std::vector<Chunk*>& list = with_space_[bytes];
  Chunk* c = nullptr;
  while (!list.empty()) {
    Chunk* last = list.back();
    if (!last->free.empty() || last->carved < last->slots) {
      c = last;
      break;
    }
    last->has_space_listed = false;
    list.pop_back();
  }
  if (c == nullptr) c = NewChunk(bytes);
  uint32_t slot;
  *reused = !c->free.empty();
  if (!c->free.empty()) {
    const uint32_t e = c->free.back();
    c->free.pop_back();
    slot = e & ~kDiscarded;
    if ((e & kDiscarded) == 0) {
      kept_bytes_ -= bytes;
      --kept_slots_;
    }
  } else {
    slot = c->carved++;
  }
  ++c->live;
  return c->base + size_t{slot} * bytes;
}

void ChunkArena::Discard(Chunk* c, uint32_t slot) noexcept {
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(c->base) + size_t{slot} * c->slot_bytes;
  const uintptr_t first = (begin + page - 1) & ~(page - 1);
  const uintptr_t last = (begin + c->slot_bytes) & ~(page - 1);
  if (last > first) (void)madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

bool ChunkArena::Free(void* p, size_t bytes, size_t max_kept) noexcept {
  const uintptr_t addr = reinterpret_cast<uintptr_t>(p);
  Chunk* c = chunks_.at(addr & ~(kChunkBytes - 1)).get();
  const auto slot = static_cast<uint32_t>((addr - reinterpret_cast<uintptr_t>(c->base)) / bytes);
  --c->live;
  bool kept = kept_bytes_ + bytes <= max_kept;
  if (kept) {
    c->free.push_back(slot);
    kept_bytes_ += bytes;
    ++kept_slots_;
  } else {
    Discard(c, slot);
    c->free.push_back(slot | kDiscarded);
  }
  if (c->live == 0 && kept_bytes_ > max_kept / 2) {
    ReleaseChunk(c);
    return false;
  }
  if (!c->has_space_listed) {
    try {
      with_space_[bytes].push_back(c);
      c->has_space_listed = true;
    } catch (...) {
      // Out of memory for the list entry: the chunk's free slots wait until
      // it is released or listed by a later Free.
    }
  }
  return kept;
}

void ChunkArena::ReleaseChunk(Chunk* c) noexcept {
  for (uint32_t e : c->free) {
    if ((e & kDiscarded) == 0) {
      kept_bytes_ -= c->slot_bytes;
      --kept_slots_;
    }
  }
  if (c->has_space_listed) {
    std::vector<Chunk*>& list = with_space_[c->slot_bytes];
    list.erase(std::remove(list.begin(), list.end(), c), list.end());
  }
  std::byte* base = c->base;
  chunks_.erase(reinterpret_cast<uintptr_t>(base));  // destroys *c
  std::free(base);
}

void ChunkArena::Trim() {
  std::vector<Chunk*> empty;
  for (auto& [base, c] : chunks_) {
    if (c->live == 0) {
      empty.push_back(c.get());
      continue;
    }
    for (uint32_t& e : c->free) {
      if ((e & kDiscarded) != 0) continue;
      Discard(c.get(), e);
      e |= kDiscarded;
      kept_bytes_ -= c->slot_bytes;
      --kept_slots_;
    }
  }
  for (Chunk* c : empty) ReleaseChunk(c);
}

}  // namespace kvtier::internal
