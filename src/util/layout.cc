#include "kvtier/layout.h"

#include <xxhash.h>

#include <array>

#include "kvtier/record.h"

namespace kvtier {

namespace {

struct DTypeEntry {
  DType dtype;
  std::string_view name;
  size_t size;
};

constexpr std::array<DTypeEntry, 6> kDTypes = {{
    {DType::kF32, "f32", 4},
    {DType::kF16, "f16", 2},
    {DType::kBF16, "bf16", 2},
    {DType::kInt8, "int8", 1},
    {DType::kFP8E4M3, "fp8e4m3", 1},
    {DType::kFP8E5M2, "fp8e5m2", 1},
}};

constexpr uint32_t kMaxBlockSize = 4096;
constexpr size_t kMaxBlockBytes = size_t{256} << 20;

// Canonical serialization for the fingerprint: every field length-prefixed,
// integers little-endian, so no two namespaces serialize alike.
void PutU32(std::string* s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s->push_back(static_cast<char>(v >> (8 * i)));
}
void PutString(std::string* s, std::string_view v) {
  PutU32(s, static_cast<uint32_t>(v.size()));
  s->append(v);
}

}  // namespace

size_t DTypeSize(DType dtype) {
  for (const auto& e : kDTypes)
    if (e.dtype == dtype) return e.size;
  return 0;
}

std::string_view DTypeName(DType dtype) {
  for (const auto& e : kDTypes)
    if (e.dtype == dtype) return e.name;
  return "?";
}

bool ParseDType(std::string_view name, DType* dtype) {
  for (const auto& e : kDTypes) {
    if (e.name == name) {
      *dtype = e.dtype;
      return true;
    }
  }
  return false;
}

Status BlockLayout::Validate() const {
  if (DTypeSize(dtype) == 0)
    return Status::InvalidArgument("unknown dtype code " + std::to_string(static_cast<int>(dtype)));
  if (num_layers == 0) return Status::InvalidArgument("layout: num_layers must be positive");
  if (num_kv_heads == 0) return Status::InvalidArgument("layout: num_kv_heads must be positive");
  if (head_dim == 0) return Status::InvalidArgument("layout: head_dim must be positive");
  if (block_size == 0) return Status::InvalidArgument("layout: block_size must be positive");
  if (block_size > kMaxBlockSize)
    return Status::InvalidArgument("layout: block_size " + std::to_string(block_size) +
                                   " exceeds the maximum " + std::to_string(kMaxBlockSize));
  // Multiply in 128 bits so absurd dimensions cannot wrap around.
  unsigned __int128 bytes = static_cast<unsigned __int128>(2) * num_layers * block_size *
                            num_kv_heads * head_dim * DTypeSize(dtype);
  if (bytes > kMaxBlockBytes)
    return Status::InvalidArgument("layout " + ToString() + ": a block would exceed 256 MiB");
  return Status::OK();
}

std::string BlockLayout::ToString() const {
  return std::to_string(num_layers) + "x" + std::to_string(num_kv_heads) + "x" +
         std::to_string(head_dim) + " bs" + std::to_string(block_size) + " " +
         std::string(DTypeName(dtype));
}

Status Namespace::Validate() const {
  Status s = layout.Validate();
  if (!s.ok()) return s;
  if (model.empty()) return Status::InvalidArgument("namespace: model name is required");
  if (tp_size == 0) return Status::InvalidArgument("namespace: tp_size must be positive");
  if (tp_rank >= tp_size)
    return Status::InvalidArgument("namespace: tp_rank " + std::to_string(tp_rank) +
                                   " must be below tp_size " + std::to_string(tp_size));
  return Status::OK();
}

Hash128 Namespace::Fingerprint() const {
  std::string s = "kvtier-namespace-v1";
  PutU32(&s, kRecordFormatVersion);
  PutU32(&s, layout.num_layers);
  PutU32(&s, layout.num_kv_heads);
  PutU32(&s, layout.head_dim);
  PutU32(&s, layout.block_size);
  PutU32(&s, static_cast<uint32_t>(layout.dtype));
  PutString(&s, model);
  PutString(&s, revision);
  PutString(&s, tokenizer);
  PutU32(&s, tp_rank);
  PutU32(&s, tp_size);
  PutString(&s, salt);
  XXH128_hash_t h = XXH3_128bits(s.data(), s.size());
  return Hash128{h.low64, h.high64};
}

std::string Namespace::Describe() const {
  std::string s = model;
  if (!revision.empty()) s += "@" + revision;
  if (!tokenizer.empty()) s += " tok=" + tokenizer;
  s += " tp=" + std::to_string(tp_rank) + "/" + std::to_string(tp_size);
  if (!salt.empty()) s += " salt=" + salt;
  s += " " + layout.ToString();
  return s;
}

}  // namespace kvtier
