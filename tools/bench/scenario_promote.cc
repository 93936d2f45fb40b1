// `promote`: MB/s of raw block bytes a lookup serves from the store into
// memory (batched read, verify, decode), page cache warm, against the
// codec's decode alone on the same records into the same kind of memory.
#include <sys/mman.h>

#include <new>
#include <string>
#include <vector>

#include "codec_floor.h"
#include "kvtier/cache.h"
#include "kvtier/record.h"
#include "scenarios.h"

namespace kvtier::bench {

namespace {

constexpr size_t kBlocksPerPrompt = 16;

// `memory_blocks` blocks of memory tier over the store in `dir`.
CacheOptions PromoteOptions(const BlockLayout& layout, const std::string& dir,
                            size_t memory_blocks) {
  CacheOptions o;
  o.ns = BenchNamespace(layout);
  o.memory_bytes = memory_blocks * layout.block_bytes();
  o.store = dir;
  o.store_options.max_bytes = 0;
  return o;
}

// `count` block buffers of `bytes` each, mapped fresh: no page of them was
// ever touched, as for a process's first promotions. Advised MADV_HUGEPAGE
// like the cache's own block memory (memory/buffer_pool.h), so the first
// touch faults 2 MiB at a time for both.
class BlockBuffers {
 public:
  BlockBuffers(size_t count, size_t bytes) : count_(count), bytes_(bytes) {
    void* p = mmap(nullptr, count * bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    (void)madvise(p, count * bytes, MADV_HUGEPAGE);  // advice only
    base_ = static_cast<std::byte*>(p);
  }
  ~BlockBuffers() { munmap(base_, count_ * bytes_); }
  BlockBuffers(const BlockBuffers&) = delete;
  BlockBuffers& operator=(const BlockBuffers&) = delete;
  std::span<std::byte> operator[](size_t i) const { return {base_ + i * bytes_, bytes_}; }

 private:
  size_t count_, bytes_;
  std::byte* base_;
};

}  // namespace

// Rounds: set 0 is promoted into memory the process never touched (the
// first promotions after a start); sets 1..rounds each evict the set before
// them from a memory tier that holds one set, so their promotions reuse
// evicted blocks' memory, as in a serving process at its memory budget.
// Each round's baseline is the codec alone decoding the same records into
// the same kind of memory: one buffer per block, never touched for set 0,
// touched before for the others.
ScenarioResult RunPromoteScenario(const BenchContext& ctx) {
  ScenarioResult r("promote");
  const BlockLayout layout = MakeLayout(4, 8, 128, DType::kBF16);  // 256 KiB blocks
  const int rounds = ctx.quick ? 1 : 3;
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
  CheckOk(Cache::Open(PromoteOptions(layout, dir, set_blocks + kBlocksPerPrompt), &cache),
          "open cache (promote)");
  // Reopening replays the WAL and RocksDB flushes and compacts in the
  // background for a while: measure the steady state after it.
  const double settle_s = WaitForIdle(30);
  const Namespace ns = BenchNamespace(layout);
  const BlockBuffers decoded(set_blocks, bb);  // the baseline's destinations
  std::vector<Hash128> keys;
  std::vector<std::string> records;
  double promote_mb_s = 0, decode_mb_s = 0;        // steady rounds, best of
  double first_promote_mb_s = 0, first_decode_mb_s = 0;
  double one_buffer_mb_s = 0, zstd_mb_s = 0, multiget_mb_s = 0;
  double promote_cpu = 0, decode_cpu = 0;  // CPU seconds of the best steady rounds
  double faults_per_block = 0, first_faults_per_block = 0;
  double stored = 0;
  uint64_t served_from_disk = 0, expected = 0;
  std::vector<std::byte> out(bb);
  ZstdFloor zstd(1, false, layout.element_size());
  std::vector<std::string> frames(pool.size());
  for (size_t i = 0; i < pool.size(); ++i) zstd.Compress(pool.Get(i), &frames[i]);

  for (size_t round = 0; round < sets; ++round) {
    const bool first = round == 0;
    const auto set = prompts.begin() + static_cast<ptrdiff_t>(round * set_prompts);
    const auto set_end = set + static_cast<ptrdiff_t>(set_prompts);
    double cpu0 = ProcessCpuSeconds();
    uint64_t faults0 = ProcessMinorFaults();
    Stopwatch w;
    uint64_t from_disk = 0;
    for (auto p = set; p != set_end; ++p) from_disk += cache->Lookup(*p).blocks_from_disk();
    const double promote_s = w.Seconds();
    const double promote_cpu_s = ProcessCpuSeconds() - cpu0;
    const double promote_faults =
        static_cast<double>(ProcessMinorFaults() - faults0) / static_cast<double>(set_blocks);
    served_from_disk += from_disk;
    expected += set_blocks;
    if (first) {
      first_promote_mb_s = MBps(raw, promote_s);
      first_faults_per_block = promote_faults;
    } else if (MBps(raw, promote_s) > promote_mb_s) {
      promote_mb_s = MBps(raw, promote_s);
      promote_cpu = promote_cpu_s;
      faults_per_block = promote_faults;
    }

    // The same records read through the store alone (BlockStore::MultiGet,
    // batches of one lookup), then decoded alone.
    keys.clear();
    for (auto p = set; p != set_end; ++p) {
      PrefixHashes(ns.Fingerprint(), *p, layout.block_size, &keys);
    }
    // As PromoteRun reads: one MultiGet per lookup.
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
    RecordHeader h;
    cpu0 = ProcessCpuSeconds();
    w.Reset();
    for (size_t i = 0; i < records.size(); ++i) {
      CheckOk(ParseRecordHeader(records[i], &h), "ParseRecordHeader");
      CheckOk(DecodeRecordInto(records[i], h, decoded[i]), "DecodeRecordInto");
    }
    const double decode_s = w.Seconds();
    if (first) {
      first_decode_mb_s = MBps(raw, decode_s);
    } else if (MBps(raw, decode_s) > decode_mb_s) {
      decode_mb_s = MBps(raw, decode_s);
      decode_cpu = ProcessCpuSeconds() - cpu0;
    }
    if (first) continue;

    // For reference: the decode into one buffer that stays in the CPU's
    // cache, and plain zstd.
    w.Reset();
    for (const auto& rec : records) {
      CheckOk(ParseRecordHeader(rec, &h), "ParseRecordHeader");
      CheckOk(DecodeRecordInto(rec, h, out), "DecodeRecordInto");
    }
    one_buffer_mb_s = std::max(one_buffer_mb_s, MBps(raw, w.Seconds()));
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
                {"memory_tier_blocks", set_blocks + kBlocksPerPrompt},
                {"raw_mb_per_round", raw / 1e6},
                {"stored_mb_per_round", stored / 1e6},
                {"steady_rounds_best_of", rounds},
                {"background_work_after_open_s", settle_s},
                {"page_cache", "warm (store just written)"}};
  r.figures() = {{"promote_mb_per_s", promote_mb_s},
                 {"promote_into_new_memory_mb_per_s", first_promote_mb_s},
                 {"cpu_ms_per_raw_mb", promote_cpu * 1e3 / (raw / 1e6)},
                 {"page_faults_per_block", faults_per_block},
                 {"page_faults_per_block_new_memory", first_faults_per_block},
                 {"blocks_served_from_disk", served_from_disk},
                 {"blocks_expected_from_disk", expected},
                 {"spills_while_reading", stats.spills},
                 {"corrupt_records", stats.corrupt_records},
                 {"store_errors", stats.store_errors}};
  r.baselines() = {{"decode_alone_mb_per_s", decode_mb_s},
                   {"decode_alone_into_new_memory_mb_per_s", first_decode_mb_s},
                   {"decode_alone_cpu_ms_per_raw_mb", decode_cpu * 1e3 / (raw / 1e6)},
                   {"decode_alone_one_cached_buffer_mb_per_s", one_buffer_mb_s},
                   {"zstd1_decompress_mb_per_s", zstd_mb_s},
                   {"store_multiget_alone_mb_per_s", multiget_mb_s}};
  if (served_from_disk != expected) {
    r.AddNote("only " + std::to_string(served_from_disk) + " of " + std::to_string(expected) +
              " blocks came from disk: the MB/s figures overstate the store");
  }
  r.AddCheck("promote", "promote MB/s (raw), memory tier at its budget",
             promote_mb_s, "decode alone into a buffer per block (touched before)",
             decode_mb_s, Direction::kAtLeast, 0.7);
  r.AddCheck("promote_new_memory", "promote MB/s (raw), first promotions after start",
             first_promote_mb_s, "decode alone into a new buffer per block", first_decode_mb_s,
             Direction::kAtLeast, 0.7);
  return r;
}

}  // namespace kvtier::bench
