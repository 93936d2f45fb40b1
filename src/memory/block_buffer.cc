#include "memory/block_buffer.h"

namespace kvtier::internal {

BlockBuffer BlockBuffer::Allocate(std::span<const Token> tokens, size_t payload_bytes) {
  BlockBuffer b;
  b.num_tokens_ = static_cast<uint32_t>(tokens.size());
  b.payload_bytes_ = payload_bytes;
  b.bytes_ = std::make_shared_for_overwrite<std::byte[]>(PayloadOffset(tokens.size()) + payload_bytes);
  std::memcpy(b.bytes_.get(), tokens.data(), tokens.size() * sizeof(Token));
  return b;
}

BlockBuffer BlockBuffer::Make(std::span<const Token> tokens, std::span<const std::byte> payload) {
  BlockBuffer b = Allocate(tokens, payload.size());
  std::memcpy(b.mutable_payload().data(), payload.data(), payload.size());
  return b;
}

}  // namespace kvtier::internal
