#include "store_test_util.h"

#include <catch2/catch.hpp>

#include <span>

#include "test_util.h"

namespace kvtier::test {

CodecOptions RawCodec() {
  CodecOptions c;
  c.min_saving = 1.0;  // never worth compressing
  return c;
}

Namespace LargeBlockNamespace(const std::string& model) {
  BlockLayout layout = SmallLayout(DType::kF16, 16);
  layout.num_layers = 4;
  layout.num_kv_heads = 4;
  layout.head_dim = 64;
  return TestNamespace(layout, model);
}

RecordChain MakeChain(const Namespace& ns, uint64_t seed, size_t blocks,
                      const CodecOptions& codec) {
  RecordChain chain;
  chain.ns = ns;
  const uint32_t bs = ns.layout.block_size;
  const std::vector<uint32_t> tokens = Tokens(blocks * bs, seed);
  const Hash128 fp = ns.Fingerprint();
  PrefixHashes(fp, tokens, bs, &chain.keys);
  for (size_t i = 0; i < blocks; ++i) {
    RecordIdentity id;
    id.layout = ns.layout;
    id.depth = static_cast<uint32_t>(i);
    id.namespace_fp = fp;
    id.parent = i == 0 ? fp : chain.keys[i - 1];
    id.tokens = std::span<const uint32_t>(tokens).subspan(i * bs, bs);
    std::string record;
    Status s = EncodeRecord(id, Payload(ns.layout, seed * 1000 + i), codec, &record);
    REQUIRE(s.ok());
    chain.records.push_back(std::move(record));
  }
  return chain;
}

std::unique_ptr<BlockStore> OpenStore(const std::string& dir, StoreOptions options) {
  std::unique_ptr<BlockStore> store;
  Status s = OpenBlockStore(dir, options, &store);
  INFO(s.ToString());
  REQUIRE(s.ok());
  return store;
}

StoreStats Stats(BlockStore& store) {
  StoreStats stats;
  REQUIRE(store.GetStats(&stats).ok());
  return stats;
}

RawDb::RawDb(const std::string& dir) {
  std::vector<std::string> names;
  REQUIRE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir, &names).ok());
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  for (const std::string& n : names) families.emplace_back(n, rocksdb::ColumnFamilyOptions());
  rocksdb::DB* db = nullptr;
  REQUIRE(rocksdb::DB::Open(rocksdb::DBOptions(), dir, families, &handles_, &db).ok());
  db_.reset(db);
  for (size_t i = 0; i < names.size(); ++i) by_name_[names[i]] = handles_[i];
}

RawDb::~RawDb() {
  for (auto* h : handles_) (void)db_->DestroyColumnFamilyHandle(h);
  (void)db_->Close();
}

rocksdb::ColumnFamilyHandle* RawDb::family(const std::string& name) {
  REQUIRE(by_name_.count(name) == 1);
  return by_name_.at(name);
}

}  // namespace kvtier::test
