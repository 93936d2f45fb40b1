// Opening and closing a RocksBlockStore: path checks, RocksDB options, the
// format check and loading the persisted counters.
#include <malloc.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <mutex>

#include <rocksdb/cache.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/table_properties_collectors.h>

#include "store/rocks_block_store.h"
#include "store/store_format.h"
#include "store/store_logger.h"

namespace kvtier {

namespace fmt = store_format;

namespace {

constexpr uint64_t kMiB = 1ull << 20;

// Memtable size of every column family: they all hold small entries.
constexpr uint64_t kFamilyMemtableBytes = 8 * kMiB;

// The record log's directory inside the store directory.
constexpr char kSegmentsDir[] = "segments";

// Segments of 1/16 of the budget (1-64 MiB): the collector's dead space
// allowance (two segments) stays small beside the budget, and a Put that
// collects a segment copies at most 64 MiB.
uint64_t SegmentBytes(uint64_t max_bytes) {
  if (max_bytes == 0) return 64 * kMiB;
  return std::clamp<uint64_t>(max_bytes / 16, kMiB, 64 * kMiB);
}

// RocksDB's diagnostics for a read-only open go to the caller's sink: a
// read-only inspector must not rotate the LOG file of a store that another
// process is writing.
class ForwardingLogger : public rocksdb::Logger {
 public:
  explicit ForwardingLogger(std::function<void(std::string_view)> sink)
      : rocksdb::Logger(rocksdb::InfoLogLevel::ERROR_LEVEL), sink_(std::move(sink)) {}

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    char buf[1024];
    vsnprintf(buf, sizeof(buf), format, ap);
    std::string line = std::string("rocksdb: ") + buf;
    if (sink_) {
      sink_(line);
    } else {
      std::cerr << "kvtier: " << line << "\n";
    }
  }

 private:
  std::function<void(std::string_view)> sink_;
};

// Record reads fill buffers of the record's size (64 KiB to a few MiB; a
// format-1 blob read allocates and frees one inside RocksDB, and the
// caller's decode buffers come and go). With glibc's defaults each such
// free trims the heap top (or munmaps), and the next read faults the pages
// in again:
// measured here, warm 1 MiB reads ran at 0.2-0.35 GB/s with the defaults
// and 4-8 GB/s with these thresholds. mallopt is process-wide, so it is
// done once, and skipped when the process tunes malloc itself
// (GLIBC_TUNABLES / MALLOC_*_ environment) or sets KVTIER_MALLOC_TUNING=0.
void TuneMallocForLargeReads() {
  static std::once_flag once;
  std::call_once(once, [] {
    const char* opt_out = std::getenv("KVTIER_MALLOC_TUNING");
    const char* tunables = std::getenv("GLIBC_TUNABLES");
    if ((opt_out != nullptr && std::string_view(opt_out) == "0") ||
        (tunables != nullptr && std::string_view(tunables).find("malloc") != std::string_view::npos) ||
        std::getenv("MALLOC_MMAP_THRESHOLD_") != nullptr ||
        std::getenv("MALLOC_TRIM_THRESHOLD_") != nullptr) {
      return;
    }
    mallopt(M_MMAP_THRESHOLD, static_cast<int>(32 * kMiB));  // glibc's maximum
    mallopt(M_TRIM_THRESHOLD, static_cast<int>(128 * kMiB));
  });
}

rocksdb::DBOptions DatabaseOptions(const StoreOptions& options) {
  rocksdb::DBOptions o;
  o.max_background_jobs = 2;
  // RocksDB opens every table file at DB::Open with up to this many threads
  // per column family (default 16: 80 short-lived threads for our 5
  // families). Our tables are few (records live in segments, opened
  // lazily), so 2 suffice; measured in the fault-injection sweep, whose
  // hundreds of opens spent most of their time creating and tearing down
  // those threads.
  o.max_file_opening_threads = 2;
  // Recovery from failures is ours: a failed write reopens the database
  // (store_recovery.cc). RocksDB's own resume loop for retryable I/O errors
  // is off: with it on, a Close() after a retryable WAL append error waited
  // forever for a recovery that never ran (RocksDB 7.8.3, seen in
  // tests/fault_injection_test.cpp), which would hang the cache's Close.
  o.max_bgerror_resume_count = 0;
  // Every family's writes share the WAL, and a family that fills its
  // memtable slowly pins old WAL files. This bound (one memtable's worth)
  // makes RocksDB flush them, so a store's files stay close to its budget:
  // the WAL holds locations and metadata (~300 bytes per record), the
  // record bytes are in segments.
  o.max_total_wal_size = kFamilyMemtableBytes;
  o.bytes_per_sync = kMiB;
  o.keep_log_file_num = 3;
  o.max_log_file_size = 8 * kMiB;
  if (options.read_only) o.info_log = std::make_shared<ForwardingLogger>(options.log);
  return o;
}

rocksdb::BlockBasedTableOptions TableOptions(const std::shared_ptr<rocksdb::Cache>& cache) {
  rocksdb::BlockBasedTableOptions t;
  t.block_cache = cache;
  t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  return t;
}

// Records: 20-byte locations in the record log (format 2). Format-1 stores
// hold records inline: for those, integrated BlobDB with blob GC (the budget
// deletes records all the time, and without GC a blob file stays on disk as
// long as one record in it lives), RocksDB compression off (records are
// zstd).
rocksdb::ColumnFamilyOptions RecordFamilyOptions(const std::shared_ptr<rocksdb::Cache>& cache) {
  rocksdb::ColumnFamilyOptions o;
  o.write_buffer_size = kFamilyMemtableBytes;
  o.compression = rocksdb::kNoCompression;
  o.bottommost_compression = rocksdb::kNoCompression;
  o.enable_blob_files = true;
  o.min_blob_size = 4096;
  o.blob_file_size = 256 * kMiB;
  o.blob_compression_type = rocksdb::kNoCompression;
  o.enable_blob_garbage_collection = true;
  o.blob_garbage_collection_age_cutoff = 0.25;
  o.blob_garbage_collection_force_threshold = 0.5;
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(TableOptions(cache)));
  return o;
}

// Metadata, indexes and the manifest: small keys and values. Eviction
// deletes from the head of `lru` like a queue; SST files that collect many
// tombstones are compacted early so scans do not wade through them.
rocksdb::ColumnFamilyOptions IndexFamilyOptions(const std::shared_ptr<rocksdb::Cache>& cache) {
  rocksdb::ColumnFamilyOptions o;
  o.write_buffer_size = kFamilyMemtableBytes;
  o.compression = rocksdb::kNoCompression;
  o.bottommost_compression = rocksdb::kNoCompression;
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(TableOptions(cache)));
  o.table_properties_collector_factories.push_back(
      rocksdb::NewCompactOnDeletionCollectorFactory(/*sliding_window_size=*/1024,
                                                    /*deletion_trigger=*/512));
  return o;
}

const std::vector<std::string>& OwnFamilies() {
  static const std::vector<std::string> names = {rocksdb::kDefaultColumnFamilyName,
                                                 fmt::kMetaFamily, fmt::kLruFamily,
                                                 fmt::kChildrenFamily, fmt::kSysFamily};
  return names;
}

bool Contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

Status OpenError(const std::string& dir, const rocksdb::Status& s) {
  const std::string msg = s.ToString();
  if (s.IsIOError() && Contains(msg, "lock hold by current process")) {
    return Status::Busy("store " + dir + " is already open in this process (RocksDB LOCK: " + msg +
                        "); share one BlockStore, or open it read-only");
  }
  if (s.IsIOError() && Contains(msg, "While lock file")) {
    return Status::Busy("store " + dir + " is held by another process (RocksDB LOCK: " + msg +
                        "); inspect it read-only (the kvtier CLI's read commands, or "
                        "StoreOptions::read_only) or share it through kvtierd");
  }
  if (s.IsCorruption()) return Status::Corruption("store " + dir + " is damaged: " + msg);
  return Status::IOError("cannot open store " + dir + ": " + msg);
}

// What is at `dir` before RocksDB sees it.
enum class PathState { kMissing, kEmptyDirectory, kDatabase };

// Written before a store is created and removed once its format key is
// durable: a creation killed in between (seen in tests/crash_test.cpp)
// leaves RocksDB's half-made files, or a database without all our column
// families, and this marker says they are ours to finish.
constexpr char kCreatingMarker[] = "KVTIER-CREATING";

bool HasCreatingMarker(const std::string& dir) {
  std::error_code ec;
  return std::filesystem::exists(std::filesystem::path(dir) / kCreatingMarker, ec);
}

Status WriteCreatingMarker(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / kCreatingMarker).string();
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return Status::IOError("cannot create " + path + ": " + std::strerror(errno));
  const bool ok = std::fputs("a kvtier store is being created here\n", f) >= 0;
  if (std::fclose(f) != 0 || !ok) return Status::IOError("cannot write " + path);
  return Status::OK();
}

// What RocksDB leaves in a directory when its creation of a database fails
// or is killed early. Without our marker only the first few count (what a
// failed open leaves); with it, also the files written before CURRENT.
bool IsCreationLeftover(const std::string& name, bool marked) {
  if (name == "LOCK" || name == "LOG" || name == "IDENTITY" || name.starts_with("LOG.old.")) return true;
  return marked && (name == kCreatingMarker || name.ends_with(".dbtmp") ||
                    name.starts_with("MANIFEST-") || name.starts_with("OPTIONS-"));
}

Status InspectPath(const std::string& dir, PathState* state) {
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT) {
      *state = PathState::kMissing;
      return Status::OK();
    }
    return Status::IOError("cannot access store path " + dir + ": " + std::strerror(err));
  }
  if (!S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument(dir + " is not a kvtier store (it is a file, not a directory)");
  }
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec), end;
  if (ec) return Status::IOError("cannot read store directory " + dir + ": " + ec.message());
  if (std::filesystem::exists(std::filesystem::path(dir) / "CURRENT", ec)) {
    *state = PathState::kDatabase;
    return Status::OK();
  }
  // Nothing, or only what a RocksDB creation that failed early leaves
  // behind: the directory counts as empty. Anything else is somebody
  // else's data.
  const bool marked = HasCreatingMarker(dir);
  for (; it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!IsCreationLeftover(name, marked)) {
      return Status::InvalidArgument(dir + " is not a kvtier store (it holds '" + name +
                                     "' and no RocksDB database)");
    }
  }
  if (ec) return Status::IOError("cannot read store directory " + dir + ": " + ec.message());
  *state = PathState::kEmptyDirectory;
  return Status::OK();
}

}  // namespace

RocksBlockStore::RocksBlockStore(std::string dir, StoreOptions options)
    : dir_(std::move(dir)), options_(std::move(options)) {
  write_options_.sync = options_.sync_writes;
}

RocksBlockStore::~RocksBlockStore() { CloseDatabase(); }

Status RocksBlockStore::Open(const std::string& dir, const StoreOptions& options,
                             std::unique_ptr<BlockStore>* store) {
  return Open(dir, options, nullptr, store);
}

Status RocksBlockStore::Open(const std::string& dir, const StoreOptions& options,
                             std::shared_ptr<rocksdb::Env> env,
                             std::unique_ptr<BlockStore>* store) {
  store->reset();
  if (dir.empty()) return Status::InvalidArgument("store path is empty");
  PathState state = PathState::kMissing;
  Status s = InspectPath(dir, &state);
  if (!s.ok()) return s;
  if (state != PathState::kDatabase) {
    const char* why = state == PathState::kMissing ? "" : " (the directory is empty)";
    if (options.read_only) {
      return Status::NotFound("no kvtier store at " + dir + why + "; a read-only open creates none");
    }
    if (!options.create_if_missing) {
      return Status::NotFound("no kvtier store at " + dir + why + " and create_if_missing is off");
    }
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return Status::IOError("cannot create store directory " + dir + ": " + ec.message());
  }
  TuneMallocForLargeReads();
  std::unique_ptr<RocksBlockStore> opened(new RocksBlockStore(dir, options));
  opened->env_ = std::move(env);
  const bool fresh = state != PathState::kDatabase;
  if (fresh && !options.read_only) {
    s = WriteCreatingMarker(dir);
    if (!s.ok()) return s;
  }
  s = opened->OpenDatabase(fresh);
  if (s.ok()) {
    std::lock_guard<std::mutex> lock(opened->mu_);
    s = opened->LoadState(fresh);
  }
  if (s.ok()) {
    // After the database: its lock keeps a second writer out of the log too.
    s = RecordLog::Open(
        (std::filesystem::path(dir) / kSegmentsDir).string(),
        opened->env_ != nullptr ? opened->env_->GetFileSystem() : rocksdb::FileSystem::Default(),
        options.read_only, SegmentBytes(options.max_bytes), &opened->log_);
  }
  if (!s.ok()) return s;  // ~RocksBlockStore closes what was opened
  if (!options.read_only && HasCreatingMarker(dir)) {
    // The format key is written (synced): the creation is complete.
    std::error_code ec;
    std::filesystem::remove(std::filesystem::path(dir) / kCreatingMarker, ec);
  }
  *store = std::move(opened);
  return Status::OK();
}

Status RocksBlockStore::OpenDatabase(bool fresh) {
  rocksdb::DBOptions db_options = DatabaseOptions(options_);
  if (env_ != nullptr) db_options.env = env_.get();
  if (!options_.read_only) {
    // Not RocksDB's own LOG writer: it aborts the process on a full disk.
    db_options.info_log = NewStoreLogger(dir_, db_options.max_log_file_size,
                                         static_cast<int>(db_options.keep_log_file_num));
    if (db_options.info_log == nullptr) db_options.info_log = std::make_shared<ForwardingLogger>(options_.log);
  }
  std::vector<std::string> names = OwnFamilies();
  bool create_families = fresh;
  if (!fresh) {
    names.clear();
    rocksdb::Status s = rocksdb::DB::ListColumnFamilies(db_options, dir_, &names);
    if (!s.ok()) return OpenError(dir_, s);
    for (const std::string& own : OwnFamilies()) {
      if (std::find(names.begin(), names.end(), own) != names.end()) continue;
      if (!HasCreatingMarker(dir_)) {
        return Status::InvalidArgument(dir_ + " is not a kvtier store (a RocksDB database without the '" +
                                       own + "' column family)");
      }
      if (options_.read_only) {
        return Status::NotFound("no kvtier store at " + dir_ +
                                " (its creation was interrupted); a read-only open creates none");
      }
      names = OwnFamilies();  // finish the creation
      create_families = true;
      break;
    }
  }
  auto cache = rocksdb::NewLRUCache(8 * kMiB);
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  for (const std::string& name : names) {
    rocksdb::ColumnFamilyOptions cf_options;
    if (name == rocksdb::kDefaultColumnFamilyName) {
      cf_options = RecordFamilyOptions(cache);
    } else if (std::find(OwnFamilies().begin(), OwnFamilies().end(), name) != OwnFamilies().end()) {
      cf_options = IndexFamilyOptions(cache);
    }
    families.emplace_back(name, cf_options);
  }
  db_options.create_if_missing = fresh;
  db_options.create_missing_column_families = create_families;

  rocksdb::DB* db = nullptr;
  rocksdb::Status s =
      options_.read_only
          ? rocksdb::DB::OpenForReadOnly(db_options, dir_, families, &handles_, &db)
          : rocksdb::DB::Open(db_options, dir_, families, &handles_, &db);
  if (!s.ok()) return OpenError(dir_, s);
  db_.reset(db);
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == rocksdb::kDefaultColumnFamilyName) cf_.records = handles_[i];
    if (names[i] == fmt::kMetaFamily) cf_.meta = handles_[i];
    if (names[i] == fmt::kLruFamily) cf_.lru = handles_[i];
    if (names[i] == fmt::kChildrenFamily) cf_.children = handles_[i];
    if (names[i] == fmt::kSysFamily) cf_.sys = handles_[i];
  }
  return Status::OK();
}

Status RocksBlockStore::LoadState(bool fresh) {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf_.sys, fmt::kFormatKey, &value);
  if (s.IsNotFound() && !fresh && !options_.read_only) {
    // A store whose creation was interrupted before its first batch has our
    // families and nothing in them: finish creating it.
    std::unique_ptr<rocksdb::Iterator> sys(db_->NewIterator(rocksdb::ReadOptions(), cf_.sys));
    std::unique_ptr<rocksdb::Iterator> records(db_->NewIterator(rocksdb::ReadOptions(), cf_.records));
    sys->SeekToFirst();
    records->SeekToFirst();
    fresh = !sys->Valid() && !records->Valid() && sys->status().ok() && records->status().ok();
  }
  if (fresh) {
    rocksdb::WriteBatch batch;
    batch.Put(cf_.sys, fmt::kFormatKey, fmt::EncodeFormatVersion(kStoreFormatVersion));
    batch.Put(cf_.sys, fmt::kCountersKey, fmt::EncodeCounters(state_.counters));
    rocksdb::WriteOptions sync;
    sync.sync = true;
    s = db_->Write(sync, &batch);
    if (!s.ok()) return FromRocks(s, "cannot create store " + dir_);
    Publish();
    return Status::OK();
  }
  if (s.IsNotFound()) {
    return Status::InvalidArgument(dir_ + " is not a kvtier store (a RocksDB database with no "
                                   "kvtier format version)");
  }
  if (!s.ok()) return FromRocks(s, "cannot read store " + dir_);
  uint32_t version = 0;
  if (!fmt::DecodeFormatVersion(value, &version)) {
    return Status::Corruption("store " + dir_ + " has a malformed format version (" +
                              std::to_string(value.size()) + " bytes)");
  }
  if (version != kStoreFormatVersion && version != kInlineRecordsFormatVersion) {
    return Status::NotSupported("store " + dir_ + " has format version " + std::to_string(version) +
                                "; this kvtier reads format versions " +
                                std::to_string(kInlineRecordsFormatVersion) + " and " +
                                std::to_string(kStoreFormatVersion));
  }
  format_version_ = version;
  if (version != kStoreFormatVersion && !options_.read_only) {
    // Format 1 records stay inline and readable; new ones go to segments,
    // which a format-1 reader would not find: mark the store as format 2.
    rocksdb::WriteOptions sync;
    sync.sync = true;
    s = db_->Put(sync, cf_.sys, fmt::kFormatKey, fmt::EncodeFormatVersion(kStoreFormatVersion));
    if (!s.ok()) return FromRocks(s, "cannot upgrade store " + dir_ + " to format version 2");
    format_version_ = kStoreFormatVersion;
  }

  s = db_->Get(rocksdb::ReadOptions(), cf_.sys, fmt::kCountersKey, &value);
  if (s.ok() && !fmt::DecodeCounters(value, &state_.counters)) {
    return Status::Corruption("store " + dir_ + " has malformed counters");
  }
  if (!s.ok() && !s.IsNotFound()) return FromRocks(s, "cannot read store " + dir_);

  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_.sys));
    for (it->Seek(fmt::kNamespacePrefix);
         it->Valid() && it->key().starts_with(fmt::kNamespacePrefix); it->Next()) {
      NamespaceEntry entry;
      if (!fmt::DecodeNamespaceEntry(it->value().ToStringView(), &entry)) {
        return Status::Corruption("store " + dir_ + " has a malformed manifest entry " +
                                  it->key().ToString());
      }
      state_.namespaces[entry.fingerprint] = std::move(entry);
    }
    if (!it->status().ok()) return FromRocks(it->status(), "cannot read store " + dir_);

    // Recency keeps increasing across restarts even if the counters key lags.
    std::unique_ptr<rocksdb::Iterator> lru(db_->NewIterator(rocksdb::ReadOptions(), cf_.lru));
    lru->SeekToLast();
    uint64_t seq;
    uint32_t depth;
    Hash128 key;
    if (lru->Valid() && fmt::ParseLruKey(lru->key().ToStringView(), &seq, &depth, &key)) {
      state_.counters.next_seq = std::max(state_.counters.next_seq, seq + 1);
    }
    if (!lru->status().ok()) return FromRocks(lru->status(), "cannot read store " + dir_);
  }
  Publish();
  return Status::OK();
}

void RocksBlockStore::CloseDatabase() {
  if (db_ == nullptr) return;
  if (log_ != nullptr && !options_.read_only) {
    // Record bytes before the WAL that names them.
    Status l = log_->Sync();
    if (!l.ok()) Log("syncing the record log of " + dir_ + " at close failed: " + l.ToString());
  }
  if (!options_.read_only && !write_failed_) {
    rocksdb::Status s = db_->FlushWAL(/*sync=*/true);
    if (!s.ok()) Log("syncing the WAL of " + dir_ + " at close failed: " + s.ToString());
  }
  for (rocksdb::ColumnFamilyHandle* handle : handles_) {
    rocksdb::Status s = db_->DestroyColumnFamilyHandle(handle);
    if (!s.ok()) Log("closing a column family of " + dir_ + " failed: " + s.ToString());
  }
  handles_.clear();
  cf_ = StoreFamilies{};
  rocksdb::Status s = db_->Close();
  if (!s.ok()) Log("closing " + dir_ + " failed: " + s.ToString());
  db_.reset();
}

}  // namespace kvtier
