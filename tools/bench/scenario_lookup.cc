// `lookup`: ns per matched block of an in-memory Lookup (hash + probe + pin
// + recency update, lease released) at 1M resident blocks, and of insert and
// insert-with-evict, measured with Google Benchmark; against the floor
// "XXH3-128 of the block's tokens + one probe of a bare hash map keyed by the
// same hashes". Also the memory tier's bookkeeping bytes per block.
#include <malloc.h>

#include <algorithm>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include <benchmark/benchmark.h>

#include "kvtier/cache.h"
#include "scenarios.h"

namespace kvtier::bench {

namespace {

constexpr size_t kBlocksPerPrompt = 64;

// Collects each benchmark's per-iteration seconds (median over repetitions).
class CaptureReporter : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.run_type != Run::RT_Iteration) continue;
      if (run.error_occurred) {
        errors_.push_back(run.benchmark_name() + ": " + run.error_message);
        continue;
      }
      samples_[run.run_name.function_name].push_back(run.real_accumulated_time /
                                                     static_cast<double>(run.iterations));
    }
  }
  double MedianSeconds(const std::string& name) const {
    auto it = samples_.find(name);
    if (it == samples_.end() || it->second.empty()) return 0;
    std::vector<double> v = it->second;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  }
  const std::vector<std::string>& errors() const { return errors_; }

 private:
  std::map<std::string, std::vector<double>> samples_;
  std::vector<std::string> errors_;
};

uint64_t HeapBytes() {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

}  // namespace

ScenarioResult RunLookupScenario(const BenchContext& ctx) {
  ScenarioResult r("lookup");
  const BlockLayout layout = MakeLayout(1, 1, 1, DType::kF16);  // 64-byte payloads
  const size_t prompts_n = ctx.Size(16384, 256);                 // x64 = 1M blocks
  const size_t blocks = prompts_n * kBlocksPerPrompt;
  const double min_time = ctx.quick ? 0.01 : 0.3;
  const int reps = ctx.quick ? 1 : 5;
  ctx.Log("lookup: building " + std::to_string(blocks) + " resident blocks");
  const auto prompts = DistinctPrompts(prompts_n, kBlocksPerPrompt, layout.block_size, 23);
  PayloadPool pool(layout, 64);
  r.set_generator(pool.generator().Describe() + "; prompts of " +
                  std::to_string(kBlocksPerPrompt) + " blocks, uniform random tokens");
  std::vector<std::span<const std::byte>> payloads(kBlocksPerPrompt);
  for (size_t j = 0; j < kBlocksPerPrompt; ++j) payloads[j] = pool.Get(j);

  CacheOptions o;
  o.ns = BenchNamespace(layout);
  o.memory_bytes = blocks * layout.block_bytes();
  const uint64_t heap_before = HeapBytes();
  std::unique_ptr<Cache> cache;
  CheckOk(Cache::Open(o, &cache), "open memory-only cache");
  Stopwatch w;
  for (const auto& p : prompts) CheckOk(cache->InsertBlocks(p, 0, payloads), "insert");
  const double insert_ns = w.Seconds() * 1e9 / blocks;
  const uint64_t heap_after = HeapBytes();
  const CacheStats filled = cache->Stats();
  const double heap_overhead =
      (static_cast<double>(heap_after) - static_cast<double>(heap_before) -
       static_cast<double>(filled.memory_bytes)) /
      std::max<uint64_t>(1, filled.resident_blocks);

  // The floor: the same hashes in a bare hash map.
  const Hash128 seed = o.ns.Fingerprint();
  std::unordered_map<Hash128, uint32_t, Hash128Hasher> bare;
  bare.reserve(blocks);
  std::vector<Hash128> hashes;
  for (const auto& p : prompts) {
    hashes.clear();
    PrefixHashes(seed, p, layout.block_size, &hashes);
    for (const Hash128& h : hashes) bare.emplace(h, static_cast<uint32_t>(bare.size()));
  }

  // Insert + evict: a cache of a quarter of the blocks, cycling through
  // twice as many prompts as fit, so every insert is new and evicts one.
  const size_t evict_prompts = std::max<size_t>(4, prompts_n / 8);
  CacheOptions eo = o;
  eo.memory_bytes = evict_prompts / 2 * kBlocksPerPrompt * layout.block_bytes();
  std::unique_ptr<Cache> evicting;
  CheckOk(Cache::Open(eo, &evicting), "open evicting cache");

  size_t next = 0, misses = 0;
  benchmark::RegisterBenchmark("floor_hash_probe", [&](benchmark::State& st) {
    std::vector<Hash128> hs;
    for (auto _ : st) {
      const auto& p = prompts[next++ % prompts_n];
      hs.clear();
      PrefixHashes(seed, p, layout.block_size, &hs);
      uint32_t sum = 0;
      for (const Hash128& h : hs) sum += bare.find(h)->second;
      benchmark::DoNotOptimize(sum);
    }
  })->MinTime(min_time)->Repetitions(reps);
  benchmark::RegisterBenchmark("hash_only", [&](benchmark::State& st) {
    std::vector<Hash128> hs;
    for (auto _ : st) {
      hs.clear();
      PrefixHashes(seed, prompts[next++ % prompts_n], layout.block_size, &hs);
      benchmark::DoNotOptimize(hs.data());
    }
  })->MinTime(min_time)->Repetitions(reps);
  benchmark::RegisterBenchmark("cache_lookup", [&](benchmark::State& st) {
    for (auto _ : st) {
      Lease lease = cache->Lookup(prompts[next++ % prompts_n]);
      if (lease.num_blocks() != kBlocksPerPrompt) ++misses;
      benchmark::DoNotOptimize(lease.block(0).data());
    }
  })->MinTime(min_time)->Repetitions(reps);
  benchmark::RegisterBenchmark("cache_insert_evict", [&](benchmark::State& st) {
    for (auto _ : st) {
      Status s = evicting->InsertBlocks(prompts[next++ % evict_prompts], 0, payloads);
      if (!s.ok()) st.SkipWithError(s.ToString().c_str());
    }
  })->MinTime(min_time)->Repetitions(reps);

  ctx.Log("lookup: running micro-benchmarks (Google Benchmark)");
  CaptureReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::ClearRegisteredBenchmarks();
  for (const auto& e : reporter.errors()) r.AddNote("benchmark error: " + e);

  const double per = 1e9 / kBlocksPerPrompt;
  const double floor_ns = reporter.MedianSeconds("floor_hash_probe") * per;
  const double hash_ns = reporter.MedianSeconds("hash_only") * per;
  const double lookup_ns = reporter.MedianSeconds("cache_lookup") * per;
  const double evict_ns = reporter.MedianSeconds("cache_insert_evict") * per;
  const CacheStats st = cache->Stats();
  // Part of the heap figure: the block's token ids, kept to verify every hit.
  const double token_bytes = static_cast<double>(layout.block_size * sizeof(Token));
  const CacheStats est = evicting->Stats();

  r.params() = {{"layout", layout.ToString()},
                {"resident_blocks", st.resident_blocks},
                {"blocks_per_lookup", kBlocksPerPrompt},
                {"min_time_s", min_time},
                {"repetitions_median_of", reps},
                {"evicting_cache_blocks", est.resident_blocks}};
  r.figures() = {{"lookup_ns_per_block", lookup_ns},
                 {"insert_ns_per_block", insert_ns},
                 {"insert_evict_ns_per_block", evict_ns},
                 {"evictions", est.evictions},
                 {"lookup_misses", misses},
                 {"overhead_bytes_per_block_reported",
                  st.resident_blocks ? double(st.memory_overhead_bytes) / st.resident_blocks : 0},
                 {"overhead_bytes_per_block_heap", heap_overhead},
                 {"overhead_bytes_per_block_heap_token_ids", token_bytes},
                 {"overhead_bytes_per_block_heap_without_token_ids", heap_overhead - token_bytes}};
  r.baselines() = {{"floor_hash_probe_ns_per_block", floor_ns},
                   {"xxh3_hash_ns_per_block", hash_ns},
                   {"bare_map_entries", bare.size()}};
  if (misses) r.AddNote(std::to_string(misses) + " lookups did not match every block");
  r.AddCheck("lookup", "lookup ns/block (hash+probe+pin+LRU)", lookup_ns,
             "XXH3-128 + bare hash map probe", floor_ns, Direction::kAtMost, 2.0);
  r.AddCheck("memory_overhead", "heap bytes/block beyond payload", heap_overhead,
             "budget of 128 bytes/block", 128, Direction::kAtMost, 1.0);
  r.AddNote("heap bytes/block = (malloc'd bytes after filling - before - payload bytes) / "
            "resident blocks, from mallinfo2; it includes the " +
            std::to_string(layout.block_size * sizeof(Token)) +
            " bytes of token ids each block keeps to verify hits (see "
            "overhead_bytes_per_block_heap_without_token_ids)");
  return r;
}

}  // namespace kvtier::bench
