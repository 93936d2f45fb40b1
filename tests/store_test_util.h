// Helpers for the tests of the block store (store_test, record_log_test,
// corruption_sweep_test): chains of encoded records, opening a store, and
// a closed store's RocksDB opened directly.
#ifndef KVTIER_TESTS_STORE_TEST_UTIL_H_
#define KVTIER_TESTS_STORE_TEST_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <rocksdb/db.h>

#include "kvtier/hash.h"
#include "kvtier/record.h"
#include "kvtier/store.h"

namespace kvtier::test {

// Records stored raw have a fixed size, so budgets can be exact.
CodecOptions RawCodec();

// A namespace of 64 KiB blocks (4 layers x 4 kv heads x 64 head_dim, f16,
// block_size 16) for model `model`.
Namespace LargeBlockNamespace(const std::string& model);

// The records of one prompt: block i is records[i] under keys[i].
struct RecordChain {
  Namespace ns;
  std::vector<Hash128> keys;
  std::vector<std::string> records;

  std::vector<std::string_view> views(size_t begin, size_t end) const {
    return std::vector<std::string_view>(records.begin() + begin, records.begin() + end);
  }
  std::vector<std::string_view> views() const { return views(0, records.size()); }
};

// `blocks` records of a prompt derived from `seed`, encoded with `codec`.
RecordChain MakeChain(const Namespace& ns, uint64_t seed, size_t blocks,
                const CodecOptions& codec = CodecOptions());

// Opens (creating) the store in `dir`; REQUIREs success.
std::unique_ptr<BlockStore> OpenStore(const std::string& dir, StoreOptions options = {});
StoreStats Stats(BlockStore& store);

// A closed store's RocksDB opened directly, every column family: how the
// store's files look behind its back.
class RawDb {
 public:
  explicit RawDb(const std::string& dir);
  ~RawDb();
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;
  rocksdb::DB* db() { return db_.get(); }
  // REQUIREs that the family exists.
  rocksdb::ColumnFamilyHandle* family(const std::string& name);

 private:
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::map<std::string, rocksdb::ColumnFamilyHandle*> by_name_;
};

}  // namespace kvtier::test

#endif  // KVTIER_TESTS_STORE_TEST_UTIL_H_
