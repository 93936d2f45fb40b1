// FaultFileSystem's file wrappers: every operation asks the file system
// whether to fail before it reaches the real file.
#include "reliability/fault_fs.h"

#include <algorithm>

namespace kvtier::test {

namespace {

using rocksdb::IODebugContext;
using rocksdb::IOOptions;
using rocksdb::IOStatus;
using rocksdb::Slice;

bool EndsWith(const std::string& name, std::string_view suffix) {
  return name.size() > suffix.size() &&
         name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A file holding record bytes: a record segment (format 2) or a blob file
// (format 1 stores).
bool IsRecordFile(const std::string& name) {
  return EndsWith(name, ".kvr") || EndsWith(name, ".blob");
}

// Flips one bit of a read result in place when it lies in the caller's
// scratch buffer (always, for the POSIX file system without mmap reads).
void MaybeCorrupt(FaultFileSystem* fs, const std::string& name, const Slice& result,
                  const char* scratch, uint64_t offset) {
  // Only reads of record values (a segment's frame headers and a blob
  // file's header and footer are a few dozen bytes).
  if (!fs->corrupt_record_reads() || !IsRecordFile(name) || result.size() < 1024 ||
      result.data() != scratch) {
    return;
  }
  // Deterministic in the offset, so a retry of the same read sees the same
  // damage (as a bad sector would).
  const uint64_t bit = (offset * 0x9E3779B97F4A7C15ull >> 7) % (result.size() * 8);
  const_cast<char*>(result.data())[bit / 8] ^= static_cast<char>(1u << (bit % 8));
  fs->NoteCorruptedRead();
}

class FaultWritableFile : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  FaultWritableFile(std::unique_ptr<rocksdb::FSWritableFile> file, FaultFileSystem* fs,
                    std::string name)
      : rocksdb::FSWritableFileOwnerWrapper(std::move(file)), fs_(fs), name_(std::move(name)) {}

  IOStatus Append(const Slice& data, const IOOptions& o, IODebugContext* dbg) override {
    IOStatus s = fs_->Check(kFsWrite, "append to", name_, data.size());
    if (s.ok()) s = target()->Append(data, o, dbg);
    if (s.ok()) fs_->Grew(data.size());
    return s;
  }
  IOStatus Append(const Slice& data, const IOOptions& o,
                  const rocksdb::DataVerificationInfo& info, IODebugContext* dbg) override {
    IOStatus s = fs_->Check(kFsWrite, "append to", name_, data.size());
    if (s.ok()) s = target()->Append(data, o, info, dbg);
    if (s.ok()) fs_->Grew(data.size());
    return s;
  }
  IOStatus PositionedAppend(const Slice& data, uint64_t offset, const IOOptions& o,
                            IODebugContext* dbg) override {
    IOStatus s = fs_->Check(kFsWrite, "positioned append to", name_, data.size());
    if (s.ok()) s = target()->PositionedAppend(data, offset, o, dbg);
    if (s.ok()) fs_->Grew(data.size());
    return s;
  }
  IOStatus PositionedAppend(const Slice& data, uint64_t offset, const IOOptions& o,
                            const rocksdb::DataVerificationInfo& info,
                            IODebugContext* dbg) override {
    IOStatus s = fs_->Check(kFsWrite, "positioned append to", name_, data.size());
    if (s.ok()) s = target()->PositionedAppend(data, offset, o, info, dbg);
    if (s.ok()) fs_->Grew(data.size());
    return s;
  }
  IOStatus Truncate(uint64_t size, const IOOptions& o, IODebugContext* dbg) override {
    IOStatus s = fs_->Check(kFsWrite, "truncate", name_);
    return s.ok() ? target()->Truncate(size, o, dbg) : s;
  }
  IOStatus Flush(const IOOptions& o, IODebugContext* dbg) override {
    IOStatus s = fs_->Check(kFsWrite, "flush", name_);  // buffer -> OS: part of writing
    return s.ok() ? target()->Flush(o, dbg) : s;
  }
  IOStatus Sync(const IOOptions& o, IODebugContext* dbg) override {
    IOStatus s = fs_->Check(kFsSync, "sync", name_);
    if (!s.ok() || !fs_->real_syncs()) return s;
    return target()->Sync(o, dbg);
  }
  IOStatus Fsync(const IOOptions& o, IODebugContext* dbg) override {
    IOStatus s = fs_->Check(kFsSync, "fsync", name_);
    if (!s.ok() || !fs_->real_syncs()) return s;
    return target()->Fsync(o, dbg);
  }
  IOStatus RangeSync(uint64_t offset, uint64_t n, const IOOptions& o,
                     IODebugContext* dbg) override {
    IOStatus s = fs_->Check(kFsSync, "range sync", name_);
    if (!s.ok() || !fs_->real_syncs()) return s;
    return target()->RangeSync(offset, n, o, dbg);
  }
  IOStatus Close(const IOOptions& o, IODebugContext* dbg) override {
    IOStatus s = fs_->Check(kFsSync, "close", name_);
    // The real file is closed either way (a failed close still releases
    // the descriptor), so nothing leaks across the many runs of a sweep.
    IOStatus closed = target()->Close(o, dbg);
    return s.ok() ? closed : s;
  }

 private:
  FaultFileSystem* fs_;
  std::string name_;
};

class FaultRandomAccessFile : public rocksdb::FSRandomAccessFileOwnerWrapper {
 public:
  FaultRandomAccessFile(std::unique_ptr<rocksdb::FSRandomAccessFile> file, FaultFileSystem* fs,
                        std::string name)
      : rocksdb::FSRandomAccessFileOwnerWrapper(std::move(file)), fs_(fs), name_(std::move(name)) {}

  IOStatus Read(uint64_t offset, size_t n, const IOOptions& o, Slice* result, char* scratch,
                IODebugContext* dbg) const override {
    IOStatus s = fs_->Check(kFsRead, "read", name_);
    if (!s.ok()) return s;
    s = target()->Read(offset, n, o, result, scratch, dbg);
    if (s.ok()) MaybeCorrupt(fs_, name_, *result, scratch, offset);
    return s;
  }
  IOStatus MultiRead(rocksdb::FSReadRequest* reqs, size_t num_reqs, const IOOptions& o,
                     IODebugContext* dbg) override {
    IOStatus s = fs_->Check(kFsRead, "multi-read", name_);
    if (!s.ok()) {
      for (size_t i = 0; i < num_reqs; ++i) reqs[i].status = s;
      return s;
    }
    s = target()->MultiRead(reqs, num_reqs, o, dbg);
    if (s.ok()) {
      for (size_t i = 0; i < num_reqs; ++i) {
        if (reqs[i].status.ok()) MaybeCorrupt(fs_, name_, reqs[i].result, reqs[i].scratch, reqs[i].offset);
      }
    }
    return s;
  }

 private:
  FaultFileSystem* fs_;
  std::string name_;
};

class FaultSequentialFile : public rocksdb::FSSequentialFileOwnerWrapper {
 public:
  FaultSequentialFile(std::unique_ptr<rocksdb::FSSequentialFile> file, FaultFileSystem* fs,
                      std::string name)
      : rocksdb::FSSequentialFileOwnerWrapper(std::move(file)), fs_(fs), name_(std::move(name)) {}

  IOStatus Read(size_t n, const IOOptions& o, Slice* result, char* scratch,
                IODebugContext* dbg) override {
    IOStatus s = fs_->Check(kFsRead, "sequential read", name_);
    return s.ok() ? target()->Read(n, o, result, scratch, dbg) : s;
  }
  IOStatus PositionedRead(uint64_t offset, size_t n, const IOOptions& o, Slice* result,
                          char* scratch, IODebugContext* dbg) override {
    IOStatus s = fs_->Check(kFsRead, "sequential read", name_);
    return s.ok() ? target()->PositionedRead(offset, n, o, result, scratch, dbg) : s;
  }

 private:
  FaultFileSystem* fs_;
  std::string name_;
};

class FaultDirectory : public rocksdb::FSDirectoryWrapper {
 public:
  FaultDirectory(std::unique_ptr<rocksdb::FSDirectory> dir, FaultFileSystem* fs, std::string name)
      : rocksdb::FSDirectoryWrapper(std::move(dir)), fs_(fs), name_(std::move(name)) {}

  IOStatus Fsync(const IOOptions& o, IODebugContext* dbg) override {
    IOStatus s = fs_->Check(kFsSync, "fsync directory", name_);
    if (!s.ok() || !fs_->real_syncs()) return s;
    return rocksdb::FSDirectoryWrapper::Fsync(o, dbg);
  }
  IOStatus FsyncWithDirOptions(const IOOptions& o, IODebugContext* dbg,
                               const rocksdb::DirFsyncOptions& d) override {
    IOStatus s = fs_->Check(kFsSync, "fsync directory", name_);
    if (!s.ok() || !fs_->real_syncs()) return s;
    return rocksdb::FSDirectoryWrapper::FsyncWithDirOptions(o, dbg, d);
  }

 private:
  FaultFileSystem* fs_;
  std::string name_;
};

}  // namespace

IOStatus FaultFileSystem::NewSequentialFile(const std::string& f, const rocksdb::FileOptions& o,
                                            std::unique_ptr<rocksdb::FSSequentialFile>* r,
                                            IODebugContext* dbg) {
  IOStatus s = Check(kFsMeta, "open for reading", f);
  if (s.ok()) s = target()->NewSequentialFile(f, o, r, dbg);
  if (s.ok()) *r = std::make_unique<FaultSequentialFile>(std::move(*r), this, f);
  return s;
}

IOStatus FaultFileSystem::NewRandomAccessFile(const std::string& f, const rocksdb::FileOptions& o,
                                              std::unique_ptr<rocksdb::FSRandomAccessFile>* r,
                                              IODebugContext* dbg) {
  IOStatus s = Check(kFsMeta, "open for reading", f);
  if (s.ok()) s = target()->NewRandomAccessFile(f, o, r, dbg);
  if (s.ok()) *r = std::make_unique<FaultRandomAccessFile>(std::move(*r), this, f);
  return s;
}

IOStatus FaultFileSystem::NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                          std::unique_ptr<rocksdb::FSWritableFile>* r,
                                          IODebugContext* dbg) {
  IOStatus s = Check(kFsMeta, "create", f);
  if (s.ok()) s = target()->NewWritableFile(f, o, r, dbg);
  if (s.ok()) *r = std::make_unique<FaultWritableFile>(std::move(*r), this, f);
  return s;
}

IOStatus FaultFileSystem::ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                             std::unique_ptr<rocksdb::FSWritableFile>* r,
                                             IODebugContext* dbg) {
  IOStatus s = Check(kFsMeta, "reopen for writing", f);
  if (s.ok()) s = target()->ReopenWritableFile(f, o, r, dbg);
  if (s.ok()) *r = std::make_unique<FaultWritableFile>(std::move(*r), this, f);
  return s;
}

IOStatus FaultFileSystem::ReuseWritableFile(const std::string& f, const std::string& old,
                                            const rocksdb::FileOptions& o,
                                            std::unique_ptr<rocksdb::FSWritableFile>* r,
                                            IODebugContext* dbg) {
  IOStatus s = Check(kFsMeta, "reuse", old);
  if (s.ok()) s = target()->ReuseWritableFile(f, old, o, r, dbg);
  if (s.ok()) *r = std::make_unique<FaultWritableFile>(std::move(*r), this, f);
  return s;
}

IOStatus FaultFileSystem::NewDirectory(const std::string& name, const IOOptions& o,
                                       std::unique_ptr<rocksdb::FSDirectory>* r,
                                       IODebugContext* dbg) {
  IOStatus s = Check(kFsMeta, "open directory", name);
  if (s.ok()) s = target()->NewDirectory(name, o, r, dbg);
  if (s.ok()) *r = std::make_unique<FaultDirectory>(std::move(*r), this, name);
  return s;
}

IOStatus FaultFileSystem::DeleteFile(const std::string& f, const IOOptions& o,
                                     IODebugContext* dbg) {
  IOStatus s = Check(kFsMeta, "delete", f);
  if (!s.ok()) return s;
  uint64_t size = 0;
  const bool sized = target()->GetFileSize(f, o, &size, dbg).ok();
  s = target()->DeleteFile(f, o, dbg);
  if (s.ok() && sized) Shrank(size);
  return s;
}

IOStatus FaultFileSystem::RenameFile(const std::string& from, const std::string& to,
                                     const IOOptions& o, IODebugContext* dbg) {
  IOStatus s = Check(kFsMeta, "rename", from);
  if (!s.ok()) return s;
  uint64_t replaced = 0;
  const bool sized = target()->GetFileSize(to, o, &replaced, dbg).ok();
  s = target()->RenameFile(from, to, o, dbg);
  if (s.ok() && sized) Shrank(replaced);
  return s;
}

IOStatus FaultFileSystem::LinkFile(const std::string& from, const std::string& to,
                                   const IOOptions& o, IODebugContext* dbg) {
  IOStatus s = Check(kFsMeta, "link", from);
  return s.ok() ? target()->LinkFile(from, to, o, dbg) : s;
}

IOStatus FaultFileSystem::Truncate(const std::string& f, size_t size, const IOOptions& o,
                                   IODebugContext* dbg) {
  IOStatus s = Check(kFsWrite, "truncate", f);
  return s.ok() ? target()->Truncate(f, size, o, dbg) : s;
}

IOStatus FaultFileSystem::CreateDirIfMissing(const std::string& d, const IOOptions& o,
                                             IODebugContext* dbg) {
  IOStatus s = Check(kFsMeta, "create directory", d);
  return s.ok() ? target()->CreateDirIfMissing(d, o, dbg) : s;
}

IOStatus FaultFileSystem::GetChildren(const std::string& dir, const IOOptions& o,
                                      std::vector<std::string>* r, IODebugContext* dbg) {
  IOStatus s = Check(kFsMeta, "list", dir);
  return s.ok() ? target()->GetChildren(dir, o, r, dbg) : s;
}

IOStatus FaultFileSystem::GetFreeSpace(const std::string& path, const IOOptions& o,
                                       uint64_t* free, IODebugContext* dbg) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (space_limit_ != 0) {
      *free = space_limit_ - std::min(space_limit_, space_used_);
      return IOStatus::OK();
    }
  }
  return target()->GetFreeSpace(path, o, free, dbg);
}

namespace {

class CappedSleepClock : public rocksdb::SystemClockWrapper {
 public:
  explicit CappedSleepClock(const std::shared_ptr<rocksdb::SystemClock>& target)
      : rocksdb::SystemClockWrapper(target) {}
  static const char* kClassName() { return "KvtierCappedSleepClock"; }
  const char* Name() const override { return kClassName(); }
  void SleepForMicroseconds(int micros) override {
    target_->SleepForMicroseconds(std::min(micros, 5000));
  }
};

class FaultEnvWrapper : public rocksdb::EnvWrapper {
 public:
  explicit FaultEnvWrapper(std::unique_ptr<rocksdb::Env> base) : rocksdb::EnvWrapper(std::move(base)) {
    system_clock_ = std::make_shared<CappedSleepClock>(system_clock_);
  }
  static const char* kClassName() { return "KvtierFaultEnv"; }
  const char* Name() const override { return kClassName(); }
  void SleepForMicroseconds(int micros) override {
    rocksdb::EnvWrapper::SleepForMicroseconds(std::min(micros, 5000));
  }
};

}  // namespace

std::shared_ptr<rocksdb::Env> FaultEnv(std::shared_ptr<rocksdb::FileSystem> fs) {
  return std::make_shared<FaultEnvWrapper>(rocksdb::NewCompositeEnv(fs));
}

}  // namespace kvtier::test
