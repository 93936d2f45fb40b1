// The stores a user could pick instead of kvtier's, implemented honestly and
// tuned fairly, plus the raw-write floor:
//  - FilePerBlockStore: one file per block, zstd level 1 (how LMCache's and
//    SGLang's file tiers store), files fanned out over 256 subdirectories;
//    durability like kvtier's Flush(): files are written without a sync
//    each, then one syncfs() makes them durable.
//  - RocksRawStore: RocksDB with the raw payload under the 16-byte prefix
//    hash, no app-side codec, tuned as ROCKSDB_NOTES.md recommends (integrated
//    BlobDB, compression off, WAL on without sync, batched writes,
//    PinnableSlice reads, verify_checksums off).
//  - WriteRawFile: fwrite of the raw bytes into one file, then fsync.
#ifndef KVTIER_TOOLS_BENCH_BASELINE_STORES_H_
#define KVTIER_TOOLS_BENCH_BASELINE_STORES_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "codec_floor.h"
#include "kvtier/hash.h"
#include "kvtier/status.h"

namespace rocksdb {
class DB;
}

namespace kvtier::bench {

class BaselineStore {
 public:
  virtual ~BaselineStore() = default;
  // Stores payloads[i] under keys[i] (one batch).
  virtual Status Put(std::span<const Hash128> keys,
                     std::span<const std::span<const std::byte>> payloads) = 0;
  // Makes every Put durable.
  virtual Status Sync() = 0;
  // Reads the payload of `key` into `out` (exactly its raw size).
  virtual Status Get(const Hash128& key, std::span<std::byte> out) = 0;
  // Bytes the store's files take on disk.
  virtual uint64_t FilesBytes() const = 0;
  virtual std::string Describe() const = 0;
};

// `dir` must exist and be empty.
std::unique_ptr<BaselineStore> NewFilePerBlockStore(const std::string& dir, int zstd_level);
Status OpenRocksRawStore(const std::string& dir, std::unique_ptr<BaselineStore>* store);

// Writes `count` blocks (payload(i) for i < count) into one new file at
// `path` with fwrite, then fsync; returns the seconds taken.
Status WriteRawFile(const std::string& path, size_t count,
                    const std::function<std::span<const std::byte>(size_t)>& payload,
                    double* seconds);

// Bytes of every regular file under `dir`.
uint64_t DirectoryBytes(const std::string& dir);

}  // namespace kvtier::bench

#endif  // KVTIER_TOOLS_BENCH_BASELINE_STORES_H_
