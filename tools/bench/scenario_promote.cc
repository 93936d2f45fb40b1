// `promote`: MB/s of raw block bytes a lookup serves from the store into
// memory (batched read, verify, decode), page cache warm, against the
// codec's decode alone on the same records.
#include <string>
#include <vector>

#include "codec_floor.h"
#include "kvtier/cache.h"
#include "kvtier/record.h"
#include "scenarios.h"

namespace kvtier::bench {

namespace {

constexpr size_t kBlocksPerPrompt = 16;

// `memory_blocks`: room for every promoted block when measuring; a few when
// filling, so that blocks spill as they are evicted.
CacheOptions PromoteOptions(const BlockLayout& layout, const std::string& dir,
                            size_t memory_blocks) {
  CacheOptions o;
  o.ns = BenchNamespace(layout);
  o.memory_bytes = memory_blocks * layout.block_bytes();
  o.store = dir;
  o.store_options.max_bytes = 0;
  return o;
}

}  // namespace

ScenarioResult RunPromoteScenario(const BenchContext& ctx) {
  ScenarioResult r("promote");
  const BlockLayout layout = MakeLayout(4, 8, 128, DType::kBF16);  // 256 KiB blocks
  const size_t prompts_n = ctx.Size(128, 4);
  const size_t blocks = prompts_n * kBlocksPerPrompt;
  const size_t bb = layout.block_bytes();
  const double raw = static_cast<double>(blocks) * bb;
  const int rounds = ctx.quick ? 1 : 3;
  ctx.Log("promote: " + std::to_string(blocks) + " blocks of " + std::to_string(bb >> 10) +
          " KiB");
  PayloadPool pool(layout, 64);
  const auto prompts = DistinctPrompts(prompts_n, kBlocksPerPrompt, layout.block_size, 13);
  r.set_generator(pool.generator().Describe());
  const std::string dir = ctx.FreshDir("promote");

  // Fill the store: insert everything, Close() writes it all.
  {
    std::unique_ptr<Cache> cache;
    CheckOk(Cache::Open(PromoteOptions(layout, dir, 4 * kBlocksPerPrompt), &cache),
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

  std::unique_ptr<Cache> cache;
  CheckOk(Cache::Open(PromoteOptions(layout, dir, blocks + kBlocksPerPrompt), &cache),
          "open cache (promote)");
  // The same records, read through the store, for the decode-alone baseline.
  const Namespace ns = BenchNamespace(layout);
  std::vector<Hash128> keys;
  for (const auto& p : prompts) PrefixHashes(ns.Fingerprint(), p, layout.block_size, &keys);
  std::vector<std::string> records;
  std::vector<Status> statuses;
  cache->store()->MultiGet(keys, &records, &statuses);
  double stored = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    CheckOk(statuses[i], "read record " + keys[i].ToHex());
    stored += static_cast<double>(records[i].size());
  }

  double promote_mb_s = 0, decode_mb_s = 0, zstd_mb_s = 0;
  double promote_cpu = 0, decode_cpu = 0;  // CPU seconds of the best rounds
  uint64_t served_from_disk = 0, expected = 0;
  CacheStats stats;
  std::vector<std::byte> out(bb);
  ZstdFloor zstd(1, false, layout.element_size());
  std::vector<std::string> frames(pool.size());
  for (size_t i = 0; i < pool.size(); ++i) zstd.Compress(pool.Get(i), &frames[i]);
  // Round 0 warms the page cache and is not counted.
  for (int round = 0; round <= rounds; ++round) {
    // A fresh cache on the same store each round, so that every lookup
    // below reads the store. (Not Clear(): it re-queues every evicted block
    // for writing, on disk or not; see docs/BENCHMARKS.md.)
    if (round > 0) {
      stats = cache->Stats();
      CheckOk(cache->Close(), "close (round)");
      cache.reset();
      CheckOk(Cache::Open(PromoteOptions(layout, dir, blocks + kBlocksPerPrompt), &cache),
              "reopen cache (promote)");
    }
    const double cpu0 = ProcessCpuSeconds();
    Stopwatch w;
    for (const auto& p : prompts) {
      Lease lease = cache->Lookup(p);
      if (round > 0) {
        served_from_disk += lease.blocks_from_disk();
        expected += kBlocksPerPrompt;
      }
    }
    const double promote_s = w.Seconds();
    const double promote_cpu_s = ProcessCpuSeconds() - cpu0;
    if (round == 0) continue;
    if (MBps(raw, promote_s) > promote_mb_s) {
      promote_mb_s = MBps(raw, promote_s);
      promote_cpu = promote_cpu_s;
    }

    const double decode_cpu0 = ProcessCpuSeconds();
    w.Reset();
    RecordHeader h;
    for (const auto& rec : records) {
      CheckOk(ParseRecordHeader(rec, &h), "ParseRecordHeader");
      CheckOk(DecodeRecordInto(rec, h, out), "DecodeRecordInto");
    }
    if (MBps(raw, w.Seconds()) > decode_mb_s) {
      decode_mb_s = MBps(raw, w.Seconds());
      decode_cpu = ProcessCpuSeconds() - decode_cpu0;
    }

    w.Reset();
    for (size_t i = 0; i < blocks; ++i) {
      CheckOk(zstd.Decompress(frames[i % frames.size()], out), "zstd decompress");
    }
    zstd_mb_s = std::max(zstd_mb_s, MBps(raw, w.Seconds()));
  }
  stats = cache->Stats();
  CheckOk(cache->Close(), "close (promote)");

  r.params() = {{"layout", layout.ToString()},
                {"block_bytes", bb},
                {"blocks", blocks},
                {"blocks_per_lookup", kBlocksPerPrompt},
                {"raw_mb", raw / 1e6},
                {"stored_mb", stored / 1e6},
                {"rounds_best_of", rounds},
                {"page_cache", "warm (one unmeasured round first)"}};
  r.figures() = {{"promote_mb_per_s", promote_mb_s},
                 {"cpu_ms_per_raw_mb", promote_cpu * 1e3 / (raw / 1e6)},
                 {"blocks_served_from_disk", served_from_disk},
                 {"blocks_expected_from_disk", expected},
                 {"corrupt_records", stats.corrupt_records},
                 {"store_errors", stats.store_errors}};
  r.baselines() = {{"decode_alone_mb_per_s", decode_mb_s},
                   {"decode_alone_cpu_ms_per_raw_mb", decode_cpu * 1e3 / (raw / 1e6)},
                   {"zstd1_decompress_mb_per_s", zstd_mb_s}};
  if (served_from_disk != expected) {
    r.AddNote("only " + std::to_string(served_from_disk) + " of " + std::to_string(expected) +
              " blocks came from disk: the MB/s figure overstates the store");
  }
  r.AddCheck("promote", "promote MB/s (raw)", promote_mb_s,
             "decode alone (ParseRecordHeader + DecodeRecordInto)", decode_mb_s,
             Direction::kAtLeast, 0.7);
  return r;
}

}  // namespace kvtier::bench
