// `restart`: time from Cache::Open to the first block served from disk, at
// two store sizes (no scan at open: it must not grow with the records),
// against a single one-block promote in an open cache; and the hit rate of a
// trace replayed after a restart against the same trace on a cold cache.
#include <algorithm>
#include <string>
#include <vector>

#include "baseline_stores.h"
#include "kvtier/cache.h"
#include "replay.h"
#include "scenarios.h"

namespace kvtier::bench {

namespace {

constexpr size_t kBlocksPerPrompt = 16;

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

CacheOptions Options(const BlockLayout& layout, const std::string& dir, uint64_t blocks) {
  CacheOptions o;
  o.ns = BenchNamespace(layout);
  o.memory_bytes = blocks * layout.block_bytes();
  o.store = dir;
  o.store_options.max_bytes = 0;
  return o;
}

struct OpenFigures {
  uint64_t records = 0;
  double single_promote_s = 0;     // median, one block, cache already open
  double open_s = 0;               // median Cache::Open
  double open_to_first_hit_s = 0;  // median Open + first one-block Lookup
  double first_hit_s = 0;          // median first one-block Lookup after Open
  double rocksdb_open_get_s = 0;   // median plain RocksDB open + one Get, same records
};

// The floor of any RocksDB-backed store: open a plain RocksDB directory
// holding the same number of raw payloads (rocksdb_raw baseline) and Get one.
double RocksOpenToFirstGet(const BenchContext& ctx, const BlockLayout& layout,
                           const std::vector<std::vector<Token>>& prompts, const PayloadPool& pool,
                           uint64_t records, int samples) {
  const std::string dir = ctx.FreshDir("restart-rocks-" + std::to_string(records));
  const Namespace ns = BenchNamespace(layout);
  std::vector<Hash128> first;
  {
    std::unique_ptr<BaselineStore> store;
    CheckOk(OpenRocksRawStore(dir, &store), "open RocksDB baseline");
    std::vector<std::span<const std::byte>> payloads(kBlocksPerPrompt);
    for (size_t p = 0; p < prompts.size(); ++p) {
      std::vector<Hash128> h;
      PrefixHashes(ns.Fingerprint(), prompts[p], layout.block_size, &h);
      for (size_t j = 0; j < kBlocksPerPrompt; ++j) payloads[j] = pool.Get(p * kBlocksPerPrompt + j);
      CheckOk(store->Put(h, payloads), "RocksDB baseline put");
      first.push_back(h[0]);
    }
    CheckOk(store->Sync(), "RocksDB baseline sync");
  }
  std::vector<double> t;
  std::vector<std::byte> out(layout.block_bytes());
  for (int i = 0; i < samples; ++i) {
    Stopwatch w;
    std::unique_ptr<BaselineStore> store;
    CheckOk(OpenRocksRawStore(dir, &store), "reopen RocksDB baseline");
    CheckOk(store->Get(first[(i * 7 + 3) % first.size()], out), "RocksDB baseline get");
    t.push_back(w.Seconds());
  }
  return Median(t);
}

// Fills a store with `records` blocks, then times promotes and reopens.
OpenFigures MeasureOpen(const BenchContext& ctx, const BlockLayout& layout, uint64_t records,
                        int samples) {
  OpenFigures f;
  const size_t prompts_n = (records + kBlocksPerPrompt - 1) / kBlocksPerPrompt;
  f.records = prompts_n * kBlocksPerPrompt;
  const std::string dir = ctx.FreshDir("restart-" + std::to_string(records));
  const auto prompts = DistinctPrompts(prompts_n, kBlocksPerPrompt, layout.block_size, 17);
  PayloadPool pool(layout, 256);
  {
    std::unique_ptr<Cache> cache;
    CheckOk(Cache::Open(Options(layout, dir, CapUnspilledBlocks(layout, f.records)), &cache),
            "open cache (fill)");
    std::vector<std::span<const std::byte>> payloads(kBlocksPerPrompt);
    for (size_t p = 0; p < prompts_n; ++p) {
      for (size_t j = 0; j < kBlocksPerPrompt; ++j) {
        payloads[j] = pool.Get(p * kBlocksPerPrompt + j);
      }
      CheckOk(cache->InsertBlocks(prompts[p], 0, payloads), "insert (fill)");
    }
    CheckOk(cache->Close(), "close (fill)");
  }
  auto first_block = [&](size_t p) {
    return std::span<const Token>(prompts[p % prompts_n]).first(layout.block_size);
  };
  size_t next = 0;
  auto expect_disk = [&](const Lease& lease, const char* what) {
    if (lease.blocks_from_disk() != 1) {
      CheckOk(Status::NotFound(std::string(what) + ": block not served from disk"), "restart");
    }
  };
  std::vector<double> promote, open, first_hit, after_open;
  {
    std::unique_ptr<Cache> cache;
    CheckOk(Cache::Open(Options(layout, dir, 64), &cache), "open cache");
    for (int i = 0; i < samples * 4; ++i) {
      Stopwatch w;
      Lease lease = cache->Lookup(first_block(next++));
      promote.push_back(w.Seconds());
      expect_disk(lease, "single promote");
    }
    CheckOk(cache->Close(), "close");
  }
  for (int i = 0; i < samples; ++i) {
    std::unique_ptr<Cache> cache;
    Stopwatch w;
    CheckOk(Cache::Open(Options(layout, dir, 64), &cache), "reopen cache");
    const double opened = w.Seconds();
    Lease lease = cache->Lookup(first_block(next++));
    const double total = w.Seconds();
    first_hit.push_back(total);
    open.push_back(opened);
    after_open.push_back(total - opened);
    expect_disk(lease, "first hit after open");
    lease.Release();
    CheckOk(cache->Close(), "close");
  }
  f.single_promote_s = Median(promote);
  f.open_s = Median(open);
  f.open_to_first_hit_s = Median(first_hit);
  f.first_hit_s = Median(after_open);
  f.rocksdb_open_get_s = RocksOpenToFirstGet(ctx, layout, prompts, pool, f.records, samples);
  return f;
}

}  // namespace

ScenarioResult RunRestartScenario(const BenchContext& ctx) {
  ScenarioResult r("restart");
  const BlockLayout layout = MakeLayout(1, 1, 32, DType::kF16);  // 2 KiB blocks
  const int samples = ctx.quick ? 3 : 7;
  const std::vector<uint64_t> sizes = {ctx.Size(10000, 500), ctx.Size(100000, 2000)};
  r.set_generator(KvDataGenerator(layout).Describe());
  r.params() = {{"layout", layout.ToString()},
                {"block_bytes", layout.block_bytes()},
                {"samples_median_of", samples},
                {"page_cache", "warm (store just written)"}};
  std::vector<OpenFigures> measured;
  for (uint64_t n : sizes) {
    ctx.Log("restart: store with " + std::to_string(n) + " records");
    const OpenFigures f = MeasureOpen(ctx, layout, n, samples);
    measured.push_back(f);
    const std::string k = std::to_string(f.records);
    r.figures()["open_ms_" + k] = f.open_s * 1e3;
    r.figures()["first_disk_hit_after_open_ms_" + k] = f.first_hit_s * 1e3;
    r.figures()["open_to_first_disk_hit_ms_" + k] = f.open_to_first_hit_s * 1e3;
    r.baselines()["single_promote_ms_" + k] = f.single_promote_s * 1e3;
    r.baselines()["rocksdb_raw_open_to_first_get_ms_" + k] = f.rocksdb_open_get_s * 1e3;
    r.AddCheck("open_to_first_hit_" + k, "Open + first disk hit ms, " + k + " records",
               f.open_to_first_hit_s * 1e3, "one-block promote ms, cache open",
               f.single_promote_s * 1e3, Direction::kAtMost, 10.0);
    r.AddCheck("first_hit_after_open_" + k, "first disk hit after Open ms, " + k + " records",
               f.first_hit_s * 1e3, "one-block promote ms, cache open", f.single_promote_s * 1e3,
               Direction::kAtMost, 10.0);
  }
  if (measured.size() == 2) {
    r.AddCheck("open_no_scan", "Open + first disk hit ms, " + std::to_string(measured[1].records) +
                                   " records",
               measured[1].open_to_first_hit_s * 1e3,
               "the same, " + std::to_string(measured[0].records) + " records",
               measured[0].open_to_first_hit_s * 1e3, Direction::kAtMost, 1.5);
  }

  // Hit rate of a trace after a restart against the same trace cold.
  const BlockLayout tl = MakeLayout(1, 8, 64, DType::kBF16);
  TraceOptions topt;
  topt.requests = static_cast<uint32_t>(ctx.Size(300, 40));
  const Trace trace = GenerateTrace(topt);
  const ReferenceFigures ref = RunReferences(BenchNamespace(tl), trace, 1);
  const uint64_t budget =
      CapUnspilledBlocks(tl, std::max<uint64_t>(16, ref.distinct_blocks / 4));
  const std::string dir = ctx.FreshDir("restart-trace");
  KvDataGenerator gen(tl);
  ReplayFigures cold, warm;
  ctx.Log("restart: trace of " + std::to_string(topt.requests) + " requests, cold then warm");
  for (ReplayFigures* f : {&cold, &warm}) {
    std::unique_ptr<Cache> cache;
    CheckOk(Cache::Open(Options(tl, dir, budget), &cache), "open cache (trace)");
    CheckOk(ReplayTrace(cache.get(), trace, gen, f), "replay");
    CheckOk(cache->Close(), "close (trace)");
  }
  r.params()["trace"] = topt.Describe();
  r.params()["trace_layout"] = tl.ToString();
  r.params()["trace_memory_budget_blocks"] = budget;
  r.figures()["trace_after_restart"] = warm.ToJson();
  r.baselines()["trace_cold"] = cold.ToJson();
  r.AddCheck("trace_hit_rate_after_restart", "trace hit rate after restart", warm.hit_rate(),
             "same trace, cold cache", cold.hit_rate(), Direction::kAtLeast, 1.0);
  r.AddNote("after a clean restart every block the first run inserted is on disk: the warm "
            "hit rate should be 1.0");
  return r;
}

}  // namespace kvtier::bench
