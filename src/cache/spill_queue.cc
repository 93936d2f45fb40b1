#include "cache/spill_queue.h"

#include <algorithm>
#include <string>
#include <string_view>

namespace kvtier::internal {

namespace {

// A worker takes up to this many blocks, or this many payload bytes, per
// batched store write.
constexpr size_t kMaxBatchBlocks = 32;
constexpr uint64_t kMaxBatchBytes = 16ull << 20;
// Recency refreshes waiting beyond this are dropped (they are hints).
constexpr size_t kMaxPendingTouches = 1u << 16;
// Backoff after consecutive failed writes: 10 ms, doubling, at most 250 ms.
constexpr std::chrono::milliseconds kFirstBackoff{10};
constexpr std::chrono::milliseconds kMaxBackoff{250};

std::chrono::milliseconds Backoff(uint64_t consecutive_failures) {
  const uint64_t shift = std::min<uint64_t>(consecutive_failures - 1, 5);
  return std::min(kFirstBackoff * (1 << shift), kMaxBackoff);
}

}  // namespace

SpillQueue::SpillQueue(Config config) : config_(std::move(config)) {
  const int n = config_.threads < 1 ? 1 : config_.threads;
  for (int i = 0; i < n; ++i) workers_.emplace_back([this] { WorkerLoop(); });
  writer_ = std::thread([this] { WriterLoop(); });
}

SpillQueue::~SpillQueue() { Stop(); }

bool SpillQueue::HasRoomLocked(uint64_t size) const {
  // Always admit into an empty queue so a block larger than the budget
  // cannot wait forever.
  return bytes_ == 0 || bytes_ + size <= config_.max_bytes;
}

void SpillQueue::ForgetLocked(const Hash128& hash) {
  auto it = pending_.find(hash);
  if (it == pending_.end()) return;
  bytes_ -= it->second.buffer.payload_bytes();
  pending_.erase(it);
}

void SpillQueue::Enqueue(std::vector<SpillJob> jobs) {
  uint64_t dropped = 0;
  {
    std::unique_lock<std::mutex> lock(mu_);
    for (SpillJob& job : jobs) {
      if (pending_.count(job.hash) != 0) continue;
      const uint64_t size = job.buffer.payload_bytes();
      while (!stopping_ && !HasRoomLocked(size)) {
        if (consecutive_failures_ >= kMaxStoreFailures && !order_.empty()) {
          // An outage (not a passing fault, which back-pressure rides out):
          // waiting would stall eviction, and every insert, for as long as
          // it lasts. Drop the oldest instead.
          ForgetLocked(order_.front());
          order_.pop_front();
          ++dropped;
          continue;
        }
        // Wake the workers first: they may not know of the jobs this call
        // queued already, and only they can make room.
        work_cv_.notify_all();
        room_cv_.wait(lock);
      }
      if (stopping_) break;
      if (pending_.count(job.hash) != 0) continue;  // queued while we waited
      bytes_ += size;
      job.failures_at_enqueue = store_failures_;
      order_.push_back(job.hash);
      pending_.emplace(job.hash, std::move(job));
    }
  }
  work_cv_.notify_all();
  if (dropped > 0) {
    room_cv_.notify_all();  // Drain() may be waiting for an empty queue
    config_.counters.dropped->fetch_add(dropped, std::memory_order_relaxed);
    if (config_.on_error) {
      config_.on_error(Status::IOError(
          "spill: the store is failing and the queue is full: dropped the " +
          std::to_string(dropped) + " oldest queued blocks (counted in spill_dropped)"));
    }
  }
}

void SpillQueue::EnqueueTouch(std::span<const Hash128> hashes) {
  if (hashes.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_ || touches_.size() >= kMaxPendingTouches) return;
  const bool was_empty = touches_.empty();
  touches_.insert(touches_.end(), hashes.begin(), hashes.end());
  // Pending touches already woke a worker, which takes them all at once.
  if (was_empty) work_cv_.notify_one();
}

bool SpillQueue::Find(const Hash128& hash, SpillJob* job) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = pending_.find(hash);
  if (it == pending_.end()) return false;
  *job = it->second;
  return true;
}

void SpillQueue::Drain() {
  std::unique_lock<std::mutex> lock(mu_);
  room_cv_.wait(lock, [&] {
    return pending_.empty() && touches_.empty() && batches_in_flight_ == 0;
  });
}

void SpillQueue::Stop() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (workers_.empty()) return;
    room_cv_.wait(lock, [&] {
      return pending_.empty() && touches_.empty() && batches_in_flight_ == 0;
    });
    stopping_ = true;
  }
  work_cv_.notify_all();
  room_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
  {
    std::lock_guard<std::mutex> lock(mu_);
    writer_stopping_ = true;
  }
  write_cv_.notify_all();
  writer_.join();
}

uint64_t SpillQueue::queued_blocks() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_.size();
}

uint64_t SpillQueue::queued_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

uint64_t SpillQueue::GiveUpLocked() {
  uint64_t given_up = 0;
  std::deque<Hash128> kept;
  for (const Hash128& hash : order_) {
    auto it = pending_.find(hash);
    if (it != pending_.end() &&
        store_failures_ - it->second.failures_at_enqueue >= kMaxStoreFailures) {
      ForgetLocked(hash);
      ++given_up;
    } else {
      kept.push_back(hash);
    }
  }
  order_.swap(kept);
  return given_up;
}

void SpillQueue::WorkerLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    // Wait for work. While the store is failing, queued blocks wait for the
    // backoff to pass, and recency refreshes are dropped.
    bool cooling = false;
    for (;;) {
      if (stopping_ && order_.empty() && touches_.empty()) return;
      cooling = consecutive_failures_ > 0 && Clock::now() < retry_at_;
      if (cooling) touches_.clear();
      if (!touches_.empty() || (!order_.empty() && !cooling)) break;
      if (cooling && !order_.empty()) {
        work_cv_.wait_until(lock, retry_at_);
      } else {
        if (cooling) room_cv_.notify_all();  // the dropped touches may end a Drain()
        work_cv_.wait(lock);
      }
    }
    std::unique_ptr<Batch> batch;
    if (free_batches_.empty()) {
      batch = std::make_unique<Batch>();
    } else {
      batch = std::move(free_batches_.back());
      free_batches_.pop_back();
    }
    uint64_t batch_bytes = 0;
    while (!cooling && !order_.empty() && batch->jobs.size() < kMaxBatchBlocks &&
           batch_bytes < kMaxBatchBytes) {
      const SpillJob& job = pending_.at(order_.front());
      order_.pop_front();
      batch_bytes += job.buffer.payload_bytes();
      batch->jobs.push_back(job);  // shares the buffer; pending_ keeps it servable
    }
    batch->touches.swap(touches_);
    ++batches_in_flight_;
    lock.unlock();

    EncodeBatch(batch.get());

    lock.lock();
    // One batch waits for the writer at a time: a worker that finds the
    // slot taken waits, so encoded records never pile up.
    write_cv_.wait(lock, [&] { return write_slot_ == nullptr; });
    write_slot_ = std::move(batch);
    write_cv_.notify_all();
  }
}

void SpillQueue::WriterLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    write_cv_.wait(lock, [&] { return write_slot_ != nullptr || writer_stopping_; });
    if (write_slot_ == nullptr) return;  // stopping, and nothing left
    std::unique_ptr<Batch> batch = std::move(write_slot_);
    write_cv_.notify_all();  // a worker may wait for the slot
    lock.unlock();

    const bool written = WriteBatch(batch.get());

    lock.lock();
    --batches_in_flight_;
    std::vector<SpillJob>& jobs = batch->jobs;
    const std::vector<Outcome>& outcomes = batch->outcomes;
    uint64_t failed = 0, unencodable = 0, given_up = 0, failures_before = consecutive_failures_;
    for (size_t i = jobs.size(); i-- > 0;) {  // requeued in their old order
      if (outcomes[i] == Outcome::kFailed) {
        order_.push_front(jobs[i].hash);
        ++failed;
      } else {
        if (outcomes[i] == Outcome::kUnencodable) ++unencodable;
        ForgetLocked(jobs[i].hash);
      }
    }
    if (!written) {
      ++store_failures_;
      ++consecutive_failures_;
      retry_at_ = Clock::now() + Backoff(consecutive_failures_);
      given_up = GiveUpLocked();
    } else if (!jobs.empty()) {
      consecutive_failures_ = 0;
    }
    const uint64_t failures_now = consecutive_failures_;
    batch->Clear();
    free_batches_.push_back(std::move(batch));
    lock.unlock();
    room_cv_.notify_all();
    work_cv_.notify_all();  // requeued jobs, or a worker waiting for the backoff

    if (failed > 0) config_.counters.retries->fetch_add(failed, std::memory_order_relaxed);
    if (unencodable + given_up > 0) {
      config_.counters.dropped->fetch_add(unencodable + given_up, std::memory_order_relaxed);
    }
    if (given_up > 0 && config_.on_error) {
      config_.on_error(Status::IOError(
          "spill: gave up " + std::to_string(given_up) + " queued blocks after " +
          std::to_string(kMaxStoreFailures) +
          " failed store writes (counted in spill_dropped; evicted ones are lost to the disk tier)"));
    }
    if (failures_before > 0 && failures_now == 0 && config_.on_recovered) {
      config_.on_recovered("spill: the store accepts writes again after " +
                           std::to_string(failures_before) + " failed writes");
    }
    lock.lock();
  }
}

void SpillQueue::Batch::Clear() {
  jobs.clear();
  touches.clear();
  views.clear();
  written_jobs.clear();
  stored.clear();
  outcomes.clear();
  raw = bytes = 0;
}

void SpillQueue::Fail(const Status& s) {
  config_.counters.store_errors->fetch_add(1, std::memory_order_relaxed);
  if (config_.on_error) config_.on_error(s);
}

void SpillQueue::EncodeBatch(Batch* batch) {
  std::vector<SpillJob>& jobs = batch->jobs;
  batch->outcomes.assign(jobs.size(), Outcome::kStored);
  if (jobs.empty()) return;
  std::vector<Hash128> keys;
  keys.reserve(jobs.size());
  for (const SpillJob& job : jobs) keys.push_back(job.hash);
  std::vector<uint8_t> present;
  Status s = config_.store->Exists(keys, &present);
  if (!s.ok()) {
    Fail(s.WithContext("spill: checking the store"));
    present.assign(keys.size(), 0);
  }
  std::vector<std::string>& records = batch->records;
  if (records.size() < jobs.size()) records.resize(jobs.size());
  for (size_t i = 0; i < jobs.size(); ++i) {
    if (present[i]) {
      batch->touches.push_back(jobs[i].hash);
      batch->stored.push_back(jobs[i].hash);
      continue;
    }
    RecordIdentity id{config_.layout, jobs[i].depth, config_.namespace_fp, jobs[i].parent,
                      jobs[i].buffer.tokens()};
    std::string& record = records[batch->written_jobs.size()];
    Status e = EncodeRecord(id, jobs[i].buffer.payload(), config_.codec, &record);
    if (!e.ok()) {
      batch->outcomes[i] = Outcome::kUnencodable;
      Fail(e.WithContext("spill: encoding block " + jobs[i].hash.ToHex()));
      continue;
    }
    batch->raw += jobs[i].buffer.payload_bytes();
    batch->bytes += record.size();
    batch->views.push_back(record);
    batch->written_jobs.push_back(i);
  }
}

bool SpillQueue::WriteBatch(Batch* batch) {
  BlockStore* store = config_.store;
  bool written = true;
  if (!batch->views.empty()) {
    Status p = store->Put(batch->views);
    if (p.ok()) {
      config_.counters.spills->fetch_add(batch->views.size(), std::memory_order_relaxed);
      config_.counters.bytes_written_raw->fetch_add(batch->raw, std::memory_order_relaxed);
      config_.counters.bytes_written_stored->fetch_add(batch->bytes, std::memory_order_relaxed);
      for (size_t i : batch->written_jobs) batch->stored.push_back(batch->jobs[i].hash);
    } else {
      written = false;
      Fail(p.WithContext("spill: writing " + std::to_string(batch->views.size()) +
                         " blocks (they stay queued for another try)"));
      for (size_t i : batch->written_jobs) batch->outcomes[i] = Outcome::kFailed;
    }
  }
  if (!batch->touches.empty()) {
    Status t = store->Touch(batch->touches);
    if (!t.ok()) Fail(t.WithContext("refreshing disk recency"));
  }
  if (!batch->stored.empty() && config_.on_stored) config_.on_stored(batch->stored);
  return written;
}

}  // namespace kvtier::internal
