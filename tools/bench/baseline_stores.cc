#include "baseline_stores.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>

#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include "bench_common.h"

namespace kvtier::bench {

namespace {

Status Errno(const std::string& what) {
  return Status::IOError(what + ": " + std::strerror(errno));
}

class FilePerBlockStore : public BaselineStore {
 public:
  FilePerBlockStore(std::string dir, int level) : dir_(std::move(dir)), codec_(level, false, 1) {
    char sub[8];
    for (int i = 0; i < 256; ++i) {
      std::snprintf(sub, sizeof(sub), "/%02x", i);
      std::filesystem::create_directories(dir_ + sub);
    }
  }

  Status Put(std::span<const Hash128> keys,
             std::span<const std::span<const std::byte>> payloads) override {
    for (size_t i = 0; i < keys.size(); ++i) {
      codec_.Compress(payloads[i], &frame_);
      const std::string path = PathOf(keys[i]);
      int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd < 0) return Errno("open " + path);
      ssize_t n = ::write(fd, frame_.data(), frame_.size());
      int saved = errno;
      ::close(fd);
      errno = saved;
      if (n != static_cast<ssize_t>(frame_.size())) return Errno("write " + path);
    }
    return Status::OK();
  }

  Status Sync() override {
    int fd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return Errno("open " + dir_);
    int rc = ::syncfs(fd);
    ::close(fd);
    return rc == 0 ? Status::OK() : Errno("syncfs " + dir_);
  }

  Status Get(const Hash128& key, std::span<std::byte> out) override {
    const std::string path = PathOf(key);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? Status::NotFound(path) : Errno("open " + path);
    frame_.resize(out.size() + out.size() / 64 + 1024);
    ssize_t n = ::read(fd, frame_.data(), frame_.size());
    ::close(fd);
    if (n < 0) return Errno("read " + path);
    return codec_.Decompress(std::string_view(frame_.data(), static_cast<size_t>(n)), out);
  }

  uint64_t FilesBytes() const override { return DirectoryBytes(dir_); }
  std::string Describe() const override {
    return "one file per block (" + codec_.Describe() + ", syncfs once)";
  }

 private:
  std::string PathOf(const Hash128& key) const {
    std::string hex = key.ToHex();
    return dir_ + "/" + hex.substr(0, 2) + "/" + hex;
  }

  std::string dir_;
  ZstdFloor codec_;
  std::string frame_;
};

class RocksRawStore : public BaselineStore {
 public:
  RocksRawStore(rocksdb::DB* db, std::string dir) : db_(db), dir_(std::move(dir)) {}
  ~RocksRawStore() override { delete db_; }

  Status Put(std::span<const Hash128> keys,
             std::span<const std::span<const std::byte>> payloads) override {
    rocksdb::WriteBatch batch;
    for (size_t i = 0; i < keys.size(); ++i) {
      uint8_t k[16];
      keys[i].ToBytes(k);
      batch.Put(rocksdb::Slice(reinterpret_cast<const char*>(k), 16),
                rocksdb::Slice(reinterpret_cast<const char*>(payloads[i].data()),
                               payloads[i].size()));
    }
    rocksdb::Status s = db_->Write(rocksdb::WriteOptions(), &batch);
    return s.ok() ? Status::OK() : Status::IOError(s.ToString());
  }

  Status Sync() override {
    rocksdb::Status s = db_->FlushWAL(/*sync=*/true);
    return s.ok() ? Status::OK() : Status::IOError(s.ToString());
  }

  Status Get(const Hash128& key, std::span<std::byte> out) override {
    uint8_t k[16];
    key.ToBytes(k);
    rocksdb::ReadOptions ro;
    ro.verify_checksums = false;
    rocksdb::Status s = db_->Get(ro, db_->DefaultColumnFamily(),
                                 rocksdb::Slice(reinterpret_cast<const char*>(k), 16), &value_);
    if (s.IsNotFound()) return Status::NotFound(key.ToHex());
    if (!s.ok()) return Status::IOError(s.ToString());
    if (value_.size() != out.size()) {
      return Status::Corruption("value is " + std::to_string(value_.size()) + " bytes, expected " +
                                std::to_string(out.size()));
    }
    std::memcpy(out.data(), value_.data(), out.size());
    value_.Reset();
    return Status::OK();
  }

  uint64_t FilesBytes() const override { return DirectoryBytes(dir_); }
  std::string Describe() const override {
    return "RocksDB " + std::to_string(ROCKSDB_MAJOR) + "." + std::to_string(ROCKSDB_MINOR) +
           "." + std::to_string(ROCKSDB_PATCH) +
           " raw payloads (BlobDB, no compression, WAL unsynced + sync at end, "
           "PinnableSlice, checksums off)";
  }

 private:
  rocksdb::DB* db_;
  std::string dir_;
  rocksdb::PinnableSlice value_;
};

}  // namespace

std::unique_ptr<BaselineStore> NewFilePerBlockStore(const std::string& dir, int zstd_level) {
  return std::make_unique<FilePerBlockStore>(dir, zstd_level);
}

Status OpenRocksRawStore(const std::string& dir, std::unique_ptr<BaselineStore>* store) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.compression = rocksdb::kNoCompression;
  options.bottommost_compression = rocksdb::kNoCompression;
  options.enable_blob_files = true;
  options.min_blob_size = 4096;
  options.blob_file_size = 256ull << 20;
  options.blob_compression_type = rocksdb::kNoCompression;
  options.enable_blob_garbage_collection = false;
  options.write_buffer_size = 64ull << 20;
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.block_cache = rocksdb::NewLRUCache(8ull << 20);
  options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, dir, &db);
  if (!s.ok()) return Status::IOError("open RocksDB at " + dir + ": " + s.ToString());
  *store = std::make_unique<RocksRawStore>(db, dir);
  return Status::OK();
}

Status WriteRawFile(const std::string& path, size_t count,
                    const std::function<std::span<const std::byte>(size_t)>& payload,
                    double* seconds) {
  Stopwatch watch;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return Errno("fopen " + path);
  for (size_t i = 0; i < count; ++i) {
    auto p = payload(i);
    if (std::fwrite(p.data(), 1, p.size(), f) != p.size()) {
      std::fclose(f);
      return Errno("fwrite " + path);
    }
  }
  if (std::fflush(f) != 0 || ::fsync(fileno(f)) != 0) {
    std::fclose(f);
    return Errno("fsync " + path);
  }
  std::fclose(f);
  *seconds = watch.Seconds();
  return Status::OK();
}

uint64_t DirectoryBytes(const std::string& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec)) total += it->file_size(ec);
  }
  return total;
}

}  // namespace kvtier::bench
