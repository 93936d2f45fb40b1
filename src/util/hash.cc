#include "kvtier/hash.h"

#include <xxhash.h>

#include <bit>
#include <cstring>

namespace kvtier {

namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Hash128 FromXXH(XXH128_hash_t h) { return Hash128{h.low64, h.high64}; }

}  // namespace

void Hash128::ToBytes(uint8_t out[16]) const {
  for (int i = 0; i < 8; ++i) {
    out[i] = static_cast<uint8_t>(hi >> (56 - 8 * i));
    out[8 + i] = static_cast<uint8_t>(lo >> (56 - 8 * i));
  }
}

Hash128 Hash128::FromBytes(const uint8_t in[16]) {
  Hash128 h;
  for (int i = 0; i < 8; ++i) {
    h.hi = (h.hi << 8) | in[i];
    h.lo = (h.lo << 8) | in[8 + i];
  }
  return h;
}

std::string Hash128::ToHex() const {
  uint8_t bytes[16];
  ToBytes(bytes);
  std::string out(32, '0');
  for (int i = 0; i < 16; ++i) {
    out[2 * i] = kHexDigits[bytes[i] >> 4];
    out[2 * i + 1] = kHexDigits[bytes[i] & 0xf];
  }
  return out;
}

bool Hash128::FromHex(std::string_view hex, Hash128* out) {
  if (hex.size() != 32) return false;
  uint8_t bytes[16];
  for (int i = 0; i < 16; ++i) {
    int a = HexValue(hex[2 * i]);
    int b = HexValue(hex[2 * i + 1]);
    if (a < 0 || b < 0) return false;
    bytes[i] = static_cast<uint8_t>(a << 4 | b);
  }
  *out = FromBytes(bytes);
  return true;
}

Hash128 ChainHash(const Hash128& parent, std::span<const uint32_t> block_tokens) {
  // parent's canonical bytes followed by the tokens as little-endian u32.
  // Blocks of up to 256 tokens hash from a stack buffer; larger ones from a
  // heap buffer (the same bytes, so the same hash).
  constexpr size_t kStackTokens = 256;
  const size_t token_bytes = block_tokens.size() * sizeof(uint32_t);
  if (block_tokens.size() <= kStackTokens) {
    alignas(16) uint8_t buf[16 + kStackTokens * sizeof(uint32_t)];
    parent.ToBytes(buf);
    static_assert(std::endian::native == std::endian::little, "kvtier assumes little-endian");
    std::memcpy(buf + 16, block_tokens.data(), token_bytes);
    return FromXXH(XXH3_128bits(buf, 16 + token_bytes));
  }
  std::vector<uint8_t> buf(16 + token_bytes);
  parent.ToBytes(buf.data());
  std::memcpy(buf.data() + 16, block_tokens.data(), token_bytes);
  return FromXXH(XXH3_128bits(buf.data(), buf.size()));
}

void PrefixHashes(const Hash128& seed, std::span<const uint32_t> tokens, uint32_t block_size,
                  std::vector<Hash128>* out) {
  const size_t n = tokens.size() / block_size;
  out->reserve(out->size() + n);
  Hash128 h = seed;
  for (size_t i = 0; i < n; ++i) {
    h = ChainHash(h, tokens.subspan(i * block_size, block_size));
    out->push_back(h);
  }
}

}  // namespace kvtier
