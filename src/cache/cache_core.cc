#include "cache/cache_core.h"

#include <cstdio>
#include <mutex>
#include <string>

namespace kvtier {

using internal::BlockBuffer;
using internal::BlockNode;
using internal::EvictedBlock;
using internal::SpillJob;

namespace {

// Resolves SpillPolicy::kAuto: write-through for a store shared through
// kvtierd, so the other processes see new prefixes at once.
CacheOptions ResolvePolicy(CacheOptions options) {
  if (options.spill_policy == SpillPolicy::kAuto) {
    options.spill_policy = options.store.starts_with("unix:") ? SpillPolicy::kWriteThrough
                                                              : SpillPolicy::kSpillOnEvict;
  }
  return options;
}

std::vector<SpillJob> ToJobs(std::vector<EvictedBlock>&& blocks) {
  std::vector<SpillJob> jobs;
  jobs.reserve(blocks.size());
  for (EvictedBlock& b : blocks) jobs.push_back(SpillJob{b.hash, b.parent, b.depth, std::move(b.buffer)});
  return jobs;
}

}  // namespace

CacheCore::CacheCore(const CacheOptions& options)
    : options_(ResolvePolicy(options)),
      layout_(options.ns.layout),
      seed_(options.ns.Fingerprint()),
      start_(std::chrono::steady_clock::now()),
      memory_(options.memory_bytes) {}

CacheCore::~CacheCore() {
  Status s = Close();
  if (!s.ok()) Log("closing the cache: " + s.ToString());
}

Status CacheCore::Open(const CacheOptions& options, std::shared_ptr<CacheCore>* out) {
  return OpenWithStore(options, nullptr, out);
}

Status CacheCore::OpenWithStore(const CacheOptions& options, std::unique_ptr<BlockStore> store,
                                std::shared_ptr<CacheCore>* out) {
  Status s = options.ns.Validate();
  if (!s.ok()) return s;
  if (options.memory_bytes < options.ns.layout.block_bytes())
    return Status::InvalidArgument("memory budget of " + std::to_string(options.memory_bytes) +
                                   " bytes cannot hold one block of " +
                                   std::to_string(options.ns.layout.block_bytes()) + " bytes");
  if (options.promote_batch == 0) return Status::InvalidArgument("promote_batch must be positive");
  std::shared_ptr<CacheCore> core(new CacheCore(options));
  if (store != nullptr) {
    core->store_ = std::move(store);
  } else if (!options.store.empty()) {
    s = OpenBlockStore(options.store, options.store_options, &core->store_);
    if (!s.ok()) return s;
  }
  if (core->store_ != nullptr) {
    s = core->store_->RegisterNamespace(options.ns);
    if (!s.ok()) return s;
    internal::SpillQueue::Config config;
    config.store = core->store_.get();
    config.layout = core->layout_;
    config.namespace_fp = core->seed_;
    config.codec = options.codec;
    config.threads = options.spill_threads;
    config.max_bytes = options.spill_queue_bytes;
    Counters& c = core->counters_;
    config.counters = {&c.spills,       &c.bytes_written_raw, &c.bytes_written_stored,
                       &c.store_errors, &c.spill_retries,     &c.spill_dropped};
    CacheCore* raw = core.get();
    config.on_stored = [raw](std::span<const Hash128> hashes) {
      raw->memory_.MarkOnDisk(hashes, raw->NowMs());
    };
    config.on_error = [raw](const Status& e) { raw->LogSometimes(raw->spill_error_logs_, e.ToString()); };
    config.on_recovered = [raw](const std::string& message) { raw->Log(message); };
    core->spill_ = std::make_unique<internal::SpillQueue>(std::move(config));
  }
  *out = std::move(core);
  return Status::OK();
}

uint32_t CacheCore::NowMs() const {
  return static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now() - start_)
                                   .count());
}

void CacheCore::Log(const std::string& message) const {
  if (options_.log) {
    options_.log(message);
  } else {
    std::fprintf(stderr, "kvtier: %s\n", message.c_str());
  }
}

void CacheCore::LogSometimes(std::atomic<uint64_t>& counter, const std::string& message) const {
  const uint64_t n = counter.fetch_add(1, std::memory_order_relaxed) + 1;
  if (n <= 3 || (n & (n - 1)) == 0) Log(message + (n > 1 ? " (occurrence " + std::to_string(n) + ")" : ""));
}

void CacheCore::HandleEvicted(std::vector<EvictedBlock>&& evicted,
                              std::span<const Hash128> also_touch) {
  if (evicted.empty() && also_touch.empty()) return;
  // Called with store_mu_ held shared (or exclusive by Close).
  if (spill_ != nullptr) {
    // A block the store already holds (promoted from it, or spilled before)
    // only has its disk recency refreshed, as the spill worker did when it
    // found such a job's record present; its buffer is freed here instead
    // of waiting in the queue for an Exists probe. (If the store has since
    // dropped it — its budget, a trim — it is not written back.)
    std::vector<Hash128> on_disk(also_touch.begin(), also_touch.end());
    std::erase_if(evicted, [&](EvictedBlock& b) {
      if (b.on_disk) on_disk.push_back(b.hash);
      return b.on_disk;
    });
    if (!evicted.empty()) spill_->Enqueue(ToJobs(std::move(evicted)));
    if (!on_disk.empty()) spill_->EnqueueTouch(on_disk);
  }
  evicted.clear();  // the buffers are freed here, outside the memory lock
}

Lease CacheCore::Lookup(std::span<const Token> tokens) {
  Lease lease;
  lease.core_ = shared_from_this();
  lease.block_size_ = layout_.block_size;
  const size_t n = tokens.size() / layout_.block_size;
  counters_.lookups.fetch_add(1, std::memory_order_relaxed);
  counters_.lookup_blocks.fetch_add(n, std::memory_order_relaxed);
  if (n == 0) return lease;
  if (closed_.load(std::memory_order_acquire)) {
    counters_.misses.fetch_add(n, std::memory_order_relaxed);
    return lease;
  }
  std::vector<Hash128> hashes;
  PrefixHashes(seed_, tokens, layout_.block_size, &hashes);
  std::shared_lock<std::shared_mutex> lock(store_mu_);
  std::vector<Hash128> touches;
  lease.blocks_.reserve(n);
  size_t i = 0, memory_hits = 0, disk_hits = 0;
  for (;;) {
    const size_t j = memory_.PinRun(hashes, i, seed_, tokens, layout_.block_size, NowMs(),
                                    options_.disk_touch_interval_ms, &lease.blocks_, &touches);
    memory_hits += j - i;
    i = j;
    if (i == n || spill_ == nullptr) break;
    const size_t got = PromoteRun(hashes, i, tokens, &lease);
    if (got == 0) break;
    disk_hits += got;
    i += got;
  }
  if (spill_ != nullptr) spill_->EnqueueTouch(touches);
  lease.from_disk_ = disk_hits;
  counters_.memory_hits.fetch_add(memory_hits, std::memory_order_relaxed);
  counters_.disk_hits.fetch_add(disk_hits, std::memory_order_relaxed);
  counters_.misses.fetch_add(n - i, std::memory_order_relaxed);
  if (i > 0) counters_.lookups_with_hit.fetch_add(1, std::memory_order_relaxed);
  return lease;
}

Status CacheCore::VerifyAndDecode(const std::string& record, const Hash128& key,
                                  const Hash128& parent, std::span<const Token> block_tokens,
                                  BlockBuffer* buffer) {
  RecordHeader h;
  Status s = ParseRecordHeader(record, &h);
  if (!s.ok()) return s;
  if (h.Key() != key)
    return Status::Corruption("record stored under " + key.ToHex() + " belongs under " + h.Key().ToHex());
  if (h.namespace_fp != seed_)
    return Status::Corruption("record " + key.ToHex() + " belongs to namespace " + h.namespace_fp.ToHex());
  if (h.parent != parent)
    return Status::Corruption("record " + key.ToHex() + " has parent " + h.parent.ToHex() +
                              ", the lookup's prefix has " + parent.ToHex());
  if (!(h.layout == layout_))
    return Status::Corruption("record " + key.ToHex() + " has layout " + h.layout.ToString() +
                              ", the cache has " + layout_.ToString());
  if (h.tokens.size() != block_tokens.size() ||
      !std::equal(h.tokens.begin(), h.tokens.end(), block_tokens.begin()))
    return Status::Corruption("record " + key.ToHex() + " holds other token ids than the lookup");
  *buffer = BlockBuffer::Allocate(block_tokens, h.raw_size);
  return DecodeRecordInto(record, h, buffer->mutable_payload());
}

size_t CacheCore::PromoteRun(std::span<const Hash128> hashes, size_t from,
                             std::span<const Token> tokens, Lease* lease) {
  const uint32_t bs = layout_.block_size;
  const size_t run = memory_.MissingRun(hashes, from, options_.promote_batch);
  if (run == 0) return 0;  // resident but refused by PinRun (collision)
  std::vector<SpillJob> queued(run);
  std::vector<uint8_t> is_queued(run, 0);
  std::vector<Hash128> to_read;
  for (size_t k = 0; k < run; ++k) {
    is_queued[k] = spill_->Find(hashes[from + k], &queued[k]);
    if (!is_queued[k]) to_read.push_back(hashes[from + k]);
  }
  // Per-thread read buffers: the store reads into the caller's strings, so
  // reusing them spares an allocation (and, for large records, fresh pages)
  // per promoted block.
  thread_local std::vector<std::string> values;
  thread_local std::vector<Status> statuses;
  if (!to_read.empty()) store_->MultiGet(to_read, &values, &statuses);

  std::vector<Hash128> from_disk;
  // What the run evicts is handed on once, after it: one wake-up of a spill
  // worker per run instead of one per block.
  std::vector<EvictedBlock> evicted;
  size_t promoted = 0, read_index = 0;
  for (size_t k = 0; k < run; ++k) {
    const size_t idx = from + k;
    const Hash128& key = hashes[idx];
    const Hash128& parent = idx == 0 ? seed_ : hashes[idx - 1];
    const auto block_tokens = tokens.subspan(idx * bs, bs);
    BlockBuffer buffer;
    bool on_disk = false;
    if (is_queued[k]) {
      if (queued[k].parent != parent || !queued[k].buffer.TokensEqual(block_tokens)) break;
      buffer = queued[k].buffer;
    } else {
      const Status& st = statuses[read_index];
      const std::string& record = values[read_index];
      ++read_index;
      if (st.IsNotFound()) break;
      if (!st.ok()) {
        counters_.store_errors.fetch_add(1, std::memory_order_relaxed);
        LogSometimes(spill_error_logs_, st.WithContext("promote: reading the store").ToString());
        break;
      }
      Status v = VerifyAndDecode(record, key, parent, block_tokens, &buffer);
      if (!v.ok()) {
        const uint64_t n = counters_.corrupt_records.fetch_add(1, std::memory_order_relaxed) + 1;
        if (n <= 3 || (n & (n - 1)) == 0)
          Log("corrupt record " + key.ToHex() + " treated as a miss and deleted: " + v.ToString());
        const Hash128 bad[1] = {key};
        Status d = store_->Delete(bad);
        if (!d.ok()) counters_.store_errors.fetch_add(1, std::memory_order_relaxed);
        break;
      }
      on_disk = true;
      counters_.bytes_read_raw.fetch_add(buffer.payload_bytes(), std::memory_order_relaxed);
      counters_.bytes_read_stored.fetch_add(record.size(), std::memory_order_relaxed);
    }
    BlockNode* node = nullptr;
    bool inserted = false;
    Status s = memory_.Insert(key, parent, static_cast<uint32_t>(idx), std::move(buffer), on_disk,
                              /*pin=*/true, &node, &inserted, &evicted);
    if (!s.ok()) break;  // no room to pin it: the match ends here
    lease->blocks_.push_back(node);
    ++promoted;
    if (on_disk) {
      from_disk.push_back(key);
      counters_.promotions.fetch_add(1, std::memory_order_relaxed);
    }
  }
  if (!from_disk.empty()) memory_.MarkOnDisk(from_disk, NowMs());
  HandleEvicted(std::move(evicted), from_disk);
  return promoted;
}

Status CacheCore::InsertBlocks(std::span<const Token> tokens, size_t first_block,
                               std::span<const std::span<const std::byte>> payloads) {
  const uint32_t bs = layout_.block_size;
  const size_t full_blocks = tokens.size() / bs;
  if (first_block + payloads.size() > full_blocks)
    return Status::InvalidArgument(
        "tokens hold " + std::to_string(tokens.size()) + " ids (" + std::to_string(full_blocks) +
        " full blocks of " + std::to_string(bs) + "); block " +
        std::to_string(first_block + payloads.size() - 1) + " needs " +
        std::to_string((first_block + payloads.size()) * bs));
  for (size_t j = 0; j < payloads.size(); ++j) {
    if (payloads[j].size() != layout_.block_bytes())
      return Status::InvalidArgument("payload of block " + std::to_string(first_block + j) + " is " +
                                     std::to_string(payloads[j].size()) + " bytes, layout " +
                                     layout_.ToString() + " needs " +
                                     std::to_string(layout_.block_bytes()));
  }
  std::vector<Hash128> hashes;
  PrefixHashes(seed_, tokens.first((first_block + payloads.size()) * bs), bs, &hashes);
  std::shared_lock<std::shared_mutex> lock(store_mu_);
  if (closed_.load(std::memory_order_acquire)) return Status::InvalidArgument("cache is closed");
  for (size_t j = 0; j < payloads.size(); ++j) {
    const size_t idx = first_block + j;
    const Hash128& parent = idx == 0 ? seed_ : hashes[idx - 1];
    BlockBuffer buffer = BlockBuffer::Make(tokens.subspan(idx * bs, bs), payloads[j]);
    std::vector<EvictedBlock> evicted;
    bool inserted = false;
    Status s = memory_.Insert(hashes[idx], parent, static_cast<uint32_t>(idx),
                              buffer,  // shares the bytes: the spill job below may need them
                              /*on_disk=*/false, /*pin=*/false, nullptr, &inserted, &evicted);
    HandleEvicted(std::move(evicted));
    if (s.IsFull()) counters_.insert_rejected.fetch_add(1, std::memory_order_relaxed);
    if (!s.ok()) return s;
    if (!inserted) {
      counters_.insert_duplicates.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    counters_.inserts.fetch_add(1, std::memory_order_relaxed);
    if (options_.spill_policy == SpillPolicy::kWriteThrough && spill_ != nullptr) {
      std::vector<SpillJob> job;
      job.push_back(SpillJob{hashes[idx], parent, static_cast<uint32_t>(idx), std::move(buffer)});
      spill_->Enqueue(std::move(job));
    }
  }
  return Status::OK();
}

Status CacheCore::Flush() {
  std::shared_lock<std::shared_mutex> lock(store_mu_);
  if (closed_.load(std::memory_order_acquire)) return Status::InvalidArgument("cache is closed");
  return FlushLocked();
}

Status CacheCore::FlushLocked() {
  if (spill_ == nullptr) return Status::OK();
  const uint64_t errors_before = counters_.store_errors.load();
  spill_->Drain();
  std::vector<EvictedBlock> resident;
  memory_.CollectNotOnDisk(&resident);
  spill_->Enqueue(ToJobs(std::move(resident)));
  spill_->Drain();
  Status s = store_->Flush();
  if (!s.ok()) {
    counters_.store_errors.fetch_add(1, std::memory_order_relaxed);
    LogSometimes(spill_error_logs_, s.WithContext("flush: syncing the store").ToString());
    return s.WithContext("flush");
  }
  const uint64_t errors = counters_.store_errors.load() - errors_before;
  if (errors > 0)
    return Status::IOError("flush: " + std::to_string(errors) +
                           " store operations failed; the affected blocks stay in memory (see log)");
  return Status::OK();
}

Status CacheCore::Close() {
  std::unique_lock<std::shared_mutex> lock(store_mu_);
  if (closed_.exchange(true, std::memory_order_acq_rel)) return Status::OK();
  // Nothing else runs against the store now: flush, then close it.
  Status s = FlushLocked();
  if (spill_ != nullptr) spill_->Stop();
  spill_.reset();
  store_.reset();
  return s;
}

void CacheCore::Clear() {
  std::vector<EvictedBlock> evicted;
  memory_.EvictAll(&evicted);
  std::shared_lock<std::shared_mutex> lock(store_mu_);
  HandleEvicted(std::move(evicted));
}

CacheStats CacheCore::Stats() const {
  CacheStats s;
  const Counters& c = counters_;
  s.lookups = c.lookups.load();
  s.lookup_blocks = c.lookup_blocks.load();
  s.memory_hits = c.memory_hits.load();
  s.disk_hits = c.disk_hits.load();
  s.misses = c.misses.load();
  s.lookups_with_hit = c.lookups_with_hit.load();
  s.inserts = c.inserts.load();
  s.insert_duplicates = c.insert_duplicates.load();
  s.insert_rejected = c.insert_rejected.load();
  s.spills = c.spills.load();
  s.promotions = c.promotions.load();
  s.bytes_written_raw = c.bytes_written_raw.load();
  s.bytes_written_stored = c.bytes_written_stored.load();
  s.bytes_read_raw = c.bytes_read_raw.load();
  s.bytes_read_stored = c.bytes_read_stored.load();
  s.corrupt_records = c.corrupt_records.load();
  s.store_errors = c.store_errors.load();
  s.spill_retries = c.spill_retries.load();
  s.spill_dropped = c.spill_dropped.load();
  internal::MemoryTierStats m = memory_.Stats();
  s.evictions = m.evictions;
  s.resident_blocks = m.resident_blocks;
  s.pinned_blocks = m.pinned_blocks;
  s.memory_bytes = m.bytes;
  s.memory_budget = m.budget;
  s.memory_overhead_bytes = m.overhead_bytes;
  std::shared_lock<std::shared_mutex> lock(store_mu_);
  if (spill_ != nullptr) {
    s.queue_blocks = spill_->queued_blocks();
    s.queue_bytes = spill_->queued_bytes();
  }
  if (store_ != nullptr) {
    StoreStats st;
    if (store_->GetStats(&st).ok()) {
      s.disk_records = st.records;
      s.disk_bytes = st.stored_bytes;
      s.disk_budget = st.max_bytes;
    }
  }
  return s;
}

}  // namespace kvtier
