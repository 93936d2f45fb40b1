// The C ABI (include/kvtier/kvtier.h) over kvtier::Cache. Every entry point
// catches every exception: nothing C++ crosses the boundary.
#include "kvtier/kvtier.h"

#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <span>
#include <string>
#include <vector>

#include "kvtier/cache.h"

using kvtier::Status;

struct kvtier_error {
  kvtier_code code;
  std::string message;
};

struct kvtier_cache {
  uint64_t magic;
  std::unique_ptr<kvtier::Cache> cache;
};

struct kvtier_lease {
  uint64_t magic;
  kvtier::Lease lease;
};

namespace {

constexpr uint64_t kCacheMagic = 0x6b76746965724361ull;  // "kvtierCa"
constexpr uint64_t kLeaseMagic = 0x6b76746965724c65ull;  // "kvtierLe"
constexpr uint64_t kDeadMagic = 0x6465616452656cull;         // "deadRel": a released lease
// The first (and so far only) version of each struct.
constexpr size_t kOptionsV1Size = sizeof(kvtier_options);
constexpr size_t kStatsMinSize = offsetof(kvtier_stats, lookups) + sizeof(uint64_t);

static_assert(sizeof(kvtier::Token) == sizeof(uint32_t));
static_assert(static_cast<int>(kvtier::Status::Code::kUnavailable) == KVTIER_UNAVAILABLE);

#ifdef KVTIER_CAPI_CHECK_LEASES
constexpr bool kCheckLeases = true;
#else
constexpr bool kCheckLeases = false;
#endif

// Released leases in checked builds: their shells are kept (magic set to
// kDeadMagic) so a later use is detected instead of reading freed memory.
// Bounded: the oldest shells are freed past kQuarantineMax.
constexpr size_t kQuarantineMax = 1 << 16;
std::mutex& QuarantineMutex() {
  static auto* mu = new std::mutex;
  return *mu;
}
std::deque<kvtier_lease*>& Quarantine() {
  static auto* q = new std::deque<kvtier_lease*>;
  return *q;
}

kvtier_code SetError(kvtier_error** err, kvtier_code code, const char* msg) {
  if (err != nullptr) {
    delete *err;
    *err = nullptr;
    try {
      *err = new kvtier_error{code, msg};
    } catch (...) {
      // Out of memory: only the code is reported.
    }
  }
  return code;
}

kvtier_code Report(const Status& s, kvtier_error** err) {
  if (s.ok()) return KVTIER_OK;
  return SetError(err, static_cast<kvtier_code>(s.code()), s.message().c_str());
}

// Runs `fn` (returning a Status) with every exception turned into
// KVTIER_INTERNAL.
template <class Fn>
kvtier_code Guard(kvtier_error** err, Fn&& fn) {
  try {
    return Report(fn(), err);
  } catch (const std::exception& e) {
    return SetError(err, KVTIER_INTERNAL, (std::string("unexpected exception: ") + e.what()).c_str());
  } catch (...) {
    return SetError(err, KVTIER_INTERNAL, "unexpected exception of unknown type");
  }
}

Status CheckCache(const kvtier_cache* cache) {
  if (cache == nullptr) return Status::InvalidArgument("cache is NULL");
  if (cache->magic != kCacheMagic) return Status::InvalidArgument("not a kvtier_cache handle");
  return Status::OK();
}

Status CheckLease(const kvtier_lease* lease) {
  if (lease == nullptr) return Status::InvalidArgument("lease is NULL");
  if (lease->magic == kDeadMagic) return Status::InvalidArgument("lease was already released");
  if (lease->magic != kLeaseMagic) return Status::InvalidArgument("not a kvtier_lease handle");
  return Status::OK();
}

std::string Str(const char* s) { return s == nullptr ? std::string() : std::string(s); }

// Copies the caller's options (struct_size bytes of them) over the defaults.
Status ReadOptions(const kvtier_options* in, kvtier_options* out) {
  if (in == nullptr) return Status::InvalidArgument("options is NULL");
  kvtier_options_init(out);
  const size_t n = in->struct_size;
  if (n < kOptionsV1Size) {
    return Status::InvalidArgument("options.struct_size is " + std::to_string(n) +
                                   ", at least " + std::to_string(kOptionsV1Size) +
                                   " expected (call kvtier_options_init)");
  }
  const auto* tail = reinterpret_cast<const unsigned char*>(in);
  for (size_t i = sizeof(kvtier_options); i < n; ++i) {
    if (tail[i] != 0) {
      return Status::NotSupported("options.struct_size is " + std::to_string(n) +
                                  " and sets fields this library (" +
                                  std::to_string(sizeof(kvtier_options)) +
                                  " bytes) does not know");
    }
  }
  std::memcpy(out, in, sizeof(kvtier_options));
  return Status::OK();
}

Status ToCacheOptions(const kvtier_options& o, kvtier::CacheOptions* c) {
  if (o.spill_policy > KVTIER_SPILL_AUTO) {
    return Status::InvalidArgument("spill_policy " + std::to_string(o.spill_policy) +
                                   " is not a kvtier_spill_policy");
  }
  if (o.spill_threads == 0) return Status::InvalidArgument("spill_threads must be at least 1");
  kvtier::BlockLayout& l = c->ns.layout;
  l.num_layers = o.num_layers;
  l.num_kv_heads = o.num_kv_heads;
  l.head_dim = o.head_dim;
  l.block_size = o.block_size;
  l.dtype = static_cast<kvtier::DType>(o.dtype);
  c->ns.model = Str(o.model);
  c->ns.revision = Str(o.revision);
  c->ns.tokenizer = Str(o.tokenizer);
  c->ns.salt = Str(o.salt);
  c->ns.tp_rank = o.tp_rank;
  c->ns.tp_size = o.tp_size;
  c->memory_bytes = o.memory_bytes;
  c->store = Str(o.store);
  c->spill_policy = static_cast<kvtier::SpillPolicy>(o.spill_policy);
  c->spill_threads = static_cast<int>(o.spill_threads);
  c->store_options.max_bytes = o.store_max_bytes;
  c->store_options.sync_writes = o.store_sync_writes != 0;
  c->store_options.read_only = o.store_read_only != 0;
  // Namespace::Validate (in Cache::Open) names a bad dtype or dimension.
  return Status::OK();
}

void FillStats(const kvtier::CacheStats& s, kvtier_stats* o) {
  o->lookups = s.lookups;
  o->lookup_blocks = s.lookup_blocks;
  o->memory_hits = s.memory_hits;
  o->disk_hits = s.disk_hits;
  o->misses = s.misses;
  o->lookups_with_hit = s.lookups_with_hit;
  o->inserts = s.inserts;
  o->insert_duplicates = s.insert_duplicates;
  o->insert_rejected = s.insert_rejected;
  o->evictions = s.evictions;
  o->spills = s.spills;
  o->promotions = s.promotions;
  o->bytes_written_raw = s.bytes_written_raw;
  o->bytes_written_stored = s.bytes_written_stored;
  o->bytes_read_raw = s.bytes_read_raw;
  o->bytes_read_stored = s.bytes_read_stored;
  o->corrupt_records = s.corrupt_records;
  o->store_errors = s.store_errors;
  o->spill_retries = s.spill_retries;
  o->spill_dropped = s.spill_dropped;
  o->queue_blocks = s.queue_blocks;
  o->queue_bytes = s.queue_bytes;
  o->resident_blocks = s.resident_blocks;
  o->pinned_blocks = s.pinned_blocks;
  o->memory_bytes = s.memory_bytes;
  o->memory_budget = s.memory_budget;
  o->memory_overhead_bytes = s.memory_overhead_bytes;
  o->disk_records = s.disk_records;
  o->disk_bytes = s.disk_bytes;
  o->disk_budget = s.disk_budget;
}

}  // namespace

extern "C" {

int kvtier_abi_version(void) { return KVTIER_ABI_VERSION; }

int kvtier_lease_checks_enabled(void) { return kCheckLeases ? 1 : 0; }

const char* kvtier_code_name(kvtier_code code) {
  switch (code) {
    case KVTIER_OK: return "OK";
    case KVTIER_NOT_FOUND: return "NotFound";
    case KVTIER_CORRUPTION: return "Corruption";
    case KVTIER_INVALID_ARGUMENT: return "InvalidArgument";
    case KVTIER_IO_ERROR: return "IOError";
    case KVTIER_BUSY: return "Busy";
    case KVTIER_FULL: return "Full";
    case KVTIER_NOT_SUPPORTED: return "NotSupported";
    case KVTIER_UNAVAILABLE: return "Unavailable";
    case KVTIER_INTERNAL: return "Internal";
  }
  return "Unknown";
}

kvtier_code kvtier_error_code(const kvtier_error* err) { return err ? err->code : KVTIER_OK; }

const char* kvtier_error_message(const kvtier_error* err) { return err ? err->message.c_str() : ""; }

void kvtier_error_free(kvtier_error* err) { delete err; }

void kvtier_options_init(kvtier_options* o) {
  if (o == nullptr) return;
  std::memset(o, 0, sizeof(*o));
  o->struct_size = sizeof(kvtier_options);
  o->block_size = 16;
  o->dtype = KVTIER_F16;
  o->tp_size = 1;
  o->memory_bytes = 1ull << 30;
  o->spill_policy = KVTIER_SPILL_AUTO;
  o->spill_threads = 1;
  o->store_max_bytes = 16ull << 30;
}

kvtier_code kvtier_open(const kvtier_options* options, kvtier_cache** cache, kvtier_error** err) {
  return Guard(err, [&]() -> Status {
    if (cache == nullptr) return Status::InvalidArgument("cache out-pointer is NULL");
    *cache = nullptr;
    kvtier_options o;
    Status s = ReadOptions(options, &o);
    if (!s.ok()) return s;
    kvtier::CacheOptions co;
    s = ToCacheOptions(o, &co);
    if (!s.ok()) return s;
    auto handle = std::make_unique<kvtier_cache>();
    handle->magic = kCacheMagic;
    s = kvtier::Cache::Open(co, &handle->cache);
    if (!s.ok()) return s;
    *cache = handle.release();
    return Status::OK();
  });
}

kvtier_code kvtier_close(kvtier_cache* cache, kvtier_error** err) {
  if (cache == nullptr) return KVTIER_OK;
  return Guard(err, [&]() -> Status {
    Status s = CheckCache(cache);
    if (!s.ok()) return s;
    std::unique_ptr<kvtier_cache> owned(cache);
    owned->magic = 0;
    return owned->cache->Close();
  });
}

size_t kvtier_block_size(const kvtier_cache* cache) {
  if (!CheckCache(cache).ok()) return 0;
  return cache->cache->layout().block_size;
}

size_t kvtier_block_bytes(const kvtier_cache* cache) {
  if (!CheckCache(cache).ok()) return 0;
  return cache->cache->layout().block_bytes();
}

kvtier_code kvtier_lookup(kvtier_cache* cache, const uint32_t* tokens, size_t num_tokens,
                          kvtier_lease** lease, kvtier_error** err) {
  return Guard(err, [&]() -> Status {
    if (lease == nullptr) return Status::InvalidArgument("lease out-pointer is NULL");
    *lease = nullptr;
    Status s = CheckCache(cache);
    if (!s.ok()) return s;
    if (tokens == nullptr && num_tokens != 0) {
      return Status::InvalidArgument("tokens is NULL but num_tokens is " + std::to_string(num_tokens));
    }
    auto handle = std::make_unique<kvtier_lease>();
    handle->lease = cache->cache->Lookup(std::span<const kvtier::Token>(tokens, num_tokens));
    handle->magic = kLeaseMagic;
    *lease = handle.release();
    return Status::OK();
  });
}

kvtier_code kvtier_insert_blocks(kvtier_cache* cache, const uint32_t* tokens, size_t num_tokens,
                                 size_t first_block, const kvtier_block* blocks,
                                 size_t num_blocks, kvtier_error** err) {
  return Guard(err, [&]() -> Status {
    Status s = CheckCache(cache);
    if (!s.ok()) return s;
    if (tokens == nullptr && num_tokens != 0) {
      return Status::InvalidArgument("tokens is NULL but num_tokens is " + std::to_string(num_tokens));
    }
    if (blocks == nullptr && num_blocks != 0) {
      return Status::InvalidArgument("blocks is NULL but num_blocks is " + std::to_string(num_blocks));
    }
    std::vector<std::span<const std::byte>> payloads(num_blocks);
    for (size_t j = 0; j < num_blocks; ++j) {
      if (blocks[j].data == nullptr && blocks[j].size != 0) {
        return Status::InvalidArgument("blocks[" + std::to_string(j) + "].data is NULL");
      }
      payloads[j] = {static_cast<const std::byte*>(blocks[j].data), blocks[j].size};
    }
    return cache->cache->InsertBlocks(std::span<const kvtier::Token>(tokens, num_tokens),
                                      first_block, payloads);
  });
}

kvtier_code kvtier_flush(kvtier_cache* cache, kvtier_error** err) {
  return Guard(err, [&]() -> Status {
    Status s = CheckCache(cache);
    return s.ok() ? cache->cache->Flush() : s;
  });
}

kvtier_code kvtier_clear(kvtier_cache* cache, kvtier_error** err) {
  return Guard(err, [&]() -> Status {
    Status s = CheckCache(cache);
    if (s.ok()) cache->cache->Clear();
    return s;
  });
}

kvtier_code kvtier_stats_get(kvtier_cache* cache, kvtier_stats* stats, kvtier_error** err) {
  return Guard(err, [&]() -> Status {
    Status s = CheckCache(cache);
    if (!s.ok()) return s;
    if (stats == nullptr) return Status::InvalidArgument("stats is NULL");
    const size_t n = stats->struct_size;
    if (n < kStatsMinSize) {
      return Status::InvalidArgument("stats.struct_size is " + std::to_string(n) + ", at least " +
                                     std::to_string(kStatsMinSize) + " expected");
    }
    kvtier_stats full{};
    FillStats(cache->cache->Stats(), &full);
    full.struct_size = stats->struct_size;
    std::memcpy(stats, &full, n < sizeof(full) ? n : sizeof(full));
    return Status::OK();
  });
}

kvtier_code kvtier_lease_info(const kvtier_lease* lease, size_t* matched_tokens,
                              size_t* num_blocks, size_t* blocks_from_disk, kvtier_error** err) {
  return Guard(err, [&]() -> Status {
    Status s = CheckLease(lease);
    if (!s.ok()) return s;
    if (matched_tokens) *matched_tokens = lease->lease.matched_tokens();
    if (num_blocks) *num_blocks = lease->lease.num_blocks();
    if (blocks_from_disk) *blocks_from_disk = lease->lease.blocks_from_disk();
    return Status::OK();
  });
}

kvtier_code kvtier_lease_block(const kvtier_lease* lease, size_t index, kvtier_block* block,
                               kvtier_error** err) {
  return Guard(err, [&]() -> Status {
    Status s = CheckLease(lease);
    if (!s.ok()) return s;
    if (block == nullptr) return Status::InvalidArgument("block out-pointer is NULL");
    if (index >= lease->lease.num_blocks()) {
      return Status::InvalidArgument("block index " + std::to_string(index) + " out of range: lease has " +
                                     std::to_string(lease->lease.num_blocks()) + " blocks");
    }
    std::span<const std::byte> b = lease->lease.block(index);
    block->data = b.data();
    block->size = b.size();
    return Status::OK();
  });
}

kvtier_code kvtier_lease_blocks(const kvtier_lease* lease, size_t first, kvtier_block* blocks,
                                size_t count, kvtier_error** err) {
  return Guard(err, [&]() -> Status {
    Status s = CheckLease(lease);
    if (!s.ok()) return s;
    if (blocks == nullptr && count != 0) {
      return Status::InvalidArgument("blocks is NULL but count is " + std::to_string(count));
    }
    const size_t n = lease->lease.num_blocks();
    if (first > n || count > n - first) {
      return Status::InvalidArgument("blocks [" + std::to_string(first) + ", " + std::to_string(first) +
                                     " + " + std::to_string(count) + ") out of range: lease has " +
                                     std::to_string(n) + " blocks");
    }
    for (size_t j = 0; j < count; ++j) {
      std::span<const std::byte> b = lease->lease.block(first + j);
      blocks[j].data = b.data();
      blocks[j].size = b.size();
    }
    return Status::OK();
  });
}

kvtier_code kvtier_lease_release(kvtier_lease* lease, kvtier_error** err) {
  if (lease == nullptr) return KVTIER_OK;
  return Guard(err, [&]() -> Status {
    Status s = CheckLease(lease);
    if (!s.ok()) return s;
    lease->lease.Release();
    if (!kCheckLeases) {
      delete lease;
      return Status::OK();
    }
    lease->magic = kDeadMagic;
    kvtier_lease* evicted = nullptr;
    {
      std::lock_guard<std::mutex> lock(QuarantineMutex());
      Quarantine().push_back(lease);
      if (Quarantine().size() > kQuarantineMax) {
        evicted = Quarantine().front();
        Quarantine().pop_front();
      }
    }
    delete evicted;
    return Status::OK();
  });
}

}  // extern "C"
