// Fault injection: RocksDB runs on a file system that fails chosen
// operations (tests/reliability/fault_fs.h). A workload (open, promote from
// disk, insert with spills, flush, compact, close) runs once per file-system
// operation N it performs, failing exactly the N-th (SQLite's I/O-error test
// style); then with faults that persist until cleared; then under a bad
// sector. Each run must: not crash, never serve a wrong block, count and log
// the errors, keep the spill queue within its budget, recover once the fault
// clears, and lose nothing a successful Flush() acknowledged. Afterwards the
// store must reopen cleanly with counters that match its records.
//
// KVTIER_FAULT_STRIDE=k runs every k-th N only (default 1: every N).
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <thread>

#include "cache/cache_core.h"
#include "reliability/fault_fs.h"
#include "reliability/reliability_util.h"
#include "store/rocks_block_store.h"
#include "test_util.h"

using namespace kvtier;
using test::FaultFileSystem;

namespace {

// 8 KiB blocks: records of about 6 KiB.
Namespace FaultNamespace() {
  BlockLayout l;
  l.num_layers = 2;
  l.num_kv_heads = 2;
  l.head_dim = 128;
  l.block_size = 4;
  l.dtype = DType::kF16;
  return test::TestNamespace(l, "fault-model");
}

constexpr size_t kBlocks = 3;  // per prompt

struct Prompts {
  std::vector<std::vector<Token>> on_disk;  // stored before the workload
  std::vector<std::vector<Token>> first;    // inserted, then flushed
  std::vector<std::vector<Token>> second;   // inserted after a compaction
};

Prompts MakePrompts() {
  Prompts p;
  for (uint64_t i = 0; i < 4; ++i) p.on_disk.push_back(test::Tokens(kBlocks * 4, 100 + i));
  for (uint64_t i = 0; i < 6; ++i) {
    // Half of them extend a prompt already on disk (a shared head).
    std::vector<Token> t = i % 2 ? std::vector<Token>(p.on_disk[i / 2].begin(),
                                                      p.on_disk[i / 2].begin() + 4)
                                 : test::Tokens(4, 200 + i);
    auto tail = test::Tokens((kBlocks - 1) * 4, 300 + i);
    t.insert(t.end(), tail.begin(), tail.end());
    p.first.push_back(t);
  }
  for (uint64_t i = 0; i < 3; ++i) p.second.push_back(test::Tokens(kBlocks * 4, 400 + i));
  return p;
}

// A thread-safe diagnostics sink.
struct LogSink {
  std::mutex mu;
  std::vector<std::string> lines;
  std::function<void(std::string_view)> fn() {
    return [this](std::string_view m) {
      std::lock_guard<std::mutex> lock(mu);
      lines.emplace_back(m);
    };
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mu);
    return lines.size();
  }
  bool Mentions(std::string_view needle) {
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& l : lines)
      if (l.find(needle) != std::string::npos) return true;
    return false;
  }
};

const uint64_t kQueueBudget = 4 * FaultNamespace().layout.block_bytes();

CacheOptions Options(const std::string& dir, LogSink* sink) {
  CacheOptions o;
  o.ns = FaultNamespace();
  o.memory_bytes = 6 * o.ns.layout.block_bytes();  // evictions, so spills
  o.spill_queue_bytes = kQueueBudget;               // back-pressure
  o.store = dir;
  o.store_options.max_bytes = 0;    // nothing leaves the disk but damage
  o.store_options.log = sink->fn();
  o.log = sink->fn();
  return o;
}

void InsertPrompt(CacheCore* core, const std::vector<Token>& t, Status* status) {
  auto blocks = test::KeyedBlocks(FaultNamespace(), t, 0, kBlocks);
  *status = core->InsertBlocks(t, 0, test::Spans(blocks));
}

// A store holding `prompts`, created without faults. With `compact`, the
// records are rewritten into fresh segments (and RocksDB's tables too).
void MakeTemplate(const std::string& dir, const std::vector<std::vector<Token>>& prompts,
                  bool compact = false) {
  LogSink sink;
  std::unique_ptr<Cache> cache;
  REQUIRE(Cache::Open(Options(dir, &sink), &cache).ok());
  for (const auto& t : prompts) {
    auto blocks = test::KeyedBlocks(FaultNamespace(), t, 0, kBlocks);
    REQUIRE(cache->InsertBlocks(t, 0, test::Spans(blocks)).ok());
  }
  REQUIRE(cache->Flush().ok());
  CompactResult compacted;
  if (compact) REQUIRE(cache->store()->Compact(&compacted).ok());
  REQUIRE(cache->Close().ok());
}

void CopyStore(const std::string& from, const std::string& to) {
  std::filesystem::remove_all(to);
  std::filesystem::copy(from, to, std::filesystem::copy_options::recursive);
}

struct RunOutcome {
  Status open_status;
  bool opened = false;
  bool first_acknowledged = false;  // Flush() after `first` succeeded with nothing dropped
  bool recovered = false;           // a Flush() after the fault cleared succeeded
  bool any_call_failed = false;     // some cache/store call returned an error
  CacheStats stats;
  uint64_t max_queue_bytes = 0;
  uint64_t queue_blocks_after_flush = 0;
  uint64_t wrong_blocks = 0;
  uint64_t reopens = 0;
  size_t log_lines = 0;
};

// The workload. `clear` is called once the faulty part is over (a no-op for
// one-shot faults, which clear themselves).
RunOutcome RunWorkload(const std::string& dir, const std::shared_ptr<FaultFileSystem>& fs,
                       const Prompts& p, const std::function<void()>& clear) {
  RunOutcome out;
  LogSink sink;
  const CacheOptions o = Options(dir, &sink);
  std::unique_ptr<BlockStore> store;
  out.open_status = RocksBlockStore::Open(dir, o.store_options, test::FaultEnv(fs), &store);
  if (!out.open_status.ok()) {
    clear();
    return out;
  }
  auto* rocks = static_cast<RocksBlockStore*>(store.get());
  std::shared_ptr<CacheCore> core;
  out.open_status = CacheCore::OpenWithStore(o, std::move(store), &core);
  if (!out.open_status.ok()) {
    clear();
    return out;
  }
  out.opened = true;
  auto observe = [&] {
    out.max_queue_bytes = std::max(out.max_queue_bytes, core->Stats().queue_bytes);
  };
  auto lookup = [&](const std::vector<Token>& t) {
    Lease l = core->Lookup(t);
    if (!test::LeaseExact(o.ns, l, t)) ++out.wrong_blocks;
  };
  auto note = [&](const Status& s) {
    if (!s.ok()) out.any_call_failed = true;
  };
  for (const auto& t : p.on_disk) lookup(t);
  for (const auto& t : p.first) {
    Status s;
    InsertPrompt(core.get(), t, &s);
    note(s);
    observe();
  }
  Status f = core->Flush();
  note(f);
  out.first_acknowledged = f.ok() && core->Stats().spill_dropped == 0;
  for (const auto& t : p.first) lookup(t);
  CompactResult compacted;
  note(core->store()->Compact(&compacted));
  for (const auto& t : p.second) {
    Status s;
    InsertPrompt(core.get(), t, &s);
    note(s);
    observe();
  }
  for (const auto& t : p.on_disk) lookup(t);
  note(core->Flush());
  clear();
  // The fault is gone: a flush must succeed within a bounded wait (the
  // store retries a reopen after at most a second).
  for (int attempt = 0; attempt < 150 && !out.recovered; ++attempt) {
    if (core->Flush().ok()) {
      out.recovered = true;
      out.queue_blocks_after_flush = core->Stats().queue_blocks;
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  for (const auto& t : p.first) lookup(t);
  out.stats = core->Stats();
  out.reopens = rocks->reopens();
  note(core->Close());
  core.reset();
  out.log_lines = sink.size();
  return out;
}

// What a clean reopen of the store finds.
struct Verdict {
  test::StoreAudit audit;
  uint64_t acknowledged = 0;
  uint64_t lost = 0;
};

// Reopens the store without faults, audits every record, and checks that
// every block of the prompts given is present.
Verdict VerifyPrompts(const std::string& dir,
                      const std::vector<const std::vector<std::vector<Token>>*>& groups) {
  Verdict v;
  LogSink sink;
  std::unique_ptr<BlockStore> store;
  Status s = RocksBlockStore::Open(dir, Options(dir, &sink).store_options,
                                   test::FaultEnv(std::make_shared<FaultFileSystem>()), &store);
  // (the fault-free file system skips real fsyncs, like the runs)
  INFO("reopening the store without faults: " << s.ToString());
  REQUIRE(s.ok());
  v.audit = test::AuditStore(store.get(), FaultNamespace());
  auto check = [&](const std::vector<std::vector<Token>>& prompts) {
    for (const auto& t : prompts) {
      const std::vector<Hash128> h = test::Chain(FaultNamespace(), t);
      std::vector<uint8_t> present;
      REQUIRE(store->Exists(h, &present).ok());
      for (uint8_t x : present) {
        ++v.acknowledged;
        if (!x) ++v.lost;
      }
    }
  };
  for (const auto* group : groups) check(*group);
  return v;
}

Verdict Verify(const std::string& dir, const Prompts& p, bool first, bool second) {
  std::vector<const std::vector<std::vector<Token>>*> groups = {&p.on_disk};
  if (first) groups.push_back(&p.first);
  if (second) groups.push_back(&p.second);
  return VerifyPrompts(dir, groups);
}

uint64_t Stride() {
  const char* s = std::getenv("KVTIER_FAULT_STRIDE");
  const long v = s ? std::atol(s) : 1;
  return v < 1 ? 1 : static_cast<uint64_t>(v);
}

struct SweepFigures {
  uint64_t runs = 0, injected = 0, surfaced = 0, open_failures = 0, reopens = 0, retries = 0,
           acknowledged = 0, lost = 0, wrong = 0, damaged = 0;
};

void Print(const char* name, uint64_t operations, const SweepFigures& f) {
  std::printf(
      "fault sweep (%s): %llu operations, %llu runs, %llu faults injected, %llu surfaced "
      "(errors in stats or statuses), %llu failed opens, %llu store reopens, %llu spill retries, "
      "%llu acknowledged blocks checked, %llu lost (must be 0), %llu wrong blocks served "
      "(must be 0), %llu damaged records (must be 0)\n",
      name, static_cast<unsigned long long>(operations), static_cast<unsigned long long>(f.runs),
      static_cast<unsigned long long>(f.injected), static_cast<unsigned long long>(f.surfaced),
      static_cast<unsigned long long>(f.open_failures), static_cast<unsigned long long>(f.reopens),
      static_cast<unsigned long long>(f.retries), static_cast<unsigned long long>(f.acknowledged),
      static_cast<unsigned long long>(f.lost), static_cast<unsigned long long>(f.wrong),
      static_cast<unsigned long long>(f.damaged));
  std::fflush(stdout);
}

// Fails the N-th operation of `kinds`, for every N the workload performs.
void Sweep(const char* name, uint32_t kinds) {
  test::TempDir tmp;
  const Prompts p = MakePrompts();
  MakeTemplate(tmp.sub("template"), p.on_disk);
  const std::string dir = tmp.sub("store");

  // A clean run counts the operations.
  CopyStore(tmp.sub("template"), dir);
  auto counter = std::make_shared<FaultFileSystem>();
  counter->Count(kinds);
  RunOutcome clean = RunWorkload(dir, counter, p, [] {});
  REQUIRE(clean.opened);
  REQUIRE(clean.stats.store_errors == 0);
  const uint64_t total = counter->operations();
  REQUIRE(total > 0);

  SweepFigures f;
  const char* only = std::getenv("KVTIER_FAULT_ONLY");  // debugging: one N
  for (uint64_t n = only ? std::atoll(only) : 1; n <= total; n += only ? total : Stride()) {
    CopyStore(tmp.sub("template"), dir);
    auto fs = std::make_shared<FaultFileSystem>();
    fs->FailNth(n, kinds);
    const auto started = std::chrono::steady_clock::now();
    RunOutcome r = RunWorkload(dir, fs, p, [] {});
    if (std::getenv("KVTIER_FAULT_TRACE")) {
      std::fprintf(stderr, "run %llu: %lld ms, %s\n", static_cast<unsigned long long>(n),
                   static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                              std::chrono::steady_clock::now() - started)
                                              .count()),
                   fs->first_fault().c_str());
    }
    INFO("failing operation " << n << " of " << total << " (" << name
                              << "): " << fs->first_fault());
    ++f.runs;
    const bool injected = fs->injected() > 0;
    f.injected += injected;
    const bool surfaced = !r.opened || r.any_call_failed || r.stats.store_errors > 0;
    f.surfaced += injected && surfaced;
    f.open_failures += !r.opened;
    f.reopens += r.reopens;
    f.retries += r.stats.spill_retries;
    f.wrong += r.wrong_blocks;
    CHECK(r.wrong_blocks == 0);
    if (!r.opened) {
      // A failed open names the problem and leaves the store openable.
      CHECK(!r.open_status.message().empty());
    } else {
      INFO("stats: store_errors " << r.stats.store_errors << ", dropped " << r.stats.spill_dropped);
      CHECK(r.recovered);  // the fault cleared: the cache writes again
      CHECK(r.stats.spill_dropped == 0);  // one failure never costs a block
      CHECK(r.stats.corrupt_records == 0);  // an I/O error is not damage
      CHECK(r.max_queue_bytes <= kQueueBudget);
      CHECK(r.queue_blocks_after_flush == 0);  // a flush drains the queue
      if (r.stats.store_errors > 0) CHECK(r.log_lines > 0);  // counted and logged
    }
    Verdict v = Verify(dir, p, r.opened && r.first_acknowledged,
                       r.opened && r.recovered && r.stats.spill_dropped == 0);
    INFO(v.audit.first_problem);
    CHECK(v.audit.clean());
    CHECK(v.lost == 0);
    f.acknowledged += v.acknowledged;
    f.lost += v.lost;
    f.damaged += v.audit.damaged;
  }
  Print(name, total, f);
}

}  // namespace

TEST_CASE("failing any one write, sync or file creation never loses acknowledged blocks or serves a wrong one") {
  Sweep("writes, syncs, creates, renames, deletes", test::kFsWrite | test::kFsSync | test::kFsMeta);
}

TEST_CASE("failing any one read never serves a wrong block and the cache recovers") {
  Sweep("reads", test::kFsRead);
}

TEST_CASE("a disk that keeps failing: the cache serves from memory, counts and logs, stays bounded, and recovers when the fault clears") {
  using test::FsError;
  const auto [label, kinds, error] = GENERATE(table<const char*, uint32_t, FsError>({
      {"appends fail", test::kFsWrite, FsError::kIOError},
      {"syncs fail", test::kFsSync, FsError::kIOError},
      {"every file operation fails", test::kFsAll, FsError::kIOError},
      {"no space left", test::kFsWrite | test::kFsMeta, FsError::kNoSpace},
      {"retryable write errors", test::kFsWrite | test::kFsSync, FsError::kRetryable},
  }));
  INFO("fault: " << label);
  test::Watchdog watchdog(std::string("persistent fault: ") + label, 180);
  test::TempDir tmp;
  const std::string dir = tmp.sub("store");
  const Prompts p = MakePrompts();
  MakeTemplate(dir, p.on_disk);
  auto fs = std::make_shared<FaultFileSystem>();
  LogSink sink;
  const CacheOptions o = Options(dir, &sink);
  std::unique_ptr<BlockStore> store;
  REQUIRE(RocksBlockStore::Open(dir, o.store_options, test::FaultEnv(fs), &store).ok());
  auto* rocks = static_cast<RocksBlockStore*>(store.get());
  std::shared_ptr<CacheCore> core;
  REQUIRE(CacheCore::OpenWithStore(o, std::move(store), &core).ok());

  // The outage: ~40 prompts inserted over a few hundred milliseconds, so the
  // spill queue meets several failed writes and backoffs.
  fs->FailFrom(1, kinds, error);
  const auto outage_start = std::chrono::steady_clock::now();
  uint64_t wrong = 0, max_queue = 0, short_hits = 0;
  std::vector<std::vector<Token>> outage;
  for (uint64_t i = 0; i < 40; ++i) {
    outage.push_back(test::Tokens(kBlocks * 4, 5000 + i));
    Status s;
    InsertPrompt(core.get(), outage.back(), &s);
    REQUIRE(s.ok());  // memory keeps working
    Lease l = core->Lookup(outage.back());
    if (!test::LeaseExact(o.ns, l, outage.back())) ++wrong;
    if (l.num_blocks() != kBlocks) ++short_hits;  // just inserted: must be resident
    l.Release();
    max_queue = std::max(max_queue, core->Stats().queue_bytes);
    std::this_thread::sleep_for(std::chrono::milliseconds(8));
  }
  for (const auto& t : p.on_disk) {  // readable or a miss, never wrong
    Lease l = core->Lookup(t);
    if (!test::LeaseExact(o.ns, l, t)) ++wrong;
  }
  const Status during = core->Flush();
  const CacheStats in_outage = core->Stats();
  const auto outage_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now() - outage_start)
                             .count();
  CHECK(wrong == 0);
  CHECK(short_hits == 0);
  CHECK(!during.ok());  // a flush in an outage says so
  CHECK(!during.message().empty());
  CHECK(in_outage.store_errors > 0);  // counted
  CHECK(max_queue <= kQueueBudget);
  CHECK(sink.size() > 0);  // and it was logged

  // The fault clears: the cache writes again within a bounded wait.
  fs->Clear();
  const auto clear_time = std::chrono::steady_clock::now();
  bool recovered = false;
  for (int attempt = 0; attempt < 250 && !recovered; ++attempt) {
    recovered = core->Flush().ok();
    if (!recovered) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const auto recovery_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::steady_clock::now() - clear_time)
                               .count();
  REQUIRE(recovered);
  std::vector<std::vector<Token>> after;
  for (uint64_t i = 0; i < 3; ++i) {
    after.push_back(test::Tokens(kBlocks * 4, 6000 + i));
    Status s;
    InsertPrompt(core.get(), after.back(), &s);
    REQUIRE(s.ok());
  }
  REQUIRE(core->Flush().ok());
  const CacheStats end = core->Stats();
  const uint64_t reopens = rocks->reopens();
  REQUIRE(core->Close().ok());
  core.reset();

  // Nothing stored before the outage is lost; everything written after it
  // is there; every record is intact.
  Verdict v = VerifyPrompts(dir, {&p.on_disk, &after});
  INFO(v.audit.first_problem);
  CHECK(v.audit.clean());
  CHECK(v.lost == 0);
  std::printf(
      "persistent fault (%s): outage %lld ms, %llu store errors, %llu spill retries, %llu blocks "
      "given up (spill_dropped), %llu store reopens, spill queue peak %llu of %llu bytes, "
      "recovered %lld ms after the fault cleared, %llu wrong blocks (must be 0), %llu stored "
      "blocks lost (must be 0)\n",
      label, static_cast<long long>(outage_ms),
      static_cast<unsigned long long>(in_outage.store_errors),
      static_cast<unsigned long long>(end.spill_retries),
      static_cast<unsigned long long>(end.spill_dropped), static_cast<unsigned long long>(reopens),
      static_cast<unsigned long long>(max_queue), static_cast<unsigned long long>(kQueueBudget),
      static_cast<long long>(recovery_ms), static_cast<unsigned long long>(wrong),
      static_cast<unsigned long long>(v.lost));
  if (std::getenv("KVTIER_FAULT_TRACE")) {
    std::lock_guard<std::mutex> lock(sink.mu);
    for (size_t i = 0; i < sink.lines.size() && i < 12; ++i) std::printf("  log: %s\n", sink.lines[i].c_str());
  }
  std::fflush(stdout);
}

TEST_CASE("a bad sector under records is always detected: never a wrong block, counted, logged and removed") {
  test::Watchdog watchdog("bad sector", 120);
  test::TempDir tmp;
  const std::string dir = tmp.sub("store");
  std::vector<std::vector<Token>> prompts;
  for (uint64_t i = 0; i < 24; ++i) prompts.push_back(test::Tokens(kBlocks * 4, 7000 + i));
  MakeTemplate(dir, prompts, /*compact=*/true);

  auto fs = std::make_shared<FaultFileSystem>();
  fs->CorruptRecordReads(true);
  LogSink sink;
  const CacheOptions o = Options(dir, &sink);
  std::unique_ptr<BlockStore> store;
  REQUIRE(RocksBlockStore::Open(dir, o.store_options, test::FaultEnv(fs), &store).ok());
  std::shared_ptr<CacheCore> core;
  REQUIRE(CacheCore::OpenWithStore(o, std::move(store), &core).ok());
  uint64_t wrong = 0, served = 0;
  for (const auto& t : prompts) {
    Lease l = core->Lookup(t);
    if (!test::LeaseExact(o.ns, l, t)) ++wrong;
    served += l.num_blocks();
  }
  const CacheStats st = core->Stats();
  CHECK(wrong == 0);
  CHECK(served == 0);  // every first block read was damaged
  CHECK(st.corrupt_records == prompts.size());  // each detected once, by its checksum
  CHECK(sink.Mentions("corrupt record"));
  // Detected records are deleted: the damage is not met again.
  for (const auto& t : prompts) {
    const std::vector<Hash128> h = test::Chain(o.ns, t);
    std::vector<uint8_t> present;
    REQUIRE(core->store()->Exists(std::span<const Hash128>(h.data(), 1), &present).ok());
    CHECK(present[0] == 0);
  }
  const uint64_t damaged_reads = fs->injected();
  REQUIRE(core->Close().ok());
  std::printf("bad sector: %llu damaged record reads, %llu corrupt records detected, counted and "
              "removed, %llu read errors, %llu wrong blocks served (must be 0)\n",
              static_cast<unsigned long long>(damaged_reads),
              static_cast<unsigned long long>(st.corrupt_records),
              static_cast<unsigned long long>(st.store_errors), static_cast<unsigned long long>(wrong));
  std::fflush(stdout);
}
