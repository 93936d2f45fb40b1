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
  const int rounds = ctx.quick ? 1 : 3;
  // One set of prompts per round plus one unmeasured warm-up set: each
  // round's lookups miss memory and read the store, in one open cache.
  const size_t set_prompts = ctx.Size(64, 2);
  const size_t sets = rounds + 1;
  const size_t prompts_n = set_prompts * sets;
  const size_t set_blocks = set_prompts * kBlocksPerPrompt;
  const size_t bb = layout.block_bytes();
  const double raw = static_cast<double>(set_blocks) * bb;  // per round
  ctx.Log("promote: " + std::to_string(sets) + " x " + std::to_string(set_blocks) +
          " blocks of " + std::to_string(bb >> 10) + " KiB");
  PayloadPool pool(layout, 64);
  const auto prompts = DistinctPrompts(prompts_n, kBlocksPerPrompt, layout.block_size, 13);
  r.set_generator(pool.generator().Describe());
  const std::string dir = ctx.FreshDir("promote");

  // Fill the store through eviction (a small memory tier), then Close().
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
  CheckOk(Cache::Open(PromoteOptions(layout, dir, prompts_n * kBlocksPerPrompt + kBlocksPerPrompt),
                      &cache),
          "open cache (promote)");
  // Reopening replays the WAL and RocksDB flushes and compacts in the
  // background for a while: measure the steady state after it.
  const double settle_s = WaitForIdle(30);
  const Namespace ns = BenchNamespace(layout);
  std::vector<Hash128> keys;
  std::vector<std::string> records;
  double promote_mb_s = 0, decode_mb_s = 0, zstd_mb_s = 0, multiget_mb_s = 0;
  double promote_cpu = 0, decode_cpu = 0;  // CPU seconds of the best rounds
  double faults_per_block = 0;             // minor page faults, best round
  double stored = 0;
  uint64_t served_from_disk = 0, expected = 0;
  std::vector<std::byte> out(bb);
  ZstdFloor zstd(1, false, layout.element_size());
  std::vector<std::string> frames(pool.size());
  for (size_t i = 0; i < pool.size(); ++i) zstd.Compress(pool.Get(i), &frames[i]);

  for (size_t round = 0; round < sets; ++round) {
    const auto first = prompts.begin() + static_cast<ptrdiff_t>(round * set_prompts);
    const double cpu0 = ProcessCpuSeconds();
    const uint64_t faults0 = ProcessMinorFaults();
    Stopwatch w;
    uint64_t from_disk = 0;
    for (auto p = first; p != first + static_cast<ptrdiff_t>(set_prompts); ++p) {
      from_disk += cache->Lookup(*p).blocks_from_disk();
    }
    const double promote_s = w.Seconds();
    const double promote_cpu_s = ProcessCpuSeconds() - cpu0;
    const uint64_t promote_faults = ProcessMinorFaults() - faults0;
    if (round == 0) continue;  // warm-up
    served_from_disk += from_disk;
    expected += set_blocks;
    if (MBps(raw, promote_s) > promote_mb_s) {
      promote_mb_s = MBps(raw, promote_s);
      promote_cpu = promote_cpu_s;
      faults_per_block = static_cast<double>(promote_faults) / set_blocks;
    }

    // The same records read through the store alone (BlockStore::MultiGet,
    // batches of one lookup), then decoded alone.
    keys.clear();
    for (auto p = first; p != first + static_cast<ptrdiff_t>(set_prompts); ++p) {
      PrefixHashes(ns.Fingerprint(), *p, layout.block_size, &keys);
    }
    // As PromoteRun reads: one MultiGet per lookup into fresh strings.
    w.Reset();
    for (size_t i = 0; i < keys.size(); i += kBlocksPerPrompt) {
      std::vector<std::string> batch;
      std::vector<Status> statuses;
      cache->store()->MultiGet(std::span<const Hash128>(keys).subspan(i, kBlocksPerPrompt),
                               &batch, &statuses);
      for (const Status& st : statuses) CheckOk(st, "store MultiGet");
    }
    multiget_mb_s = std::max(multiget_mb_s, MBps(raw, w.Seconds()));
    records.assign(keys.size(), std::string());
    stored = 0;
    for (size_t i = 0; i < keys.size(); i += kBlocksPerPrompt) {
      std::vector<std::string> batch;
      std::vector<Status> statuses;
      cache->store()->MultiGet(std::span<const Hash128>(keys).subspan(i, kBlocksPerPrompt),
                               &batch, &statuses);
      for (size_t j = 0; j < batch.size(); ++j) {
        CheckOk(statuses[j], "read record " + keys[i + j].ToHex());
        stored += static_cast<double>(batch[j].size());
        records[i + j] = std::move(batch[j]);
      }
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
    for (size_t i = 0; i < set_blocks; ++i) {
      CheckOk(zstd.Decompress(frames[i % frames.size()], out), "zstd decompress");
    }
    zstd_mb_s = std::max(zstd_mb_s, MBps(raw, w.Seconds()));
  }
  const CacheStats stats = cache->Stats();
  CheckOk(cache->Close(), "close (promote)");

  r.params() = {{"layout", layout.ToString()},
                {"block_bytes", bb},
                {"blocks_per_round", set_blocks},
                {"blocks_per_lookup", kBlocksPerPrompt},
                {"raw_mb_per_round", raw / 1e6},
                {"stored_mb_per_round", stored / 1e6},
                {"rounds_best_of", rounds},
                {"background_work_after_open_s", settle_s},
                {"page_cache", "warm (store just written), one unmeasured warm-up set"}};
  r.figures() = {{"promote_mb_per_s", promote_mb_s},
                 {"cpu_ms_per_raw_mb", promote_cpu * 1e3 / (raw / 1e6)},
                 {"page_faults_per_block", faults_per_block},
                 {"blocks_served_from_disk", served_from_disk},
                 {"blocks_expected_from_disk", expected},
                 {"spills_while_reading", stats.spills},
                 {"corrupt_records", stats.corrupt_records},
                 {"store_errors", stats.store_errors}};
  r.baselines() = {{"decode_alone_mb_per_s", decode_mb_s},
                   {"decode_alone_cpu_ms_per_raw_mb", decode_cpu * 1e3 / (raw / 1e6)},
                   {"zstd1_decompress_mb_per_s", zstd_mb_s},
                   {"store_multiget_alone_mb_per_s", multiget_mb_s}};
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
