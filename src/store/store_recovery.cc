// RocksBlockStore: what happens after a failed write. See "Failures" in
// rocks_block_store.h for the contract.
//
// Why always reopen, and not just DB::Resume(): RocksDB refuses Resume()
// after the errors that matter most here (a failed WAL append stops the
// database until it is reopened), and even where Resume() works, a write
// that returned an error may be durable anyway (a sync that failed after
// the append): only replaying the WAL tells. A reopen does that and reloads
// the persisted counters, so the budget and the records never disagree.
// Reopens are rare (one per failure) and take a few milliseconds.
#include <algorithm>

#include "store/rocks_block_store.h"

namespace kvtier {

namespace {

constexpr std::chrono::milliseconds kFirstBackoff{10};
constexpr std::chrono::milliseconds kMaxBackoff{1000};

}  // namespace

bool RocksBlockStore::available() const {
  std::shared_lock<std::shared_mutex> lock(db_mu_);
  return db_ != nullptr;
}

void RocksBlockStore::LogFailure(const std::string& message) {
  const uint64_t n = failure_logs_.fetch_add(1, std::memory_order_relaxed) + 1;
  if (n <= 3 || (n & (n - 1)) == 0) {
    Log(message + (n > 1 ? " (failure log " + std::to_string(n) + ")" : ""));
  }
}

Status RocksBlockStore::AcquireDatabase(std::shared_lock<std::shared_mutex>* lock) {
  *lock = std::shared_lock<std::shared_mutex>(db_mu_);
  if (db_ != nullptr) return Status::OK();
  lock->unlock();
  {
    std::lock_guard<std::mutex> writer(mu_);
    Status s = EnsureOpenLocked();
    if (!s.ok()) return s;
  }
  lock->lock();
  if (db_ != nullptr) return Status::OK();
  return Status::IOError("store " + dir_ + " is closed after a failure: " + failure_);
}

Status RocksBlockStore::EnsureOpenLocked() {
  if (db_ != nullptr) return Status::OK();
  const auto now = std::chrono::steady_clock::now();
  if (now < next_reopen_) {
    const auto wait =
        std::chrono::duration_cast<std::chrono::milliseconds>(next_reopen_ - now).count();
    return Status::IOError("store " + dir_ + " is closed after a failure (" + failure_ +
                           "); the next reopen attempt is in " + std::to_string(wait) + " ms");
  }
  return ReopenLocked(failure_);
}

Status RocksBlockStore::AfterWriteFailure(const Status& s) {
  // Our own refusals (Full, InvalidArgument, NotSupported) leave RocksDB
  // untouched; I/O errors and damage reported by RocksDB may have stopped it.
  if (options_.read_only || !(s.IsIOError() || s.IsCorruption()) || db_ == nullptr) return s;
  write_failed_ = true;
  LogFailure("store " + dir_ + ": a write failed (" + s.ToString() +
             "); reopening the database to recover");
  Status r = ReopenLocked(s.ToString());
  (void)r;  // logged by ReopenLocked; the caller gets the original error
  return s;
}

Status RocksBlockStore::ReopenLocked(const std::string& cause) {
  std::unique_lock<std::shared_mutex> exclusive(db_mu_);
  CloseDatabase();
  state_ = WriterState{};
  lru_floor_.clear();
  Status s = OpenDatabase(/*fresh=*/false);
  if (s.ok()) s = LoadState(/*fresh=*/false);
  if (!s.ok()) {
    CloseDatabase();
    reopen_backoff_ = reopen_backoff_.count() == 0 ? kFirstBackoff
                                                   : std::min(2 * reopen_backoff_, kMaxBackoff);
    next_reopen_ = std::chrono::steady_clock::now() + reopen_backoff_;
    failure_ = cause;
    LogFailure("store " + dir_ + " is unavailable: reopening after a failure (" + cause +
               ") failed: " + s.ToString() + "; the disk tier is off until a reopen succeeds " +
               "(next attempt in " + std::to_string(reopen_backoff_.count()) + " ms)");
    return Status::IOError("store " + dir_ + " is closed after a failure (" + cause +
                           "); reopening failed: " + s.message());
  }
  write_failed_ = false;
  reopens_.fetch_add(1, std::memory_order_relaxed);
  if (!failure_.empty() || reopen_backoff_.count() != 0) {
    Log("store " + dir_ + " reopened after a failure; it holds " +
        std::to_string(state_.counters.records) + " records");
  }
  failure_.clear();
  reopen_backoff_ = std::chrono::milliseconds{0};
  next_reopen_ = {};
  return Status::OK();
}

}  // namespace kvtier
