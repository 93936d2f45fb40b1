#include "cache/spill_queue.h"

#include <string>
#include <string_view>

namespace kvtier::internal {

namespace {

// A worker takes up to this many blocks, or this many payload bytes, per
// batched store write.
constexpr size_t kMaxBatchBlocks = 32;
constexpr uint64_t kMaxBatchBytes = 16ull << 20;

}  // namespace

SpillQueue::SpillQueue(Config config) : config_(std::move(config)) {
  const int n = config_.threads < 1 ? 1 : config_.threads;
  for (int i = 0; i < n; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

SpillQueue::~SpillQueue() { Stop(); }

void SpillQueue::Enqueue(std::vector<SpillJob> jobs) {
  std::unique_lock<std::mutex> lock(mu_);
  for (SpillJob& job : jobs) {
    if (pending_.count(job.hash) != 0) continue;
    const uint64_t size = job.buffer.payload_bytes();
    // Back-pressure: wait for room, but always admit into an empty queue so
    // a block larger than the budget cannot wait forever.
    room_cv_.wait(lock, [&] { return stopping_ || bytes_ == 0 || bytes_ + size <= config_.max_bytes; });
    if (stopping_) return;
    if (pending_.count(job.hash) != 0) continue;  // queued while we waited
    bytes_ += size;
    order_.push_back(job.hash);
    pending_.emplace(job.hash, std::move(job));
  }
  work_cv_.notify_all();
}

void SpillQueue::EnqueueTouch(std::span<const Hash128> hashes) {
  if (hashes.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return;
  touches_.insert(touches_.end(), hashes.begin(), hashes.end());
  work_cv_.notify_one();
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
  room_cv_.wait(lock, [&] { return pending_.empty() && touches_.empty() && busy_workers_ == 0; });
}

void SpillQueue::Stop() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (workers_.empty()) return;
    room_cv_.wait(lock, [&] { return pending_.empty() && touches_.empty() && busy_workers_ == 0; });
    stopping_ = true;
  }
  work_cv_.notify_all();
  room_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
}

uint64_t SpillQueue::queued_blocks() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_.size();
}

uint64_t SpillQueue::queued_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

void SpillQueue::WorkerLoop() {
  std::vector<SpillJob> jobs;
  std::vector<Hash128> touches;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stopping_ || !order_.empty() || !touches_.empty(); });
      if (stopping_ && order_.empty() && touches_.empty()) return;
      uint64_t batch_bytes = 0;
      while (!order_.empty() && jobs.size() < kMaxBatchBlocks && batch_bytes < kMaxBatchBytes) {
        const SpillJob& job = pending_.at(order_.front());
        order_.pop_front();
        batch_bytes += job.buffer.payload_bytes();
        jobs.push_back(job);  // shares the buffer; pending_ keeps it servable
      }
      touches.swap(touches_);
      ++busy_workers_;
    }
    ProcessBatch(jobs, touches);
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const SpillJob& job : jobs) {
        bytes_ -= job.buffer.payload_bytes();
        pending_.erase(job.hash);
      }
      --busy_workers_;
    }
    room_cv_.notify_all();
    jobs.clear();
    touches.clear();
  }
}

void SpillQueue::ProcessBatch(std::vector<SpillJob>& jobs, std::vector<Hash128>& touches) {
  BlockStore* store = config_.store;
  auto fail = [&](const Status& s) {
    config_.counters.store_errors->fetch_add(1, std::memory_order_relaxed);
    if (config_.on_error) config_.on_error(s);
  };
  std::vector<Hash128> stored;
  if (!jobs.empty()) {
    std::vector<Hash128> keys;
    keys.reserve(jobs.size());
    for (const SpillJob& job : jobs) keys.push_back(job.hash);
    std::vector<uint8_t> present;
    Status s = store->Exists(keys, &present);
    if (!s.ok()) {
      fail(s.WithContext("spill: checking the store"));
      present.assign(keys.size(), 0);
    }
    std::vector<std::string> records;
    std::vector<std::string_view> views;
    records.reserve(jobs.size());
    uint64_t raw = 0, written = 0;
    for (size_t i = 0; i < jobs.size(); ++i) {
      if (present[i]) {
        touches.push_back(jobs[i].hash);
        stored.push_back(jobs[i].hash);
        continue;
      }
      RecordIdentity id{config_.layout, jobs[i].depth, config_.namespace_fp, jobs[i].parent,
                        jobs[i].buffer.tokens()};
      records.emplace_back();
      Status e = EncodeRecord(id, jobs[i].buffer.payload(), config_.codec, &records.back());
      if (!e.ok()) {
        records.pop_back();
        fail(e.WithContext("spill: encoding block " + jobs[i].hash.ToHex()));
        continue;
      }
      raw += jobs[i].buffer.payload_bytes();
      written += records.back().size();
      stored.push_back(jobs[i].hash);
    }
    for (const std::string& r : records) views.push_back(r);
    if (!views.empty()) {
      Status p = store->Put(views);
      if (p.ok()) {
        config_.counters.spills->fetch_add(views.size(), std::memory_order_relaxed);
        config_.counters.bytes_written_raw->fetch_add(raw, std::memory_order_relaxed);
        config_.counters.bytes_written_stored->fetch_add(written, std::memory_order_relaxed);
      } else {
        fail(p.WithContext("spill: writing " + std::to_string(views.size()) + " blocks"));
        stored.clear();
        for (size_t i = 0; i < jobs.size(); ++i)
          if (present[i]) stored.push_back(jobs[i].hash);
      }
    }
  }
  if (!touches.empty()) {
    Status t = store->Touch(touches);
    if (!t.ok()) fail(t.WithContext("refreshing disk recency"));
  }
  if (!stored.empty() && config_.on_stored) config_.on_stored(stored);
}

}  // namespace kvtier::internal
