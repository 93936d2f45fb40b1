// Prefix hashes: the chained XXH3-128 that names a block by its whole prefix.
//
//   h(-1) = Namespace::Fingerprint()
//   h(i)  = XXH3_128( canonical16(h(i-1)) || tokens of block i as u32 LE )
//
// canonical16 is XXH128_canonical_t (big-endian high then low 64 bits). The
// 16 canonical bytes of h(i) are the block's key in every store. The chain is
// stable across processes, runs and machines (tests pin fixed vectors).
#ifndef KVTIER_HASH_H_
#define KVTIER_HASH_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kvtier {

struct Hash128 {
  uint64_t lo = 0;
  uint64_t hi = 0;

  // 32 lowercase hex digits of the canonical bytes.
  std::string ToHex() const;
  // Parses ToHex() output (case-insensitive). Returns false otherwise.
  static bool FromHex(std::string_view hex, Hash128* out);
  // The 16 canonical bytes (big-endian hi, then lo).
  void ToBytes(uint8_t out[16]) const;
  static Hash128 FromBytes(const uint8_t in[16]);

  friend bool operator==(const Hash128&, const Hash128&) = default;
  friend auto operator<=>(const Hash128& a, const Hash128& b) {
    if (a.hi != b.hi) return a.hi <=> b.hi;
    return a.lo <=> b.lo;
  }
};

// For unordered containers: the low 64 bits are already uniformly mixed.
struct Hash128Hasher {
  size_t operator()(const Hash128& h) const noexcept { return static_cast<size_t>(h.lo); }
};

// h(i) from h(i-1) and the tokens of block i.
Hash128 ChainHash(const Hash128& parent, std::span<const uint32_t> block_tokens);

// Appends h(0) .. h(n-1) for the n = tokens.size() / block_size full blocks
// of `tokens`, starting the chain from `seed` (= h(-1)). A partial trailing
// block is ignored. REQUIRES: block_size > 0.
void PrefixHashes(const Hash128& seed, std::span<const uint32_t> tokens, uint32_t block_size,
                  std::vector<Hash128>* out);

}  // namespace kvtier

#endif  // KVTIER_HASH_H_
