// FaultFileSystem: a rocksdb::FileSystemWrapper that counts every file
// operation RocksDB makes and fails chosen ones, for the fault-injection and
// disk-full tests (RocksDB's own FaultInjectionTestFS is not in Debian's
// headers). Open a store on it with RocksBlockStore::Open(dir, options, fs).
//
// Operations fall into kinds (a bit mask): opening, creating, renaming and
// deleting files (kMeta), appends and buffer flushes (kWrite), syncs and
// closes of written files (kSync), and reads (kRead). The modes:
//   FailNth(n, kinds)  fails exactly the n-th operation of those kinds from
//                      now on (1-based), once: SQLite's I/O-error test style;
//   FailFrom(n, kinds) fails that one and every later one until Clear();
//   SetSpaceLimit(..)  a full disk: appends that would take the bytes under
//                      the directory past the limit fail with NoSpace;
//   CorruptRecordReads flips one bit in every read of a record segment or
//                      blob file (a bad sector under a record; records are
//                      read without file checksums, so only kvtier's own
//                      checks stand).
// Syncs are counted (and can fail) but do not reach the disk unless
// SetRealSyncs(true): these tests model faults seen by one process, not
// power loss, and a sweep of hundreds of runs would otherwise spend minutes
// in fsync on a slow disk.
// Thread-safe: RocksDB calls it from its background threads too.
#ifndef KVTIER_TESTS_RELIABILITY_FAULT_FS_H_
#define KVTIER_TESTS_RELIABILITY_FAULT_FS_H_

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <rocksdb/io_status.h>
#include <rocksdb/system_clock.h>

namespace kvtier::test {

enum FsKind : uint32_t {
  kFsMeta = 1u << 0,
  kFsWrite = 1u << 1,
  kFsSync = 1u << 2,
  kFsRead = 1u << 3,
  kFsAll = kFsMeta | kFsWrite | kFsSync | kFsRead,
};

// How an injected fault looks to RocksDB.
enum class FsError : uint8_t { kIOError, kNoSpace, kRetryable };

class FaultFileSystem : public rocksdb::FileSystemWrapper {
 public:
  explicit FaultFileSystem(std::shared_ptr<rocksdb::FileSystem> base = rocksdb::FileSystem::Default())
      : rocksdb::FileSystemWrapper(std::move(base)) {}

  static const char* kClassName() { return "KvtierFaultFileSystem"; }
  const char* Name() const override { return kClassName(); }

  // Counting restarts at 0 for every mode change.
  void FailNth(uint64_t n, uint32_t kinds, FsError error = FsError::kIOError) {
    std::lock_guard<std::mutex> lock(mu_);
    Arm(n, kinds, error, /*persistent=*/false);
  }
  void FailFrom(uint64_t n, uint32_t kinds, FsError error = FsError::kIOError) {
    std::lock_guard<std::mutex> lock(mu_);
    Arm(n, kinds, error, /*persistent=*/true);
  }
  // Counts operations of `kinds` without failing any.
  void Count(uint32_t kinds) {
    std::lock_guard<std::mutex> lock(mu_);
    Arm(0, kinds, FsError::kIOError, false);
  }
  // Stops failing (the disk limit and blob corruption too); counts go on.
  void Clear() {
    std::lock_guard<std::mutex> lock(mu_);
    fail_at_ = 0;
    persistent_ = false;
    space_limit_ = 0;
    corrupt_record_reads_ = false;
  }
  // A disk of `limit` bytes holding what is under `dir` now.
  void SetSpaceLimit(const std::string& dir, uint64_t limit) {
    uint64_t used = 0;
    std::error_code ec;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir, ec)) {
      std::error_code size_ec;
      if (e.is_regular_file(size_ec)) used += e.file_size(size_ec);
    }
    std::lock_guard<std::mutex> lock(mu_);
    space_used_ = used;
    space_limit_ = limit;
  }
  void SetRealSyncs(bool on) {
    std::lock_guard<std::mutex> lock(mu_);
    real_syncs_ = on;
  }
  bool real_syncs() const {
    std::lock_guard<std::mutex> lock(mu_);
    return real_syncs_;
  }
  void CorruptRecordReads(bool on) {
    std::lock_guard<std::mutex> lock(mu_);
    corrupt_record_reads_ = on;
  }

  uint64_t operations() const {
    std::lock_guard<std::mutex> lock(mu_);
    return counted_;
  }
  uint64_t injected() const {
    std::lock_guard<std::mutex> lock(mu_);
    return injected_;
  }
  uint64_t space_used() const {
    std::lock_guard<std::mutex> lock(mu_);
    return space_used_;
  }
  // "append to /dir/000012.log" for the first injected fault ("" if none).
  std::string first_fault() const {
    std::lock_guard<std::mutex> lock(mu_);
    return first_fault_;
  }

  // Called by the file wrappers: counts the operation and decides its fate.
  rocksdb::IOStatus Check(FsKind kind, const char* what, const std::string& file,
                          uint64_t append_bytes = 0) {
    std::lock_guard<std::mutex> lock(mu_);
    if ((kinds_ & kind) != 0) {
      const uint64_t n = ++counted_;
      if (fail_at_ != 0 && (n == fail_at_ || (persistent_ && n > fail_at_))) {
        return Inject(error_, what, file);
      }
    }
    if (kind == kFsWrite && space_limit_ != 0 && space_used_ + append_bytes > space_limit_) {
      return Inject(FsError::kNoSpace, what, file);
    }
    return rocksdb::IOStatus::OK();
  }
  void Grew(uint64_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    space_used_ += bytes;
  }
  void Shrank(uint64_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    space_used_ -= std::min(space_used_, bytes);
  }
  bool corrupt_record_reads() const {
    std::lock_guard<std::mutex> lock(mu_);
    return corrupt_record_reads_;
  }
  void NoteCorruptedRead() {
    std::lock_guard<std::mutex> lock(mu_);
    ++injected_;
  }

  // --- FileSystem overrides ---
  rocksdb::IOStatus NewSequentialFile(const std::string& f, const rocksdb::FileOptions& o,
                                      std::unique_ptr<rocksdb::FSSequentialFile>* r,
                                      rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus NewRandomAccessFile(const std::string& f, const rocksdb::FileOptions& o,
                                        std::unique_ptr<rocksdb::FSRandomAccessFile>* r,
                                        rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                       std::unique_ptr<rocksdb::FSWritableFile>* r,
                                       rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReuseWritableFile(const std::string& f, const std::string& old,
                                      const rocksdb::FileOptions& o,
                                      std::unique_ptr<rocksdb::FSWritableFile>* r,
                                      rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus NewDirectory(const std::string& name, const rocksdb::IOOptions& o,
                                 std::unique_ptr<rocksdb::FSDirectory>* r,
                                 rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus DeleteFile(const std::string& f, const rocksdb::IOOptions& o,
                               rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus RenameFile(const std::string& from, const std::string& to,
                               const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus LinkFile(const std::string& from, const std::string& to,
                             const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus Truncate(const std::string& f, size_t size, const rocksdb::IOOptions& o,
                             rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus CreateDirIfMissing(const std::string& d, const rocksdb::IOOptions& o,
                                       rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus GetChildren(const std::string& dir, const rocksdb::IOOptions& o,
                                std::vector<std::string>* r, rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus GetFreeSpace(const std::string& path, const rocksdb::IOOptions& o,
                                 uint64_t* free, rocksdb::IODebugContext* dbg) override;

 private:
  void Arm(uint64_t n, uint32_t kinds, FsError error, bool persistent) {
    counted_ = 0;
    kinds_ = kinds;
    fail_at_ = n;
    error_ = error;
    persistent_ = persistent;
  }
  rocksdb::IOStatus Inject(FsError error, const char* what, const std::string& file) {
    ++injected_;
    if (first_fault_.empty()) first_fault_ = std::string(what) + " " + file;
    const std::string msg = std::string("injected fault: ") + what + " " + file;
    switch (error) {
      case FsError::kNoSpace:
        return rocksdb::IOStatus::NoSpace(msg);
      case FsError::kRetryable: {
        rocksdb::IOStatus s = rocksdb::IOStatus::IOError(msg);
        s.SetRetryable(true);
        return s;
      }
      case FsError::kIOError:
        break;
    }
    return rocksdb::IOStatus::IOError(msg);
  }

  mutable std::mutex mu_;
  uint32_t kinds_ = 0;
  uint64_t counted_ = 0;
  uint64_t fail_at_ = 0;  // 0 = never
  bool persistent_ = false;
  FsError error_ = FsError::kIOError;
  uint64_t injected_ = 0;
  std::string first_fault_;
  uint64_t space_limit_ = 0;  // 0 = none
  uint64_t space_used_ = 0;
  bool corrupt_record_reads_ = false;
  bool real_syncs_ = false;
};

// The Env to open a store on `fs` with (RocksBlockStore::Open(dir, options,
// env, store)). Its clock caps sleeps at 5 ms: RocksDB pauses a background
// thread for 1 s after a failed flush or compaction, and closing the
// database waits for that pause, so each such fault would cost a sweep a
// second. Only the pause is shortened; production keeps it.
std::shared_ptr<rocksdb::Env> FaultEnv(std::shared_ptr<rocksdb::FileSystem> fs);

}  // namespace kvtier::test

#endif  // KVTIER_TESTS_RELIABILITY_FAULT_FS_H_
