// BlockBuffer: the immutable bytes (token ids + payload) of one block.
#ifndef KVTIER_MEMORY_BLOCK_BUFFER_H_
#define KVTIER_MEMORY_BLOCK_BUFFER_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <utility>

#include "kvtier/layout.h"

namespace kvtier::internal {

// The immutable bytes of one block in a single allocation shared by the
// memory tier, the spill queue and leases:
//
//   [16-byte header: refcount, token count, payload size][token ids][payload]
//
// The payload starts 16-byte aligned. Copies share the bytes (an intrusive,
// thread-safe reference count in the header, no separate control block); the
// last copy to go releases them. Never modified once copied: the payload is
// written only through mutable_payload() of a buffer that has not been copied
// yet. Large allocations are recycled (see buffer_pool.h) instead of going
// back to malloc, so a promotion or an insert rarely touches fresh pages.
class BlockBuffer {
 public:
  BlockBuffer() = default;
  BlockBuffer(const BlockBuffer& other) noexcept : h_(other.h_) {
    if (h_ != nullptr) h_->refs.fetch_add(1, std::memory_order_relaxed);
  }
  BlockBuffer(BlockBuffer&& other) noexcept : h_(std::exchange(other.h_, nullptr)) {}
  BlockBuffer& operator=(const BlockBuffer& other) noexcept {
    BlockBuffer copy(other);
    std::swap(h_, copy.h_);
    return *this;
  }
  BlockBuffer& operator=(BlockBuffer&& other) noexcept {
    if (this != &other) {
      Release();
      h_ = std::exchange(other.h_, nullptr);
    }
    return *this;
  }
  ~BlockBuffer() { Release(); }

  // Copies `tokens` and `payload` into a new buffer.
  static BlockBuffer Make(std::span<const Token> tokens, std::span<const std::byte> payload);
  // A buffer whose payload the caller fills (before sharing it) through
  // mutable_payload(): promotion decodes straight into it.
  static BlockBuffer Allocate(std::span<const Token> tokens, size_t payload_bytes);

  std::span<const Token> tokens() const {
    if (h_ == nullptr) return {};
    return {reinterpret_cast<const Token*>(h_ + 1), h_->num_tokens};
  }
  std::span<const std::byte> payload() const {
    if (h_ == nullptr) return {};
    return {PayloadStart(), h_->payload_bytes};
  }
  std::span<std::byte> mutable_payload() {
    if (h_ == nullptr) return {};
    return {PayloadStart(), h_->payload_bytes};
  }
  size_t payload_bytes() const { return h_ == nullptr ? 0 : h_->payload_bytes; }
  bool empty() const { return h_ == nullptr; }
  bool TokensEqual(std::span<const Token> tokens) const {
    const size_t n = h_ == nullptr ? 0 : h_->num_tokens;
    return tokens.size() == n &&
           (n == 0 || std::memcmp(tokens.data(), h_ + 1, n * sizeof(Token)) == 0);
  }

  // Bytes of the allocation holding `num_tokens` ids and `payload_bytes`
  // of payload (header and padding included; malloc's own header is not).
  static size_t AllocationBytes(size_t num_tokens, size_t payload_bytes) {
    return PayloadOffset(num_tokens) + payload_bytes;
  }

 private:
  struct Header {
    std::atomic<uint32_t> refs;
    uint32_t num_tokens;
    uint64_t payload_bytes;
  };
  static_assert(sizeof(Header) == 16);

  static size_t PayloadOffset(size_t num_tokens) {
    return (sizeof(Header) + num_tokens * sizeof(Token) + 15) & ~size_t{15};
  }
  std::byte* PayloadStart() const {
    return reinterpret_cast<std::byte*>(h_) + PayloadOffset(h_->num_tokens);
  }
  void Release() noexcept {
    if (h_ != nullptr && h_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) Free(h_);
    h_ = nullptr;
  }
  static void Free(Header* h) noexcept;

  Header* h_ = nullptr;
};

}  // namespace kvtier::internal

#endif  // KVTIER_MEMORY_BLOCK_BUFFER_H_
