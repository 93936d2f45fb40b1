// `replay`: block hit rate of a request trace through the cache, against the
// reference policies on the same trace (reference_lru.h).
#include <iostream>

#include "replay.h"
#include "scenarios.h"

namespace kvtier::bench {

namespace {

Status OpenCache(const BlockLayout& layout, uint64_t memory_bytes, const std::string& store,
                 std::unique_ptr<Cache>* cache) {
  CacheOptions o;
  o.ns = BenchNamespace(layout);
  o.memory_bytes = memory_bytes;
  o.store = store;
  o.store_options.max_bytes = 0;  // an ample disk: no limit
  return Cache::Open(o, cache);
}

TraceOptions ScenarioTrace(const BenchContext& ctx) {
  TraceOptions t;
  t.requests = static_cast<uint32_t>(ctx.Size(2000, 80));
  if (ctx.quick) {
    t.system_prompts = 4;
    t.documents = 16;
    t.live_conversations = 8;
  }
  return t;
}

}  // namespace

ScenarioResult RunReplayScenario(const BenchContext& ctx) {
  ScenarioResult r("replay");
  const BlockLayout layout = MakeLayout(1, 2, 64, DType::kBF16);  // 8 KiB blocks
  const TraceOptions topt = ScenarioTrace(ctx);
  ctx.Log("replay: generating trace (" + std::to_string(topt.requests) + " requests)");
  const Trace trace = GenerateTrace(topt);
  const Namespace ns = BenchNamespace(layout);

  // The budget: a quarter of the blocks the trace ever inserts (at most
  // 128 MiB, see kUnspilledBytesLimit).
  const ReferenceFigures upper = RunReferences(ns, trace, 1);
  const uint64_t budget =
      CapUnspilledBlocks(layout, std::max<uint64_t>(16, upper.distinct_blocks / 4));
  const ReferenceFigures ref = RunReferences(ns, trace, budget);
  KvDataGenerator gen(layout);
  r.set_generator("trace: " + topt.Describe() + "; payloads: " + gen.Describe());
  r.params() = {{"layout", layout.ToString()},
                {"block_bytes", layout.block_bytes()},
                {"requests", trace.requests.size()},
                {"trace_tokens", trace.total_tokens()},
                {"distinct_blocks", ref.distinct_blocks},
                {"memory_budget_blocks", budget}};

  ctx.Log("replay: memory-only cache, " + std::to_string(budget) + " blocks");
  std::unique_ptr<Cache> cache;
  CheckOk(OpenCache(layout, budget * layout.block_bytes(), "", &cache), "open memory-only cache");
  ReplayFigures mem;
  CheckOk(ReplayTrace(cache.get(), trace, gen, &mem), "replay (memory-only)");
  cache.reset();

  ctx.Log("replay: cache with the disk tier (no disk limit)");
  const std::string dir = ctx.FreshDir("replay-store");
  CheckOk(OpenCache(layout, budget * layout.block_bytes(), dir, &cache), "open cache with store");
  ReplayFigures disk;
  CheckOk(ReplayTrace(cache.get(), trace, gen, &disk), "replay (with store)");
  CheckOk(cache->Close(), "close cache");
  cache.reset();

  r.figures()["memory_only"] = mem.ToJson();
  r.figures()["with_store"] = disk.ToJson();
  r.baselines()["chain_end_lru_hit_rate"] = ref.lru_hit_rate();
  r.baselines()["upper_bound_hit_rate"] = ref.upper_bound_hit_rate();
  r.baselines()["blocks_total"] = ref.blocks_total;
  r.AddCheck("memory_hit_rate_vs_lru", "memory-only block hit rate", mem.hit_rate(),
             "chain-end-first LRU, same budget in blocks", ref.lru_hit_rate(),
             Direction::kAtLeast, 1.0);
  r.AddCheck("disk_hit_rate_vs_upper_bound", "hit rate with disk tier", disk.hit_rate(),
             "trace upper bound (every inserted block servable)", ref.upper_bound_hit_rate(),
             Direction::kAtLeast, 1.0);
  return r;
}

int RunReplayCommand(const ReplayCommand& cmd) {
  BlockLayout layout;
  Status s = ParseLayout(cmd.layout, cmd.block_size, cmd.dtype, &layout);
  if (!s.ok()) {
    std::cerr << "kvtier-bench replay: " << s.ToString() << "\n";
    return 2;
  }
  Trace trace;
  s = ReadTrace(cmd.trace, &trace);
  if (!s.ok()) {
    std::cerr << "kvtier-bench replay: " << s.ToString() << "\n";
    return 2;
  }
  uint64_t budget_blocks = cmd.memory_blocks;
  if (budget_blocks == 0) {
    budget_blocks = cmd.memory_bytes ? cmd.memory_bytes / layout.block_bytes()
                                     : kDefaultReplayMemoryBlocks;
  }
  const uint64_t memory_bytes =
      cmd.memory_bytes && !cmd.memory_blocks ? cmd.memory_bytes : budget_blocks * layout.block_bytes();

  std::unique_ptr<Cache> cache;
  s = OpenCache(layout, memory_bytes, cmd.store, &cache);
  if (!s.ok()) {
    std::cerr << "kvtier-bench replay: " << s.ToString() << "\n";
    return 1;
  }
  KvDataGenerator gen(layout);
  ReplayFigures f;
  s = ReplayTrace(cache.get(), trace, gen, &f);
  if (!s.ok()) {
    std::cerr << "kvtier-bench replay: " << s.ToString() << "\n";
    return 1;
  }
  const CacheStats stats = cache->Stats();
  Stopwatch close_watch;
  s = cache->Close();
  const double close_seconds = close_watch.Seconds();
  if (!s.ok()) {
    std::cerr << "kvtier-bench replay: close: " << s.ToString() << "\n";
    return 1;
  }
  const ReferenceFigures ref = RunReferences(BenchNamespace(layout), trace, budget_blocks);

  nlohmann::json j = f.ToJson();
  j["name"] = "replay";
  j["trace"] = cmd.trace;
  j["store"] = cmd.store;
  j["layout"] = layout.ToString();
  j["block_bytes"] = layout.block_bytes();
  j["memory_bytes"] = memory_bytes;
  j["memory_blocks"] = memory_bytes / layout.block_bytes();
  j["generator"] = gen.Describe();
  j["close_seconds"] = close_seconds;
  j["evictions"] = stats.evictions;
  j["spills"] = stats.spills;
  j["promotions"] = stats.promotions;
  j["disk_records"] = stats.disk_records;
  j["reference_lru_hit_rate"] = ref.lru_hit_rate();
  j["upper_bound_hit_rate"] = ref.upper_bound_hit_rate();
  j["distinct_blocks"] = ref.distinct_blocks;
  if (cmd.json) {
    std::cout << j.dump() << std::endl;
    return 0;
  }
  std::cout << "replay of " << cmd.trace << " (" << f.requests << " requests, " << f.blocks_total
            << " full blocks of " << layout.ToString() << ")\n"
            << "  store:                 " << (cmd.store.empty() ? "none (memory-only)" : cmd.store)
            << "\n"
            << "  memory budget:         " << memory_bytes / layout.block_bytes() << " blocks\n"
            << "  block hit rate:        " << FormatFigure(f.hit_rate()) << " (memory "
            << f.blocks_hit_memory << ", disk " << f.blocks_hit_disk << ")\n"
            << "  reference LRU:         " << FormatFigure(ref.lru_hit_rate())
            << " (chain ends first, same budget, memory-only)\n"
            << "  upper bound:           " << FormatFigure(ref.upper_bound_hit_rate()) << "\n"
            << "  prefill tokens saved:  " << f.prefill_tokens_saved << "\n"
            << "  seconds in cache:      " << FormatFigure(f.seconds) << " ("
            << FormatFigure(f.seconds > 0 ? f.requests / f.seconds : 0) << " requests/s)\n"
            << "  close (flush):         " << FormatFigure(close_seconds) << " s\n";
  return 0;
}

}  // namespace kvtier::bench
