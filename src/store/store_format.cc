#include "store/store_format.h"

namespace kvtier::store_format {

namespace {

constexpr uint8_t kMetaVersion = 1;
constexpr size_t kMetaBytes = 1 + 16 + 16 + 4 + 4 + 2 + 1 + 8 + 8 + 8 + 8;
constexpr uint8_t kCountersVersion = 1;
constexpr size_t kCountersBytes = 1 + 4 * 8;
constexpr uint8_t kNamespaceVersion = 1;

void PutBigEndian(std::string* out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t GetBigEndian(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

void PutLittleEndian(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void PutHash(std::string* out, const Hash128& h) {
  uint8_t bytes[16];
  h.ToBytes(bytes);
  out->append(reinterpret_cast<const char*>(bytes), 16);
}

void PutString(std::string* out, const std::string& s) {
  PutLittleEndian(out, s.size(), 4);
  out->append(s);
}

// Reads little-endian fields from a value, remembering whether it ran short.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}

  uint64_t Fixed(int bytes) {
    if (!Take(bytes)) return 0;
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(in_[pos_ - bytes + i]);
    return v;
  }
  Hash128 Hash() {
    if (!Take(16)) return Hash128{};
    return Hash128::FromBytes(reinterpret_cast<const uint8_t*>(in_.data() + pos_ - 16));
  }
  std::string String() {
    size_t n = Fixed(4);
    if (!Take(n)) return {};
    return std::string(in_.substr(pos_ - n, n));
  }
  // True when every read fitted and the value is used up exactly.
  bool Done() const { return ok_ && pos_ == in_.size(); }

 private:
  bool Take(size_t n) {
    if (!ok_ || in_.size() - pos_ < n) {
      ok_ = false;
      return false;
    }
    pos_ += n;
    return true;
  }

  std::string_view in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace

std::string EncodeKey(const Hash128& key) {
  std::string out;
  PutHash(&out, key);
  return out;
}

bool DecodeKey(std::string_view bytes, Hash128* key) {
  if (bytes.size() != kKeyBytes) return false;
  *key = Hash128::FromBytes(reinterpret_cast<const uint8_t*>(bytes.data()));
  return true;
}

std::string LruKey(uint64_t access_seq, uint32_t depth, const Hash128& key) {
  std::string out;
  out.reserve(kLruKeyBytes);
  PutBigEndian(&out, access_seq, 8);
  PutBigEndian(&out, UINT32_MAX - depth, 4);
  PutHash(&out, key);
  return out;
}

bool ParseLruKey(std::string_view lru_key, uint64_t* access_seq, uint32_t* depth, Hash128* key) {
  if (lru_key.size() != kLruKeyBytes) return false;
  *access_seq = GetBigEndian(lru_key.data(), 8);
  *depth = UINT32_MAX - static_cast<uint32_t>(GetBigEndian(lru_key.data() + 8, 4));
  return DecodeKey(lru_key.substr(12), key);
}

std::string ChildKey(const Hash128& parent, const Hash128& child) {
  std::string out;
  out.reserve(kChildKeyBytes);
  PutHash(&out, parent);
  PutHash(&out, child);
  return out;
}

bool ParseChildKey(std::string_view child_key, Hash128* child) {
  if (child_key.size() != kChildKeyBytes) return false;
  return DecodeKey(child_key.substr(kKeyBytes), child);
}

std::string EncodeMeta(const RecordMeta& meta) {
  std::string out;
  out.reserve(kMetaBytes);
  out.push_back(static_cast<char>(kMetaVersion));
  PutHash(&out, meta.parent);
  PutHash(&out, meta.namespace_fp);
  PutLittleEndian(&out, meta.depth, 4);
  PutLittleEndian(&out, meta.num_tokens, 4);
  PutLittleEndian(&out, meta.flags, 2);
  PutLittleEndian(&out, static_cast<uint8_t>(meta.dtype), 1);
  PutLittleEndian(&out, meta.raw_bytes, 8);
  PutLittleEndian(&out, meta.stored_bytes, 8);
  PutLittleEndian(&out, meta.access_seq, 8);
  PutLittleEndian(&out, static_cast<uint64_t>(meta.last_access_us), 8);
  return out;
}

bool DecodeMeta(const Hash128& key, std::string_view value, RecordMeta* meta) {
  Reader r(value);
  if (r.Fixed(1) != kMetaVersion) return false;
  RecordMeta m;
  m.key = key;
  m.parent = r.Hash();
  m.namespace_fp = r.Hash();
  m.depth = static_cast<uint32_t>(r.Fixed(4));
  m.num_tokens = static_cast<uint32_t>(r.Fixed(4));
  m.flags = static_cast<uint16_t>(r.Fixed(2));
  m.dtype = static_cast<DType>(r.Fixed(1));
  m.raw_bytes = r.Fixed(8);
  m.stored_bytes = r.Fixed(8);
  m.access_seq = r.Fixed(8);
  m.last_access_us = static_cast<int64_t>(r.Fixed(8));
  if (!r.Done()) return false;
  *meta = m;
  return true;
}

std::string EncodeFormatVersion(uint32_t version) {
  std::string out;
  PutLittleEndian(&out, version, 4);
  return out;
}

bool DecodeFormatVersion(std::string_view value, uint32_t* version) {
  Reader r(value);
  *version = static_cast<uint32_t>(r.Fixed(4));
  return r.Done();
}

std::string EncodeCounters(const Counters& counters) {
  std::string out;
  out.reserve(kCountersBytes);
  out.push_back(static_cast<char>(kCountersVersion));
  PutLittleEndian(&out, counters.records, 8);
  PutLittleEndian(&out, counters.raw_bytes, 8);
  PutLittleEndian(&out, counters.stored_bytes, 8);
  PutLittleEndian(&out, counters.next_seq, 8);
  return out;
}

bool DecodeCounters(std::string_view value, Counters* counters) {
  Reader r(value);
  if (r.Fixed(1) != kCountersVersion) return false;
  Counters c;
  c.records = r.Fixed(8);
  c.raw_bytes = r.Fixed(8);
  c.stored_bytes = r.Fixed(8);
  c.next_seq = r.Fixed(8);
  if (!r.Done()) return false;
  *counters = c;
  return true;
}

std::string NamespaceKey(const Hash128& fingerprint) {
  return std::string(kNamespacePrefix) + fingerprint.ToHex();
}

std::string EncodeNamespaceEntry(const NamespaceEntry& entry) {
  std::string out;
  out.push_back(static_cast<char>(kNamespaceVersion));
  PutHash(&out, entry.fingerprint);
  const Namespace& ns = entry.ns;
  PutLittleEndian(&out, ns.layout.num_layers, 4);
  PutLittleEndian(&out, ns.layout.num_kv_heads, 4);
  PutLittleEndian(&out, ns.layout.head_dim, 4);
  PutLittleEndian(&out, ns.layout.block_size, 4);
  PutLittleEndian(&out, static_cast<uint8_t>(ns.layout.dtype), 1);
  PutString(&out, ns.model);
  PutString(&out, ns.revision);
  PutString(&out, ns.tokenizer);
  PutLittleEndian(&out, ns.tp_rank, 4);
  PutLittleEndian(&out, ns.tp_size, 4);
  PutString(&out, ns.salt);
  PutLittleEndian(&out, entry.blocks, 8);
  PutLittleEndian(&out, entry.raw_bytes, 8);
  PutLittleEndian(&out, entry.stored_bytes, 8);
  PutLittleEndian(&out, static_cast<uint64_t>(entry.last_use_us), 8);
  return out;
}

bool DecodeNamespaceEntry(std::string_view value, NamespaceEntry* entry) {
  Reader r(value);
  if (r.Fixed(1) != kNamespaceVersion) return false;
  NamespaceEntry e;
  e.fingerprint = r.Hash();
  Namespace& ns = e.ns;
  ns.layout.num_layers = static_cast<uint32_t>(r.Fixed(4));
  ns.layout.num_kv_heads = static_cast<uint32_t>(r.Fixed(4));
  ns.layout.head_dim = static_cast<uint32_t>(r.Fixed(4));
  ns.layout.block_size = static_cast<uint32_t>(r.Fixed(4));
  ns.layout.dtype = static_cast<DType>(r.Fixed(1));
  ns.model = r.String();
  ns.revision = r.String();
  ns.tokenizer = r.String();
  ns.tp_rank = static_cast<uint32_t>(r.Fixed(4));
  ns.tp_size = static_cast<uint32_t>(r.Fixed(4));
  ns.salt = r.String();
  e.blocks = r.Fixed(8);
  e.raw_bytes = r.Fixed(8);
  e.stored_bytes = r.Fixed(8);
  e.last_use_us = static_cast<int64_t>(r.Fixed(8));
  if (!r.Done()) return false;
  *entry = std::move(e);
  return true;
}

}  // namespace kvtier::store_format
