// Cache, Lease, PrefillSession and CacheStats: the public face of CacheCore.
#include "kvtier/cache.h"

#include "cache/cache_core.h"

namespace kvtier {

double CacheStats::hit_rate() const {
  return lookup_blocks == 0 ? 0.0
                            : static_cast<double>(memory_hits + disk_hits) / static_cast<double>(lookup_blocks);
}

double CacheStats::compression_ratio() const {
  return bytes_written_stored == 0
             ? 0.0
             : static_cast<double>(bytes_written_raw) / static_cast<double>(bytes_written_stored);
}

Status Cache::Open(const CacheOptions& options, std::unique_ptr<Cache>* cache) {
  std::shared_ptr<CacheCore> core;
  Status s = CacheCore::Open(options, &core);
  if (!s.ok()) return s;
  cache->reset(new Cache(std::move(core)));
  return Status::OK();
}

Cache::Cache(std::shared_ptr<CacheCore> core) : core_(std::move(core)) {}

Cache::~Cache() {
  // Leases may keep the core alive; the store is closed now regardless.
  Status s = core_->Close();
  (void)s;  // CacheCore logs nothing here; Close's errors were counted
}

Lease Cache::Lookup(std::span<const Token> tokens) { return core_->Lookup(tokens); }

Status Cache::Insert(std::span<const Token> tokens, size_t block_index,
                     std::span<const std::byte> payload) {
  const std::span<const std::byte> one[1] = {payload};
  return core_->InsertBlocks(tokens, block_index, one);
}

Status Cache::InsertBlocks(std::span<const Token> tokens, size_t first_block,
                           std::span<const std::span<const std::byte>> payloads) {
  return core_->InsertBlocks(tokens, first_block, payloads);
}

PrefillSession Cache::Prepare(std::span<const Token> tokens) {
  PrefillSession session;
  session.cache_ = this;
  session.tokens_.assign(tokens.begin(), tokens.end());
  session.cached_ = Lookup(tokens);
  return session;
}

Status Cache::Flush() { return core_->Flush(); }
Status Cache::Close() { return core_->Close(); }
void Cache::Clear() { core_->Clear(); }
CacheStats Cache::Stats() const { return core_->Stats(); }
const BlockLayout& Cache::layout() const { return core_->options().ns.layout; }
const Namespace& Cache::ns() const { return core_->options().ns; }
Hash128 Cache::namespace_fingerprint() const { return core_->seed(); }
BlockStore* Cache::store() const { return core_->store(); }

Lease::Lease(Lease&& other) noexcept { *this = std::move(other); }

Lease& Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    Release();
    core_ = std::move(other.core_);
    blocks_ = std::move(other.blocks_);
    block_size_ = other.block_size_;
    from_disk_ = other.from_disk_;
    other.blocks_.clear();
    other.from_disk_ = 0;
  }
  return *this;
}

Lease::~Lease() { Release(); }

void Lease::Release() {
  if (core_ != nullptr && !blocks_.empty()) core_->Release(blocks_);
  blocks_.clear();
  from_disk_ = 0;
}

std::span<const std::byte> Lease::block(size_t i) const { return blocks_[i]->buffer.payload(); }

Hash128 Lease::block_hash(size_t i) const { return blocks_[i]->hash; }

Status PrefillSession::StoreBlocks(std::span<const std::span<const std::byte>> new_blocks) {
  if (cache_ == nullptr) return Status::InvalidArgument("prefill session is empty");
  const size_t bs = cache_->layout().block_size;
  const size_t first = uncached_start() / bs;
  const size_t full = tokens_.size() / bs;
  const size_t usable = first >= full ? 0 : std::min(new_blocks.size(), full - first);
  return cache_->InsertBlocks(tokens_, first, new_blocks.first(usable));
}

}  // namespace kvtier
