// Disk full and disk budget. Two ways to fill a disk:
//  - in process, through the fault file system's space limit (RocksDB gets
//    NoSpace once its files would outgrow it), with every check in reach;
//  - for real, on a small tmpfs that tests/reliability/disk_full_child.cpp
//    mounts in its own mount namespace (skipped, with a warning, where no
//    tmpfs can be mounted: neither root nor user namespaces).
// Either way: the cache keeps working (inserts, lookups, eviction in
// memory), the disk tier stops admitting (counted, logged, the spill queue
// bounded), resumes once space is back, and nothing already stored is lost.
// The child also checks the budget: a store whose byte budget is below the
// file system's size never fills it, however much is written.
#include <catch2/catch.hpp>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "cache/cache_core.h"
#include "reliability/fault_fs.h"
#include "reliability/reliability_util.h"
#include "store/rocks_block_store.h"
#include "test_util.h"

extern char** environ;

using namespace kvtier;

namespace {

Namespace QuotaNamespace() {
  BlockLayout l;
  l.num_layers = 2;
  l.num_kv_heads = 2;
  l.head_dim = 64;
  l.block_size = 8;
  l.dtype = DType::kF16;  // 8 KiB blocks
  return test::TestNamespace(l, "quota-model");
}

constexpr size_t kBlocks = 4;
std::vector<Token> Prompt(uint64_t p) { return test::Tokens(kBlocks * 8, 777000 + p); }

Status Insert(CacheCore* core, const Namespace& ns, uint64_t p) {
  const std::vector<Token> t = Prompt(p);
  auto blocks = test::KeyedBlocks(ns, t, 0, kBlocks);
  return core->InsertBlocks(t, 0, test::Spans(blocks));
}

}  // namespace

TEST_CASE("a full disk (no space): the cache keeps working, the disk tier stops admitting, then resumes, and nothing stored is lost") {
  test::Watchdog watchdog("disk full (space limit)", 180);
  test::TempDir tmp;
  const std::string dir = tmp.sub("store");
  const Namespace ns = QuotaNamespace();
  std::mutex log_mu;
  std::vector<std::string> log;
  CacheOptions o;
  o.ns = ns;
  o.memory_bytes = 32 * ns.layout.block_bytes();
  o.spill_queue_bytes = 16 * ns.layout.block_bytes();
  o.store = dir;
  o.store_options.max_bytes = 0;  // the disk is the limit
  o.log = [&](std::string_view m) {
    std::lock_guard<std::mutex> lock(log_mu);
    log.emplace_back(m);
  };
  o.store_options.log = o.log;

  auto fs = std::make_shared<test::FaultFileSystem>();
  std::unique_ptr<BlockStore> store;
  REQUIRE(RocksBlockStore::Open(dir, o.store_options, test::FaultEnv(fs), &store).ok());
  std::shared_ptr<CacheCore> core;
  REQUIRE(CacheCore::OpenWithStore(o, std::move(store), &core).ok());
  constexpr uint64_t kBefore = 48;
  for (uint64_t p = 0; p < kBefore; ++p) REQUIRE(Insert(core.get(), ns, p).ok());
  REQUIRE(core->Flush().ok());  // stored: must survive what follows

  // The disk: what is there now plus 2 MiB.
  fs->SetSpaceLimit(dir, fs->space_used() + (2ull << 20));
  uint64_t p = kBefore, full_at = 0, wrong = 0, short_hits = 0, max_queue = 0;
  for (; p < kBefore + 2000; ++p) {
    REQUIRE(Insert(core.get(), ns, p).ok());
    const std::vector<Token> t = Prompt(p);
    Lease l = core->Lookup(t);
    if (!test::LeaseExact(ns, l, t)) ++wrong;
    if (l.num_blocks() != kBlocks) ++short_hits;
    l.Release();
    const CacheStats st = core->Stats();
    max_queue = std::max(max_queue, st.queue_bytes);
    if (full_at == 0 && st.store_errors > 0) full_at = p;
    if (full_at != 0 && p > full_at + 150) break;
  }
  REQUIRE(full_at != 0);  // the disk filled
  const Status during = core->Flush();
  const CacheStats in_full = core->Stats();
  CHECK(!during.ok());
  CHECK(wrong == 0);
  CHECK(short_hits == 0);  // memory kept serving what it holds
  CHECK(max_queue <= o.spill_queue_bytes);
  CHECK(in_full.spill_dropped > 0);  // the disk tier stopped admitting
  CHECK(in_full.evictions > 0);      // memory kept evicting
  {
    std::lock_guard<std::mutex> lock(log_mu);
    bool named = false;
    for (const auto& l : log) named = named || l.find("No space") != std::string::npos;
    CHECK(named);  // logged, naming the cause
  }

  // Space comes back.
  fs->Clear();
  bool recovered = false;
  for (int attempt = 0; attempt < 250 && !recovered; ++attempt) {
    recovered = core->Flush().ok();
    if (!recovered) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  REQUIRE(recovered);
  const uint64_t after = p + 1;
  for (uint64_t q = after; q < after + 16; ++q) REQUIRE(Insert(core.get(), ns, q).ok());
  REQUIRE(core->Flush().ok());
  const CacheStats end = core->Stats();
  REQUIRE(core->Close().ok());
  core.reset();

  std::unique_ptr<BlockStore> reopened;
  REQUIRE(OpenBlockStore(dir, o.store_options, &reopened).ok());
  const test::StoreAudit audit = test::AuditStore(reopened.get(), ns);
  INFO(audit.first_problem);
  CHECK(audit.clean());
  uint64_t lost = 0;
  auto expect_present = [&](uint64_t q) {
    const std::vector<Hash128> h = test::Chain(ns, Prompt(q));
    std::vector<uint8_t> present;
    REQUIRE(reopened->Exists(h, &present).ok());
    for (uint8_t x : present) lost += x == 0;
  };
  for (uint64_t q = 0; q < kBefore; ++q) expect_present(q);
  for (uint64_t q = after; q < after + 16; ++q) expect_present(q);
  CHECK(lost == 0);
  std::printf("disk full (space limit, 2 MiB left): full after %llu prompts; %llu prompts served from "
              "memory while full, %llu store errors, %llu blocks given up, spill queue peak %llu of "
              "%llu bytes; resumed; %llu records intact on reopen, %llu stored blocks lost (must be "
              "0), %llu wrong blocks (must be 0)\n",
              static_cast<unsigned long long>(full_at - kBefore),
              static_cast<unsigned long long>(p - full_at),
              static_cast<unsigned long long>(in_full.store_errors),
              static_cast<unsigned long long>(end.spill_dropped),
              static_cast<unsigned long long>(max_queue),
              static_cast<unsigned long long>(o.spill_queue_bytes),
              static_cast<unsigned long long>(audit.verified), static_cast<unsigned long long>(lost),
              static_cast<unsigned long long>(wrong));
  std::fflush(stdout);
}

TEST_CASE("on a real tmpfs: the budget keeps a store off a small disk, and a disk that fills is survived") {
  test::Watchdog watchdog("disk full (tmpfs child)", 300);
  const char* bin = std::getenv("KVTIER_TEST_BINARY_DIR");
  const std::string path = std::string(bin != nullptr ? bin : ".") + "/disk_full_child";
  int out[2];
  REQUIRE(pipe(out) == 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, out[0]);
  posix_spawn_file_actions_addclose(&actions, out[1]);
  char* argv[] = {const_cast<char*>(path.c_str()), const_cast<char*>("128"), nullptr};
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, path.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  INFO("starting " << path);
  REQUIRE(spawned == 0);
  std::string output;
  char buf[4096];
  ssize_t n;
  while ((n = read(out[0], buf, sizeof(buf))) > 0) output.append(buf, static_cast<size_t>(n));
  close(out[0]);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::printf("%s", output.c_str());
  std::fflush(stdout);
  if (code == 77) {
    WARN("skipped: " << output);
    return;
  }
  INFO(output);
  CHECK(code == 0);
}
