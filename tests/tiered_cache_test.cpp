// The cache with its disk tier: spill, promote, restart in a new process,
// corruption handling and bad stores. Real RocksDB in a temp dir, real
// child processes.
#include <catch2/catch.hpp>
#include <rocksdb/db.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <random>
#include <thread>

#include "kvtier/cache.h"
#include "kvtier/record.h"
#include "test_util.h"

using namespace kvtier;

namespace {

constexpr uint32_t kBs = 4;

CacheOptions Options(const std::string& dir, size_t memory_blocks, DType dtype = DType::kF16,
                     bool shuffle = true) {
  CacheOptions o;
  o.ns = test::TestNamespace(test::SmallLayout(dtype, kBs));
  o.memory_bytes = memory_blocks * o.ns.layout.block_bytes();
  o.store = dir;
  o.codec.shuffle = shuffle;
  o.log = [](std::string_view) {};
  return o;
}

std::unique_ptr<Cache> Open(const CacheOptions& o) {
  std::unique_ptr<Cache> cache;
  Status s = Cache::Open(o, &cache);
  INFO(s.ToString());
  REQUIRE(s.ok());
  return cache;
}

// The payload of block i of `tokens`: a function of its prefix hash.
std::vector<std::byte> BlockPayload(const Cache& c, std::span<const Token> tokens, size_t i) {
  std::vector<Hash128> h;
  PrefixHashes(c.namespace_fingerprint(), tokens.first((i + 1) * kBs), kBs, &h);
  return test::Payload(c.layout(), h.back().lo ^ h.back().hi);
}

void InsertAll(Cache& c, std::span<const Token> tokens) {
  for (size_t i = 0; i < tokens.size() / kBs; ++i) REQUIRE(c.Insert(tokens, i, BlockPayload(c, tokens, i)).ok());
}

bool Exact(const Cache& c, const Lease& l, std::span<const Token> tokens) {
  for (size_t i = 0; i < l.num_blocks(); ++i) {
    auto expect = BlockPayload(c, tokens, i);
    if (!std::equal(expect.begin(), expect.end(), l.block(i).begin(), l.block(i).end())) return false;
  }
  return true;
}

// Runs `fn` in a child process; returns its exit code.
template <typename Fn>
int InChild(Fn fn) {
  const pid_t pid = fork();
  if (pid == 0) {
    int code = 1;
    try {
      code = fn();
    } catch (...) {
    }
    _exit(code);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

// Overwrites the raw value under `key` in the store's records column
// family, bypassing every check: how a flipped bit or a torn write looks.
void OverwriteRaw(const std::string& dir, const Hash128& key, const std::string& value) {
  std::vector<std::string> names;
  REQUIRE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir, &names).ok());
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  for (auto& n : names) cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  REQUIRE(rocksdb::DB::Open(rocksdb::DBOptions(), dir, cfs, &handles, &db).ok());
  uint8_t k[16];
  key.ToBytes(k);
  REQUIRE(db->Put(rocksdb::WriteOptions(), handles[0], rocksdb::Slice(reinterpret_cast<char*>(k), 16), value).ok());
  for (auto* h : handles) REQUIRE(db->DestroyColumnFamilyHandle(h).ok());
  REQUIRE(db->Close().ok());
  delete db;
}

std::string ReadRaw(Cache& c, const Hash128& key) {
  std::vector<std::string> values;
  std::vector<Status> st;
  const Hash128 keys[1] = {key};
  c.store()->MultiGet(keys, &values, &st);
  REQUIRE(st[0].ok());
  return values[0];
}

}  // namespace

TEST_CASE("blocks round-trip bit-exact through spill, a restart in a new process, and promote") {
  const DType dtype = GENERATE(DType::kF32, DType::kF16, DType::kBF16, DType::kInt8, DType::kFP8E4M3);
  const bool shuffle = GENERATE(true, false);
  test::TempDir dir;
  const auto o = Options(dir.sub("store"), 3, dtype, shuffle);
  std::vector<std::vector<Token>> prompts;
  for (uint64_t p = 0; p < 4; ++p) prompts.push_back(test::Tokens(3 * kBs + 1, p));
  const int code = InChild([&] {
    std::unique_ptr<Cache> c;
    if (!Cache::Open(o, &c).ok()) return 2;
    for (auto& t : prompts)
      for (size_t i = 0; i < 3; ++i)
        if (!c->Insert(t, i, BlockPayload(*c, t, i)).ok()) return 3;
    return c->Close().ok() ? 0 : 4;
  });
  REQUIRE(code == 0);
  auto cache = Open(o);
  for (auto& t : prompts) {
    Lease l = cache->Lookup(t);
    CHECK(l.num_blocks() == 3);
    CHECK(l.blocks_from_disk() == 3);
    CHECK(Exact(*cache, l, t));
  }
  CHECK(cache->Stats().disk_hits == 12);
  CHECK(cache->Stats().corrupt_records == 0);
}

TEST_CASE("evicted blocks spill and come back as disk hits in the same process") {
  test::TempDir dir;
  auto cache = Open(Options(dir.str(), 2));
  auto a = test::Tokens(2 * kBs, 1), b = test::Tokens(2 * kBs, 2);
  InsertAll(*cache, a);
  InsertAll(*cache, b);  // evicts a
  {
    Lease l = cache->Lookup(a);
    CHECK(l.num_blocks() == 2);
    CHECK(Exact(*cache, l, a));
  }
  CacheStats st = cache->Stats();
  CHECK(st.disk_hits + st.memory_hits == 2);  // from the store, or the queue
  CHECK(st.memory_bytes <= st.memory_budget);
  REQUIRE(cache->Flush().ok());
  CHECK(cache->Stats().spills >= 2);
  CHECK(cache->Stats().queue_blocks == 0);
}

TEST_CASE("a block the store already held is not queued for writing again when memory evicts it") {
  // Size of one stored record, from a scratch store.
  uint64_t record_bytes = 0;
  auto a = test::Tokens(2 * kBs, 11), b = test::Tokens(2 * kBs, 12);
  {
    test::TempDir scratch;
    auto cache = Open(Options(scratch.str(), 8));
    InsertAll(*cache, a);
    REQUIRE(cache->Flush().ok());
    REQUIRE(cache->Stats().disk_records == 2);
    record_bytes = cache->Stats().disk_bytes / 2;
  }
  test::TempDir dir;
  auto o = Options(dir.str(), 8);
  o.store_options.max_bytes = 3 * record_bytes;  // room for b, not for a and b
  auto cache = Open(o);
  InsertAll(*cache, a);
  REQUIRE(cache->Flush().ok());  // a on disk, still resident
  InsertAll(*cache, b);
  REQUIRE(cache->Flush().ok());  // b on disk; the budget evicts a's tail (deepest first)
  REQUIRE(cache->Stats().spills == 4);
  REQUIRE(cache->Stats().disk_records == 3);
  cache->Clear();  // a and b leave memory: all were stored, none is written again
  REQUIRE(cache->Flush().ok());
  CacheStats st = cache->Stats();
  CHECK(st.spills == 4);
  CHECK(st.disk_records == 3);
  CHECK(st.queue_blocks == 0);
  CHECK(cache->Lookup(a).num_blocks() == 1);  // the store's budget dropped its tail
  Lease l = cache->Lookup(b);
  CHECK(l.num_blocks() == 2);
  CHECK(l.blocks_from_disk() == 2);
  CHECK(Exact(*cache, l, b));
}

TEST_CASE("a prefix split across tiers (head on disk, tail in memory) is served whole and in order") {
  test::TempDir dir;
  auto cache = Open(Options(dir.str(), 8));
  auto t = test::Tokens(4 * kBs, 7);
  InsertAll(*cache, t);
  REQUIRE(cache->Flush().ok());
  cache->Clear();  // everything leaves memory (it is on disk)
  REQUIRE(cache->Insert(t, 2, BlockPayload(*cache, t, 2)).ok());
  REQUIRE(cache->Insert(t, 3, BlockPayload(*cache, t, 3)).ok());
  const uint64_t hits_before = cache->Stats().memory_hits;
  Lease l = cache->Lookup(t);
  REQUIRE(l.num_blocks() == 4);
  CHECK(l.blocks_from_disk() == 2);
  CHECK(cache->Stats().memory_hits - hits_before == 2);
  CHECK(Exact(*cache, l, t));
  std::vector<Hash128> h;
  PrefixHashes(cache->namespace_fingerprint(), t, kBs, &h);
  for (size_t i = 0; i < 4; ++i) CHECK(l.block_hash(i) == h[i]);
}

TEST_CASE("a clean close makes every resident block durable: the restart is fully warm") {
  test::TempDir dir;
  const auto o = Options(dir.str(), 64);
  auto t = test::Tokens(6 * kBs, 3);
  {
    auto cache = Open(o);
    InsertAll(*cache, t);
    CHECK(cache->Stats().spills == 0);  // nothing was evicted
  }  // destructor closes and flushes
  auto cache = Open(o);
  Lease l = cache->Lookup(t);
  CHECK(l.num_blocks() == 6);
  CHECK(Exact(*cache, l, t));
}

TEST_CASE("write-through writes every insert without waiting for eviction") {
  test::TempDir dir;
  auto o = Options(dir.str(), 64);
  o.spill_policy = SpillPolicy::kWriteThrough;
  auto cache = Open(o);
  auto t = test::Tokens(3 * kBs, 3);
  InsertAll(*cache, t);
  REQUIRE(cache->Flush().ok());
  CHECK(cache->Stats().spills == 3);
  CHECK(cache->Stats().disk_records == 3);
  REQUIRE(cache->Flush().ok());
  CHECK(cache->Stats().spills == 3);  // a second flush writes nothing again
}

TEST_CASE("a corrupt record is a miss, counted and removed, never returned") {
  test::TempDir dir;
  const auto o = Options(dir.str(), 64);
  auto t = test::Tokens(2 * kBs, 11);
  auto other = test::Tokens(2 * kBs, 12);
  std::vector<Hash128> h, ho;
  std::string good, foreign_record;
  {
    auto cache = Open(o);
    InsertAll(*cache, t);
    InsertAll(*cache, other);
    REQUIRE(cache->Flush().ok());
    PrefixHashes(cache->namespace_fingerprint(), t, kBs, &h);
    PrefixHashes(cache->namespace_fingerprint(), other, kBs, &ho);
    good = ReadRaw(*cache, h[1]);
    foreign_record = ReadRaw(*cache, ho[1]);
  }
  RecordHeader header;
  REQUIRE(ParseRecordHeader(good, &header).ok());
  const size_t body_at = kRecordFixedHeaderBytes + 4 * kBs;
  auto reencode = [&](std::vector<Token> tokens, Hash128 parent) {
    RecordIdentity id{header.layout, header.depth, header.namespace_fp, parent, tokens};
    std::vector<std::byte> payload;
    RecordHeader hh;
    REQUIRE(DecodeRecord(good, &hh, &payload).ok());
    std::string out;
    REQUIRE(EncodeRecord(id, payload, CodecOptions{}, &out).ok());
    return out;
  };
  std::string bad;
  const std::string kind = GENERATE("truncated", "bad magic", "flipped payload byte", "flipped header byte",
                                    "wrong tokens", "wrong parent hash", "another prefix's record",
                                    "another namespace's record");
  if (kind == "truncated") bad = good.substr(0, good.size() / 2);
  if (kind == "bad magic") { bad = good; bad[0] = 'X'; }
  if (kind == "flipped payload byte") { bad = good; bad[body_at + (good.size() - body_at) / 2] ^= 0x10; }
  if (kind == "flipped header byte") { bad = good; bad[40] ^= 0x01; }
  if (kind == "wrong tokens") { auto tk = header.tokens; tk[0] ^= 1; bad = reencode(tk, header.parent); }
  if (kind == "wrong parent hash") { bad = reencode(header.tokens, Hash128{1, 2}); }
  if (kind == "another prefix's record") bad = foreign_record;
  if (kind == "another namespace's record") {
    CacheOptions o2 = o;
    o2.ns.salt = "tenant-b";
    test::TempDir dir2;
    o2.store = dir2.str();
    auto c2 = Open(o2);
    InsertAll(*c2, t);
    REQUIRE(c2->Flush().ok());
    std::vector<Hash128> h2;
    PrefixHashes(c2->namespace_fingerprint(), t, kBs, &h2);
    bad = ReadRaw(*c2, h2[1]);
  }
  INFO("corruption: " << kind);
  OverwriteRaw(dir.str(), h[1], bad);
  auto cache = Open(o);
  Lease l = cache->Lookup(t);
  CHECK(l.num_blocks() == 1);  // block 0 is fine, block 1 is a miss
  CHECK(Exact(*cache, l, t));
  CHECK(cache->Stats().corrupt_records == 1);
  std::vector<uint8_t> present;
  const Hash128 keys[1] = {h[1]};
  REQUIRE(cache->store()->Exists(keys, &present).ok());
  CHECK(present[0] == 0);  // removed
}

TEST_CASE("bad stores get a clear error") {
  test::TempDir dir;
  SECTION("a store held by another process") {
    int ready[2], release[2];
    REQUIRE(pipe(ready) == 0);
    REQUIRE(pipe(release) == 0);
    const auto o = Options(dir.str(), 4);
    const pid_t pid = fork();
    if (pid == 0) {
      std::unique_ptr<Cache> c;
      const char ok = Cache::Open(o, &c).ok() ? 'y' : 'n';
      (void)!write(ready[1], &ok, 1);
      char x;
      (void)!read(release[0], &x, 1);
      _exit(0);
    }
    char ok = 0;
    REQUIRE(read(ready[0], &ok, 1) == 1);
    REQUIRE(ok == 'y');
    std::unique_ptr<Cache> c;
    Status s = Cache::Open(o, &c);
    CHECK(s.IsBusy());
    CHECK(s.message().find("held by another process") != std::string::npos);
    REQUIRE(write(release[1], "x", 1) == 1);
    int status;
    waitpid(pid, &status, 0);
    CHECK(Cache::Open(o, &c).ok());  // the lock died with the holder
  }
  SECTION("an unwritable path") {
    std::FILE* f = std::fopen(dir.sub("file").c_str(), "w");
    REQUIRE(f != nullptr);
    std::fclose(f);
    std::unique_ptr<Cache> c;
    Status s = Cache::Open(Options(dir.sub("file") + "/store", 4), &c);
    CHECK(s.IsIOError());
    CHECK(s.message().find("file") != std::string::npos);
  }
  SECTION("a directory that is not a store") {
    std::FILE* f = std::fopen(dir.sub("notes.txt").c_str(), "w");
    REQUIRE(f);
    std::fputs("hello", f);
    std::fclose(f);
    std::unique_ptr<Cache> c;
    Status s = Cache::Open(Options(dir.str(), 4), &c);
    CHECK(s.IsInvalidArgument());
    CHECK(s.message().find("not a kvtier store") != std::string::npos);
  }
  SECTION("the same model with another layout") {
    { auto c = Open(Options(dir.str(), 4)); }
    auto o = Options(dir.str(), 4);
    o.ns.layout.head_dim = 16;
    std::unique_ptr<Cache> c;
    Status s = Cache::Open(o, &c);
    CHECK(s.IsInvalidArgument());
    CHECK(s.message().find("layout") != std::string::npos);
  }
}

TEST_CASE("random lookups, inserts, releases, flushes and reopens match a reference model") {
  const uint64_t seed = GENERATE(11, 22, 33);
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  test::TempDir dir;
  auto o = Options(dir.str(), 6);
  o.store_options.max_bytes = 0;  // ample disk: every block inserted stays servable
  auto cache = Open(o);
  std::vector<std::vector<Token>> prompts;
  auto head = test::Tokens(2 * kBs, seed);
  for (uint64_t p = 0; p < 10; ++p) {
    auto t = p % 2 ? head : std::vector<Token>{};
    auto tail = test::Tokens((2 + p % 3) * kBs, seed * 31 + p);
    t.insert(t.end(), tail.begin(), tail.end());
    prompts.push_back(t);
  }
  // Reference model: how many leading blocks of each prompt were inserted.
  std::map<size_t, size_t> inserted;
  std::vector<std::pair<size_t, Lease>> leases;
  for (int step = 0; step < 400; ++step) {
    const size_t p = rng() % prompts.size();
    const auto& t = prompts[p];
    switch (rng() % 6) {
      case 0:
      case 1: {
        Lease l = cache->Lookup(t);
        REQUIRE(Exact(*cache, l, t));
        // Everything flushed or in memory is servable, up to the memory room.
        if (leases.empty()) REQUIRE(l.num_blocks() >= std::min<size_t>(inserted[p], 6));
        if (rng() % 3 == 0) leases.emplace_back(p, std::move(l));
        break;
      }
      case 2: {
        PrefillSession s = cache->Prepare(t);
        std::vector<std::vector<std::byte>> blocks;
        for (size_t i = s.uncached_start() / kBs; i < t.size() / kBs; ++i) blocks.push_back(BlockPayload(*cache, t, i));
        std::vector<std::span<const std::byte>> spans(blocks.begin(), blocks.end());
        Status st = s.StoreBlocks(spans);
        REQUIRE((st.ok() || st.IsFull()));
        if (st.ok()) inserted[p] = t.size() / kBs;
        break;
      }
      case 3:
        if (!leases.empty()) {
          auto& [lp, l] = leases[rng() % leases.size()];
          REQUIRE(Exact(*cache, l, prompts[lp]));  // pinned bytes never changed
          l.Release();
        }
        break;
      case 4:
        REQUIRE(cache->Flush().ok());
        break;
      case 5:
        if (rng() % 4 == 0) {
          leases.clear();
          cache.reset();
          cache = Open(o);
        }
        break;
    }
    std::erase_if(leases, [](const auto& e) { return e.second.empty(); });
    const CacheStats st = cache->Stats();
    REQUIRE(st.memory_bytes <= st.memory_budget);
    REQUIRE(st.corrupt_records == 0);
  }
}

TEST_CASE("threads sharing prefixes with a disk tier never see a wrong block") {
  test::TempDir dir;
  auto o = Options(dir.str(), 10);
  o.spill_threads = 2;
  auto cache = Open(o);
  auto head = test::Tokens(2 * kBs, 99);
  std::vector<std::vector<Token>> prompts;
  for (uint64_t p = 0; p < 12; ++p) {
    auto t = head;
    auto tail = test::Tokens(3 * kBs, p);
    t.insert(t.end(), tail.begin(), tail.end());
    prompts.push_back(t);
  }
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int th = 0; th < 4; ++th) {
    threads.emplace_back([&, th] {
      std::mt19937_64 rng(th);
      for (int i = 0; i < 300; ++i) {
        const auto& t = prompts[rng() % prompts.size()];
        Lease l = cache->Lookup(t);
        if (!Exact(*cache, l, t)) ++wrong;
        for (size_t b = l.num_blocks(); b < t.size() / kBs; ++b) {
          Status s = cache->Insert(t, b, BlockPayload(*cache, t, b));
          if (!s.ok() && !s.IsFull()) ++wrong;
        }
        if (i % 50 == 0 && !cache->Flush().ok()) ++wrong;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(wrong == 0);
  const CacheStats st = cache->Stats();
  CHECK(st.pinned_blocks == 0);
  CHECK(st.corrupt_records == 0);
  CHECK(st.store_errors == 0);
  CHECK(st.memory_bytes <= st.memory_budget);
}
