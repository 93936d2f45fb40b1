// `stores`: the same spill+promote work (write N blocks durably, then read
// them all back, page cache warm) through kvtier and through the stores a
// user could pick instead (baseline_stores.h), for 64 KiB and 2 MiB blocks.
#include <string>
#include <vector>

#include "baseline_stores.h"
#include "kvtier/cache.h"
#include "scenarios.h"

namespace kvtier::bench {

namespace {

constexpr size_t kBlocksPerPrompt = 8;

struct WorkTime {
  double write_s = 0;
  double read_s = 0;
  uint64_t files_bytes = 0;
  uint64_t written_bytes = 0;  // handed to write(2) by the write phase, all threads
  uint64_t blocks_read = 0;
  uint64_t blocks_written = -1;  // kvtier: Stats().spills (records written)
  uint64_t blocks_rewritten = 0;  // kvtier: spills while only reading
  double total() const { return write_s + read_s; }
};

WorkTime RunKvtier(const BenchContext& ctx, const BlockLayout& layout, const PayloadPool& pool,
                   const std::vector<std::vector<Token>>& prompts, const std::string& dir) {
  CacheOptions o;
  o.ns = BenchNamespace(layout);
  // Memory for a few prompts: blocks spill as they are evicted, the rest at
  // Flush(); lookups promote into the same room.
  o.memory_bytes = CapUnspilledBlocks(layout, 8 * kBlocksPerPrompt) * layout.block_bytes();
  o.store = dir;
  o.store_options.max_bytes = 0;
  std::unique_ptr<Cache> cache;
  CheckOk(Cache::Open(o, &cache), "open cache (stores)");
  WorkTime t;
  std::vector<std::span<const std::byte>> payloads(kBlocksPerPrompt);
  const uint64_t written0 = ProcessWrittenBytes();
  Stopwatch w;
  for (size_t p = 0; p < prompts.size(); ++p) {
    for (size_t j = 0; j < kBlocksPerPrompt; ++j) payloads[j] = pool.Get(p * kBlocksPerPrompt + j);
    CheckOk(cache->InsertBlocks(prompts[p], 0, payloads), "insert (stores)");
  }
  CheckOk(cache->Flush(), "flush (stores)");  // writes every resident block, syncs
  t.write_s = w.Seconds();
  t.blocks_written = cache->Stats().spills;
  // A fresh cache on the same store, so that every read below comes from
  // the store (not Clear(): it re-queues evicted blocks for writing).
  CheckOk(cache->Close(), "close (stores)");
  cache.reset();
  // Close() ends RocksDB's background flush: its files are written too.
  t.written_bytes = ProcessWrittenBytes() - written0;
  CheckOk(Cache::Open(o, &cache), "reopen cache (stores)");
  w.Reset();
  for (const auto& p : prompts) t.blocks_read += cache->Lookup(p).blocks_from_disk();
  t.read_s = w.Seconds();
  t.blocks_rewritten = cache->Stats().spills;
  CheckOk(cache->Close(), "close (stores)");
  t.files_bytes = DirectoryBytes(dir);
  return t;
}

WorkTime RunBaseline(BaselineStore* store, const BlockLayout& layout, const PayloadPool& pool,
                     const std::vector<std::vector<Token>>& prompts) {
  const Namespace ns = BenchNamespace(layout);
  std::vector<std::vector<Hash128>> keys(prompts.size());
  for (size_t p = 0; p < prompts.size(); ++p) {
    PrefixHashes(ns.Fingerprint(), prompts[p], layout.block_size, &keys[p]);
  }
  WorkTime t;
  std::vector<std::span<const std::byte>> payloads(kBlocksPerPrompt);
  const uint64_t written0 = ProcessWrittenBytes();
  Stopwatch w;
  for (size_t p = 0; p < prompts.size(); ++p) {
    // A server hashes its prompt too: keep that work on both sides.
    std::vector<Hash128> h;
    PrefixHashes(ns.Fingerprint(), prompts[p], layout.block_size, &h);
    for (size_t j = 0; j < kBlocksPerPrompt; ++j) payloads[j] = pool.Get(p * kBlocksPerPrompt + j);
    CheckOk(store->Put(h, payloads), "baseline put");
  }
  CheckOk(store->Sync(), "baseline sync");
  t.write_s = w.Seconds();
  t.written_bytes = ProcessWrittenBytes() - written0;
  std::vector<std::byte> out(layout.block_bytes());
  w.Reset();
  for (size_t p = 0; p < prompts.size(); ++p) {
    std::vector<Hash128> h;
    PrefixHashes(ns.Fingerprint(), prompts[p], layout.block_size, &h);
    for (const Hash128& k : h) {
      CheckOk(store->Get(k, out), "baseline get");
      ++t.blocks_read;
    }
  }
  t.read_s = w.Seconds();
  t.files_bytes = store->FilesBytes();
  return t;
}

nlohmann::json ToJson(const WorkTime& t, double raw) {
  nlohmann::json j = {{"write_mb_per_s", MBps(raw, t.write_s)},
                      {"read_mb_per_s", MBps(raw, t.read_s)},
                      {"spill_promote_mb_per_s", MBps(2 * raw, t.total())},
                      {"files_mb", t.files_bytes / 1e6},
                      {"written_mb", t.written_bytes / 1e6},
                      {"blocks_read", t.blocks_read}};
  if (t.blocks_written != uint64_t(-1)) {
    j["blocks_written"] = t.blocks_written;
    j["blocks_written_while_reading"] = t.blocks_rewritten;
  }
  return j;
}

}  // namespace

ScenarioResult RunStoresScenario(const BenchContext& ctx) {
  ScenarioResult r("stores");
  struct Size {
    const char* name;
    BlockLayout layout;
    size_t prompts;
    double target;
  };
  const Size sizes[] = {
      {"64KiB", MakeLayout(1, 8, 128, DType::kBF16), ctx.Size(1024, 2), 1.5},
      {"2MiB", MakeLayout(32, 8, 128, DType::kBF16), ctx.Size(32, 1), 1.0},
  };
  std::string generator;
  for (const Size& s : sizes) {
    const size_t blocks = s.prompts * kBlocksPerPrompt;
    const double raw = static_cast<double>(blocks) * s.layout.block_bytes();
    ctx.Log(std::string("stores: ") + s.name + " blocks x " + std::to_string(blocks));
    PayloadPool pool(s.layout, std::min<size_t>(blocks, 32));
    if (generator.empty()) generator = pool.generator().Describe();
    const auto prompts = DistinctPrompts(s.prompts, kBlocksPerPrompt, s.layout.block_size, 19);

    const WorkTime kv = RunKvtier(ctx, s.layout, pool, prompts, ctx.FreshDir("stores-kvtier"));
    auto files = NewFilePerBlockStore(ctx.FreshDir("stores-files"), 1);
    const WorkTime fp = RunBaseline(files.get(), s.layout, pool, prompts);
    files.reset();
    std::unique_ptr<BaselineStore> rocks;
    CheckOk(OpenRocksRawStore(ctx.FreshDir("stores-rocks"), &rocks), "open RocksDB baseline");
    const WorkTime rr = RunBaseline(rocks.get(), s.layout, pool, prompts);
    const std::string rocks_desc = rocks->Describe();
    rocks.reset();

    r.params()[s.name] = {{"layout", s.layout.ToString()},
                          {"block_bytes", s.layout.block_bytes()},
                          {"blocks", blocks},
                          {"raw_mb", raw / 1e6}};
    r.figures()[std::string("kvtier_") + s.name] = ToJson(kv, raw);
    r.baselines()[std::string("file_per_block_zstd1_") + s.name] = ToJson(fp, raw);
    r.baselines()[std::string("rocksdb_raw_") + s.name] = ToJson(rr, raw);
    r.AddCheck(std::string("vs_file_per_block_") + s.name,
               std::string("kvtier spill+promote MB/s, ") + s.name, MBps(2 * raw, kv.total()),
               "one file per block + zstd1", MBps(2 * raw, fp.total()), Direction::kAtLeast,
               s.target);
    if (s.layout.block_bytes() == sizes[0].layout.block_bytes()) {
      r.AddNote("file-per-block: " + NewFilePerBlockStore(ctx.FreshDir("stores-files"), 1)->Describe());
      r.AddNote("rocksdb_raw: " + rocks_desc);
    }
  }
  r.set_generator(generator + " (layouts per size in params)");
  r.AddNote("spill+promote MB/s = 2 x raw bytes / (write all + sync + read all back, warm)");
  return r;
}

}  // namespace kvtier::bench
