// The on-disk layout of a RocksDB store directory (kStoreFormatVersion 2):
// column family names and the byte encodings of every key and value the
// store writes besides the records themselves, which are in the record log
// (`segments/`, record_log.h).
//
//   family    key                                          value
//   default   key(16)                                      EncodeLocation() (record_log.h);
//                                                          format 1: the record bytes
//   meta      key(16)                                      EncodeMeta()
//   lru       be64(access_seq) be32(~depth) key(16)         empty
//   children  parent(16) child(16)                         empty
//   sys       "format"                                     u32 version
//             "counters"                                   EncodeCounters()
//             "ns/" + 32 hex digits of the fingerprint     EncodeNamespaceEntry()
//
// key(16) is Hash128::ToBytes(). Iterating `lru` from its first key yields
// the least recently used record first and, among records used at the same
// sequence number, the deepest first (~depth = UINT32_MAX - depth). A depth-0
// record's parent is its namespace fingerprint, so `children` also indexes
// the chain heads of every namespace. Integers in values are little-endian.
#ifndef KVTIER_STORE_STORE_FORMAT_H_
#define KVTIER_STORE_STORE_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "kvtier/hash.h"
#include "kvtier/store.h"

namespace kvtier::store_format {

inline constexpr char kMetaFamily[] = "meta";
inline constexpr char kLruFamily[] = "lru";
inline constexpr char kChildrenFamily[] = "children";
inline constexpr char kSysFamily[] = "sys";

inline constexpr char kFormatKey[] = "format";
inline constexpr char kCountersKey[] = "counters";
inline constexpr char kNamespacePrefix[] = "ns/";

inline constexpr size_t kKeyBytes = 16;
inline constexpr size_t kLruKeyBytes = 8 + 4 + kKeyBytes;
inline constexpr size_t kChildKeyBytes = 2 * kKeyBytes;

// Store-wide totals, persisted as absolute values in every write batch that
// changes them (so open needs no scan).
struct Counters {
  uint64_t records = 0;
  uint64_t raw_bytes = 0;
  uint64_t stored_bytes = 0;
  uint64_t next_seq = 1;  // the access_seq the next Put/Touch will use
};

// The 16 canonical bytes of `key`.
std::string EncodeKey(const Hash128& key);
// False unless `bytes` is exactly 16 bytes.
bool DecodeKey(std::string_view bytes, Hash128* key);

std::string LruKey(uint64_t access_seq, uint32_t depth, const Hash128& key);
bool ParseLruKey(std::string_view lru_key, uint64_t* access_seq, uint32_t* depth,
                 Hash128* key);

std::string ChildKey(const Hash128& parent, const Hash128& child);
// The child half of a ChildKey(). False for a key of another size.
bool ParseChildKey(std::string_view child_key, Hash128* child);

// Every field of `meta` except the key (which is the RocksDB key).
std::string EncodeMeta(const RecordMeta& meta);
// False if `value` is not an EncodeMeta() value.
bool DecodeMeta(const Hash128& key, std::string_view value, RecordMeta* meta);

std::string EncodeFormatVersion(uint32_t version);
bool DecodeFormatVersion(std::string_view value, uint32_t* version);

std::string EncodeCounters(const Counters& counters);
bool DecodeCounters(std::string_view value, Counters* counters);

// "ns/" + fingerprint.ToHex().
std::string NamespaceKey(const Hash128& fingerprint);
std::string EncodeNamespaceEntry(const NamespaceEntry& entry);
// False if `value` is not an EncodeNamespaceEntry() value.
bool DecodeNamespaceEntry(std::string_view value, NamespaceEntry* entry);

}  // namespace kvtier::store_format

#endif  // KVTIER_STORE_STORE_FORMAT_H_
