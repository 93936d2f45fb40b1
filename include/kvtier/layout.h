// Block layout and namespace: what a cached block is, and whose it is.
//
// A block holds the attention keys and values of `block_size` consecutive
// tokens for every layer of a model. Its payload is one contiguous byte
// buffer of layout.block_bytes() bytes, in this order:
//
//   for layer in 0 .. num_layers-1:
//     K[layer]  as [block_size][num_kv_heads][head_dim] elements, row-major
//     V[layer]  as [block_size][num_kv_heads][head_dim] elements, row-major
//
// Elements are stored in the machine's native (little-endian) byte order,
// `element_size()` bytes each. kvtier never interprets element values except
// for the optional byte-shuffle filter and the CLI's statistics; 1-byte types
// (int8, fp8) are carried as raw bytes.
#ifndef KVTIER_LAYOUT_H_
#define KVTIER_LAYOUT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "kvtier/hash.h"
#include "kvtier/status.h"

namespace kvtier {

using Token = uint32_t;

enum class DType : uint8_t {
  kF32 = 1,
  kF16 = 2,
  kBF16 = 3,
  kInt8 = 4,
  kFP8E4M3 = 5,
  kFP8E5M2 = 6,
};

// Bytes per element (4, 2 or 1); 0 for a value outside the enum.
size_t DTypeSize(DType dtype);
// "f32", "f16", "bf16", "int8", "fp8e4m3", "fp8e5m2"; "?" otherwise.
std::string_view DTypeName(DType dtype);
// Parses a DTypeName() string. Returns false for anything else.
bool ParseDType(std::string_view name, DType* dtype);

struct BlockLayout {
  uint32_t num_layers = 0;
  uint32_t num_kv_heads = 0;
  uint32_t head_dim = 0;
  uint32_t block_size = 16;  // tokens per block
  DType dtype = DType::kF16;

  size_t element_size() const { return DTypeSize(dtype); }
  // Bytes of one K (or one V) tensor of one layer.
  size_t tensor_bytes() const {
    return size_t{block_size} * num_kv_heads * head_dim * element_size();
  }
  // Bytes of a whole block's payload: K and V for every layer.
  size_t block_bytes() const { return 2 * size_t{num_layers} * tensor_bytes(); }
  // Offsets of layer `layer`'s K and V tensors inside the payload.
  size_t key_offset(uint32_t layer) const { return 2 * size_t{layer} * tensor_bytes(); }
  size_t value_offset(uint32_t layer) const { return key_offset(layer) + tensor_bytes(); }

  // OK when every dimension is positive, the dtype is known, block_size is at
  // most 4096 and a block is at most 256 MiB; InvalidArgument naming the
  // offending field otherwise.
  Status Validate() const;

  // "32x8x128 bs16 f16" (layers x kv_heads x head_dim, block size, dtype).
  std::string ToString() const;

  friend bool operator==(const BlockLayout&, const BlockLayout&) = default;
};

// Everything that decides whether two blocks with the same tokens are
// interchangeable. Its fingerprint seeds the prefix-hash chain, so two
// models, two weight revisions, two tokenizers, two tensor-parallel shards or
// two salts (LoRA adapter, tenant) never share a key. Fully deterministic:
// the same Namespace gives the same fingerprint in every process and on every
// machine.
struct Namespace {
  BlockLayout layout;
  std::string model;      // REQUIRED: e.g. "Qwen/Qwen3-8B"
  std::string revision;   // weights revision or digest, e.g. a git sha
  std::string tokenizer;  // tokenizer id or digest
  uint32_t tp_rank = 0;   // tensor-parallel rank of this shard
  uint32_t tp_size = 1;   // tensor-parallel world size
  std::string salt;       // optional: LoRA adapter, tenant, ...

  // OK when the layout is valid, model is non-empty and tp_rank < tp_size.
  Status Validate() const;

  // XXH3-128 of a canonical, versioned serialization of every field above
  // plus the record codec version. This is h(-1), the seed of the chain.
  Hash128 Fingerprint() const;

  // One line for humans: "Qwen/Qwen3-8B@abc123 tok=qwen3 tp=0/1 32x8x128 bs16 f16".
  std::string Describe() const;
};

}  // namespace kvtier

#endif  // KVTIER_LAYOUT_H_
