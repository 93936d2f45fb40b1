#include "memory/block_buffer.h"

#include <new>

#include "memory/buffer_pool.h"

namespace kvtier::internal {

BlockBuffer BlockBuffer::Allocate(std::span<const Token> tokens, size_t payload_bytes) {
  const size_t bytes = AllocationBytes(tokens.size(), payload_bytes);
  void* p = BufferPool::Default().Allocate(bytes);
  auto* h = new (p) Header{};
  h->refs.store(1, std::memory_order_relaxed);
  h->num_tokens = static_cast<uint32_t>(tokens.size());
  h->payload_bytes = payload_bytes;
  if (!tokens.empty())
    std::memcpy(reinterpret_cast<std::byte*>(h) + sizeof(Header), tokens.data(),
                tokens.size() * sizeof(Token));
  BlockBuffer b;
  b.h_ = h;
  return b;
}

BlockBuffer BlockBuffer::Make(std::span<const Token> tokens, std::span<const std::byte> payload) {
  BlockBuffer b = Allocate(tokens, payload.size());
  if (!payload.empty()) std::memcpy(b.mutable_payload().data(), payload.data(), payload.size());
  return b;
}

void BlockBuffer::Free(Header* h) noexcept {
  const size_t bytes = AllocationBytes(h->num_tokens, h->payload_bytes);
  h->~Header();
  BufferPool::Default().Free(h, bytes);
}

}  // namespace kvtier::internal
