// BlockBuffer: the immutable bytes (token ids + payload) of one block.
#ifndef KVTIER_MEMORY_BLOCK_BUFFER_H_
#define KVTIER_MEMORY_BLOCK_BUFFER_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>

#include "kvtier/layout.h"

namespace kvtier::internal {

// The immutable bytes of one block: its token ids, then (64-byte aligned)
// its payload, in a single allocation shared by the memory tier, the spill
// queue and leases. Never modified after Make().
class BlockBuffer {
 public:
  BlockBuffer() = default;

  // Copies `tokens` and `payload` into a new buffer.
  static BlockBuffer Make(std::span<const Token> tokens, std::span<const std::byte> payload);
  // A buffer whose payload the caller fills (before sharing it) through
  // mutable_payload(): promotion decodes straight into it.
  static BlockBuffer Allocate(std::span<const Token> tokens, size_t payload_bytes);

  std::span<const Token> tokens() const {
    return {reinterpret_cast<const Token*>(bytes_.get()), num_tokens_};
  }
  std::span<const std::byte> payload() const {
    return {bytes_.get() + PayloadOffset(num_tokens_), payload_bytes_};
  }
  std::span<std::byte> mutable_payload() {
    return {bytes_.get() + PayloadOffset(num_tokens_), payload_bytes_};
  }
  size_t payload_bytes() const { return payload_bytes_; }
  bool empty() const { return bytes_ == nullptr; }
  bool TokensEqual(std::span<const Token> tokens) const {
    return tokens.size() == num_tokens_ &&
           std::memcmp(tokens.data(), bytes_.get(), num_tokens_ * sizeof(Token)) == 0;
  }

 private:
  static size_t PayloadOffset(size_t num_tokens) {
    return (num_tokens * sizeof(Token) + 63) & ~size_t{63};
  }
  std::shared_ptr<std::byte[]> bytes_;
  uint32_t num_tokens_ = 0;
  size_t payload_bytes_ = 0;
};

}  // namespace kvtier::internal

#endif  // KVTIER_MEMORY_BLOCK_BUFFER_H_
