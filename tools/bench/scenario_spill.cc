// `spill`: MB/s of raw block bytes the cache writes to its store (eviction
// -> queue -> encode -> batched write, then Flush), with 1 and 2 spill
// workers, against the codec alone on the same blocks and a raw
// fwrite+fsync of the same bytes.
#include <string>
#include <vector>

#include "baseline_stores.h"
#include "codec_floor.h"
#include "kvtier/cache.h"
#include "kvtier/record.h"
#include "scenarios.h"

namespace kvtier::bench {

namespace {

constexpr size_t kBlocksPerPrompt = 16;

struct SpillRun {
  double seconds = 0;
  double cpu_seconds = 0;  // all threads, RocksDB's included
  uint64_t faults = 0;     // minor page faults
  uint64_t written = 0;    // bytes handed to write(2), all threads
  CacheStats stats;
};

// Inserts every block of `prompts` into a cache whose memory holds 32
// blocks, so nearly all of them spill, then Flush()es. Timed end to end.
SpillRun Spill(const BenchContext& ctx, const BlockLayout& layout, const PayloadPool& pool,
               const std::vector<std::vector<Token>>& prompts, int threads) {
  CacheOptions o;
  o.ns = BenchNamespace(layout);
  o.memory_bytes = 32 * layout.block_bytes();
  o.spill_queue_bytes = 64 * layout.block_bytes();
  o.spill_threads = threads;
  o.store = ctx.FreshDir("spill-" + std::to_string(threads));
  o.store_options.max_bytes = 0;
  std::unique_ptr<Cache> cache;
  CheckOk(Cache::Open(o, &cache), "open cache for spill");
  std::vector<std::span<const std::byte>> payloads(kBlocksPerPrompt);
  SpillRun run;
  const double cpu0 = ProcessCpuSeconds();
  const uint64_t faults0 = ProcessMinorFaults();
  const uint64_t written0 = ProcessWrittenBytes();
  Stopwatch w;
  for (size_t p = 0; p < prompts.size(); ++p) {
    for (size_t j = 0; j < kBlocksPerPrompt; ++j) payloads[j] = pool.Get(p * kBlocksPerPrompt + j);
    CheckOk(cache->InsertBlocks(prompts[p], 0, payloads), "insert for spill");
  }
  CheckOk(cache->Flush(), "flush after spill");
  run.seconds = w.Seconds();
  run.cpu_seconds = ProcessCpuSeconds() - cpu0;
  run.faults = ProcessMinorFaults() - faults0;
  run.stats = cache->Stats();
  CheckOk(cache->Close(), "close after spill");
  // Close() ends RocksDB's background flush: its files are written too.
  run.written = ProcessWrittenBytes() - written0;
  return run;
}

}  // namespace

ScenarioResult RunSpillScenario(const BenchContext& ctx) {
  ScenarioResult r("spill");
  const BlockLayout layout = MakeLayout(4, 8, 128, DType::kBF16);  // 256 KiB blocks
  const size_t prompts_n = ctx.Size(384, 4);
  const size_t blocks = prompts_n * kBlocksPerPrompt;
  const size_t bb = layout.block_bytes();
  const double raw = static_cast<double>(blocks) * bb;
  ctx.Log("spill: " + std::to_string(blocks) + " blocks of " + std::to_string(bb >> 10) + " KiB");
  PayloadPool pool(layout, 64);
  const auto prompts = DistinctPrompts(prompts_n, kBlocksPerPrompt, layout.block_size, 11);
  r.set_generator(pool.generator().Describe() + "; " + std::to_string(pool.size()) +
                  " distinct payloads cycled over distinct prompts");
  r.params() = {{"layout", layout.ToString()},
                {"block_bytes", bb},
                {"blocks", blocks},
                {"raw_mb", raw / 1e6},
                {"memory_budget_blocks", 32},
                {"spill_queue_blocks", 64},
                {"zstd_level", CodecOptions().zstd_level},
                {"shuffle", CodecOptions().shuffle}};

  // Baselines first, on the same blocks in the same order.
  const Namespace ns = BenchNamespace(layout);
  std::string record;
  std::vector<Hash128> hashes;
  double cpu0 = ProcessCpuSeconds();
  Stopwatch w;
  for (size_t p = 0; p < prompts_n; ++p) {
    hashes.clear();
    PrefixHashes(ns.Fingerprint(), prompts[p], layout.block_size, &hashes);
    for (size_t j = 0; j < kBlocksPerPrompt; ++j) {
      RecordIdentity id;
      id.layout = layout;
      id.depth = static_cast<uint32_t>(j);
      id.namespace_fp = ns.Fingerprint();
      id.parent = j == 0 ? ns.Fingerprint() : hashes[j - 1];
      id.tokens = std::span<const Token>(prompts[p]).subspan(j * layout.block_size,
                                                             layout.block_size);
      CheckOk(EncodeRecord(id, pool.Get(p * kBlocksPerPrompt + j), CodecOptions(), &record),
              "EncodeRecord");
    }
  }
  const double codec_mb_s = MBps(raw, w.Seconds());
  const double codec_cpu_s = ProcessCpuSeconds() - cpu0;
  ZstdFloor zstd(1, false, layout.element_size());
  ZstdFloor shuffled(1, true, layout.element_size());
  std::string frame;
  w.Reset();
  for (size_t i = 0; i < blocks; ++i) zstd.Compress(pool.Get(i), &frame);
  const double zstd_mb_s = MBps(raw, w.Seconds());
  w.Reset();
  for (size_t i = 0; i < blocks; ++i) shuffled.Compress(pool.Get(i), &frame);
  const double shuffle_mb_s = MBps(raw, w.Seconds());
  double fwrite_s = 0;
  const uint64_t fwrite_written0 = ProcessWrittenBytes();
  CheckOk(WriteRawFile(ctx.FreshDir("spill-raw") + "/blocks.bin", blocks,
                       [&](size_t i) { return pool.Get(i); }, &fwrite_s),
          "raw fwrite+fsync");
  const uint64_t fwrite_written = ProcessWrittenBytes() - fwrite_written0;

  ctx.Log("spill: cache, 1 worker");
  const SpillRun one = Spill(ctx, layout, pool, prompts, 1);
  ctx.Log("spill: cache, 2 workers");
  const SpillRun two = Spill(ctx, layout, pool, prompts, 2);
  const double one_mb_s = MBps(raw, one.seconds);
  const double two_mb_s = MBps(raw, two.seconds);

  r.figures() = {{"spill_1_worker_mb_per_s", one_mb_s},
                 {"spill_2_workers_mb_per_s", two_mb_s},
                 {"spills_1_worker", one.stats.spills},
                 {"spills_2_workers", two.stats.spills},
                 {"cpu_ms_per_raw_mb_1_worker", one.cpu_seconds * 1e3 / (raw / 1e6)},
                 {"cpu_ms_per_raw_mb_2_workers", two.cpu_seconds * 1e3 / (raw / 1e6)},
                 {"page_faults_per_block_1_worker", double(one.faults) / blocks},
                 {"compression_ratio", one.stats.compression_ratio()},
                 {"bytes_written_per_stored_byte_1_worker",
                  static_cast<double>(one.written) /
                      std::max<double>(1, static_cast<double>(one.stats.bytes_written_stored))},
                 {"bytes_written_per_raw_byte_1_worker", static_cast<double>(one.written) / raw},
                 {"store_errors", one.stats.store_errors + two.stats.store_errors}};
  r.baselines() = {{"codec_alone_mb_per_s", codec_mb_s},
                   {"codec_alone_cpu_ms_per_raw_mb", codec_cpu_s * 1e3 / (raw / 1e6)},
                   {"zstd1_alone_mb_per_s", zstd_mb_s},
                   {"bench_shuffle_zstd1_mb_per_s", shuffle_mb_s},
                   {"raw_fwrite_fsync_mb_per_s", MBps(raw, fwrite_s)},
                   {"raw_fwrite_bytes_written_per_raw_byte", static_cast<double>(fwrite_written) / raw}};
  r.AddCheck("spill_1_worker", "spill MB/s, 1 worker", one_mb_s,
             "codec alone (EncodeRecord, 1 thread)", codec_mb_s, Direction::kAtLeast, 0.8);
  r.AddCheck("spill_2_workers", "spill MB/s, 2 workers", two_mb_s, "spill MB/s, 1 worker",
             one_mb_s, Direction::kAtLeast, 1.6);
  r.AddNote("the machine has 2 cores: with 2 workers the inserting thread shares them");
  return r;
}

}  // namespace kvtier::bench
