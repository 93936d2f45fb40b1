#include "replay.h"

#include <span>
#include <vector>

#include "bench_common.h"
#include "reference_lru.h"

namespace kvtier::bench {

namespace {

uint64_t PayloadKey(const Hash128& h) { return h.lo ^ (h.hi * 0x9E3779B97F4A7C15ull); }

}  // namespace

double ReplayFigures::hit_rate() const {
  return blocks_total ? static_cast<double>(blocks_hit_memory + blocks_hit_disk) / blocks_total
                      : 0;
}

nlohmann::json ReplayFigures::ToJson() const {
  return {{"requests", requests},
          {"requests_with_hit", requests_with_hit},
          {"blocks_total", blocks_total},
          {"blocks_hit_memory", blocks_hit_memory},
          {"blocks_hit_disk", blocks_hit_disk},
          {"blocks_inserted", blocks_inserted},
          {"blocks_rejected", blocks_rejected},
          {"hit_rate", hit_rate()},
          {"prefill_tokens_saved", prefill_tokens_saved},
          {"seconds", seconds},
          {"wall_seconds", wall_seconds},
          {"requests_per_second", seconds > 0 ? requests / seconds : 0}};
}

Status ReplayTrace(Cache* cache, const Trace& trace, const KvDataGenerator& generator,
                   ReplayFigures* out) {
  const BlockLayout& layout = cache->layout();
  const uint32_t bs = layout.block_size;
  const Hash128 seed = cache->namespace_fingerprint();
  std::vector<Hash128> hashes;
  std::vector<std::vector<std::byte>> buffers;
  std::vector<std::span<const std::byte>> payloads;
  const CacheStats before = cache->Stats();
  Stopwatch wall;
  double in_cache = 0;
  for (const Prompt& prompt : trace.requests) {
    const size_t full = prompt.size() / bs;
    ++out->requests;
    out->blocks_total += full;

    Stopwatch t;
    Lease lease = cache->Lookup(prompt);
    in_cache += t.Seconds();
    const size_t hit = lease.num_blocks();
    out->blocks_hit_disk += lease.blocks_from_disk();
    out->blocks_hit_memory += hit - lease.blocks_from_disk();
    out->prefill_tokens_saved += lease.matched_tokens();
    if (hit > 0) ++out->requests_with_hit;

    if (hit < full) {
      hashes.clear();
      PrefixHashes(seed, prompt, bs, &hashes);
      const size_t n = full - hit;
      if (buffers.size() < n) buffers.resize(n);
      payloads.clear();
      for (size_t i = 0; i < n; ++i) {
        buffers[i].resize(layout.block_bytes());
        generator.Fill(PayloadKey(hashes[hit + i]), buffers[i]);
        payloads.emplace_back(buffers[i].data(), buffers[i].size());
      }
      t.Reset();
      Status s = cache->InsertBlocks(prompt, hit, payloads);
      in_cache += t.Seconds();
      // Full (no room: every resident block pinned) is counted by the cache
      // and is no error for a server; anything else is.
      if (!s.ok() && !s.IsFull()) {
        return s.WithContext("insert of request " + std::to_string(out->requests));
      }
    }
    t.Reset();
    lease.Release();
    in_cache += t.Seconds();
  }
  const CacheStats after = cache->Stats();
  out->blocks_inserted += after.inserts - before.inserts;
  out->blocks_rejected += after.insert_rejected - before.insert_rejected;
  out->seconds = in_cache;
  out->wall_seconds = wall.Seconds();
  return Status::OK();
}

double ReferenceFigures::lru_hit_rate() const {
  return blocks_total ? static_cast<double>(lru_hits) / blocks_total : 0;
}

double ReferenceFigures::upper_bound_hit_rate() const {
  return blocks_total ? static_cast<double>(upper_bound_hits) / blocks_total : 0;
}

ReferenceFigures RunReferences(const Namespace& ns, const Trace& trace, uint64_t budget_blocks) {
  ReferenceFigures f;
  ChainEndLru lru(budget_blocks);
  TraceUpperBound upper;
  const Hash128 seed = ns.Fingerprint();
  std::vector<Hash128> hashes;
  for (const Prompt& prompt : trace.requests) {
    hashes.clear();
    PrefixHashes(seed, prompt, ns.layout.block_size, &hashes);
    f.blocks_total += hashes.size();
    f.lru_hits += lru.Request(hashes);
    f.upper_bound_hits += upper.Request(hashes);
  }
  f.distinct_blocks = upper.distinct_blocks();
  return f;
}

}  // namespace kvtier::bench
