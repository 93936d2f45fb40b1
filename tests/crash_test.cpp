// Crash test: a writer child (tests/reliability/crash_writer.cpp) inserts,
// spills, promotes, compacts and flushes into a real store and reports each
// completed Flush(); the driver kills it with SIGKILL at a random moment
// (during open and WAL recovery, mid-batch, mid-flush, mid-compaction),
// reopens the store and checks: it opens; every record decodes, verifies
// and holds its block's exact bytes; the persisted counters match the
// records; every block of every prompt acknowledged by a completed flush
// before the kill is present; and a lookup never returns a damaged block.
// Then the next child continues on the same store.
//
//   KVTIER_CRASH_CYCLES=N   cycles (default 100)
//   KVTIER_CRASH_SEED=S     replay a run (the seed is printed)
#include <catch2/catch.hpp>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <filesystem>
#include <set>
#include <string>

#include "reliability/crash_workload.h"
#include "reliability/reliability_util.h"
#include "test_util.h"

extern char** environ;

using namespace kvtier;
namespace crash = kvtier::test::crash;

namespace {

uint64_t EnvNumber(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : fallback;
}

std::string WriterPath() {
  const char* dir = std::getenv("KVTIER_TEST_BINARY_DIR");
  return std::string(dir != nullptr ? dir : ".") + "/crash_writer";
}

// What one child reported before it died.
struct ChildRun {
  bool opened = false;
  uint64_t acked_until = 0;  // prompts [start, acked_until) are acknowledged
  bool killed = false;       // died of our SIGKILL (not on its own)
  int exit_code = -1;
};

void ParseLines(std::string* pending, uint64_t start, ChildRun* run) {
  size_t eol;
  while ((eol = pending->find('\n')) != std::string::npos) {
    const std::string line = pending->substr(0, eol);
    pending->erase(0, eol + 1);
    if (line == "open") run->opened = true;
    if (line.rfind("ack ", 0) == 0) run->acked_until = std::strtoull(line.c_str() + 4, nullptr, 10);
  }
  if (run->acked_until == 0) run->acked_until = start;
}

// Starts the writer, lets it run for `delay`, kills it, and collects what it
// said (reading on after the kill: an ack written just before it counts).
ChildRun RunAndKill(const std::string& dir, uint64_t start, uint64_t seed, bool write_through,
                    int threads, std::chrono::milliseconds delay) {
  int out[2];
  REQUIRE(pipe(out) == 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, out[0]);
  posix_spawn_file_actions_addclose(&actions, out[1]);
  const std::string path = WriterPath(), start_s = std::to_string(start),
                    seed_s = std::to_string(seed), wt = write_through ? "1" : "0",
                    th = std::to_string(threads);
  char* argv[] = {const_cast<char*>(path.c_str()), const_cast<char*>(dir.c_str()),
                  const_cast<char*>(start_s.c_str()), const_cast<char*>(seed_s.c_str()),
                  const_cast<char*>(wt.c_str()), const_cast<char*>(th.c_str()), nullptr};
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, path.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  INFO("starting " << path);
  REQUIRE(spawned == 0);

  ChildRun run;
  std::string pending;
  char buf[4096];
  const auto deadline = std::chrono::steady_clock::now() + delay;
  bool eof = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{out[0], POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) > 0) {
      const ssize_t n = read(out[0], buf, sizeof(buf));
      if (n <= 0) {
        eof = true;
        break;
      }
      pending.append(buf, static_cast<size_t>(n));
    }
  }
  kill(pid, SIGKILL);
  while (!eof) {
    const ssize_t n = read(out[0], buf, sizeof(buf));
    if (n <= 0) break;
    pending.append(buf, static_cast<size_t>(n));
  }
  close(out[0]);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  run.killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  ParseLines(&pending, start, &run);
  return run;
}

struct Figures {
  uint64_t cycles = 0, kills_before_open = 0, acked_prompts = 0, acked_blocks = 0,
           acked_checked = 0, lost = 0, served_checked = 0, corrupt_served = 0, damaged = 0,
           unreadable = 0, counter_mismatches = 0, records = 0;
};

}  // namespace

TEST_CASE("a writer killed at random moments never loses a flushed block, and its store always reopens intact") {
  const uint64_t cycles = EnvNumber("KVTIER_CRASH_CYCLES", 100);
  const uint64_t seed = EnvNumber("KVTIER_CRASH_SEED", std::random_device{}());
  std::printf("crash test: seed %llu (KVTIER_CRASH_SEED to replay), %llu cycles\n",
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(cycles));
  std::fflush(stdout);
  INFO("seed " << seed);
  test::Watchdog watchdog("crash test", static_cast<int>(60 + 10 * cycles));
  std::mt19937_64 rng(seed);
  test::TempDir tmp;
  const std::string dir = tmp.sub("store");
  const Namespace ns = crash::CrashNamespace();
  const auto began = std::chrono::steady_clock::now();

  std::vector<uint64_t> acked;  // every acknowledged prompt so far
  uint64_t audited_seq = 0;     // records newer than this get their payload checked
  Figures f;
  for (uint64_t cycle = 0; cycle < cycles; ++cycle) {
    const uint64_t start = cycle * crash::kCycleStride;
    // A quarter of the kills land in the first 40 ms: during open, WAL
    // replay and the first batches; the rest anywhere in 40-400 ms.
    const auto delay = std::chrono::milliseconds(rng() % 4 == 0 ? rng() % 40 : 40 + rng() % 360);
    const bool write_through = rng() % 3 == 0;
    const int threads = 1 + static_cast<int>(rng() % 2);
    const ChildRun run = RunAndKill(dir, start, rng(), write_through, threads, delay);
    INFO("cycle " << cycle << ", kill after " << delay.count() << " ms, write-through "
                  << write_through << ", spill threads " << threads);
    REQUIRE(run.killed);  // it did not die on its own (an error, or a crash)
    ++f.cycles;
    if (!run.opened) ++f.kills_before_open;
    for (uint64_t p = start; p < run.acked_until; ++p) {
      acked.push_back(p);
      f.acked_blocks += crash::PromptBlocks(p);
    }
    f.acked_prompts = acked.size();

    // Reopen: it must open, and everything in it must be intact.
    CacheOptions o = crash::WriterOptions(dir, false, 1);
    o.log = [](std::string_view) {};
    o.store_options.log = o.log;
    std::unique_ptr<Cache> cache;
    Status s = Cache::Open(o, &cache);
    INFO("reopening after the kill: " << s.ToString());
    REQUIRE(s.ok());
    const bool full_audit = cycle % 20 == 19 || cycle + 1 == cycles;
    const test::StoreAudit audit = test::AuditStore(cache->store(), ns, full_audit ? 0 : audited_seq);
    INFO(audit.first_problem);
    CHECK(audit.damaged == 0);
    CHECK(audit.unreadable == 0);
    CHECK(audit.counters_match);
    f.damaged += audit.damaged;
    f.unreadable += audit.unreadable;
    f.counter_mismatches += !audit.counters_match;
    f.records = audit.records;
    audited_seq = audit.max_access_seq;

    // Acknowledged prompts: this cycle's, and a sample of older ones.
    std::vector<uint64_t> check;
    for (uint64_t p = start; p < run.acked_until; ++p) check.push_back(p);
    for (int i = 0; i < 30 && !acked.empty(); ++i) check.push_back(acked[rng() % acked.size()]);
    if (cycle + 1 == cycles) check = acked;  // the last cycle checks them all
    for (uint64_t p : check) {
      const std::vector<Hash128> h = test::Chain(ns, crash::PromptTokens(p));
      std::vector<uint8_t> present;
      REQUIRE(cache->store()->Exists(h, &present).ok());
      for (uint8_t x : present) {
        ++f.acked_checked;
        if (!x) ++f.lost;
      }
    }
    // Lookups never return a damaged block: acknowledged prompts are served
    // whole, unacknowledged ones (of this cycle, maybe half-written) served
    // or not, but exact.
    for (size_t i = 0; i < check.size() && i < 40; ++i) {
      const std::vector<Token> t = crash::PromptTokens(check[i]);
      Lease l = cache->Lookup(t);
      ++f.served_checked;
      if (!test::LeaseExact(ns, l, t)) ++f.corrupt_served;
      CHECK(l.num_blocks() == crash::PromptBlocks(check[i]));
    }
    for (uint64_t p = run.acked_until; p < run.acked_until + 8; ++p) {
      const std::vector<Token> t = crash::PromptTokens(p);
      Lease l = cache->Lookup(t);
      ++f.served_checked;
      if (!test::LeaseExact(ns, l, t)) ++f.corrupt_served;
    }
    CHECK(cache->Stats().corrupt_records == 0);
    REQUIRE(cache->Close().ok());
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
  CHECK(f.lost == 0);
  CHECK(f.corrupt_served == 0);
  std::printf(
      "crash test: %llu cycles, %llu acknowledged blocks (%llu prompts), %llu lost acknowledged "
      "blocks (must be 0), %llu corrupt records served (must be 0); %llu kills before the store "
      "was open, %llu acknowledged-block checks, %llu lookups checked, %llu damaged and %llu "
      "unreadable records on disk (must be 0), %llu counter mismatches (must be 0), %llu records "
      "in the store at the end, %.1f s, seed %llu\n",
      static_cast<unsigned long long>(f.cycles), static_cast<unsigned long long>(f.acked_blocks),
      static_cast<unsigned long long>(f.acked_prompts), static_cast<unsigned long long>(f.lost),
      static_cast<unsigned long long>(f.corrupt_served),
      static_cast<unsigned long long>(f.kills_before_open),
      static_cast<unsigned long long>(f.acked_checked),
      static_cast<unsigned long long>(f.served_checked), static_cast<unsigned long long>(f.damaged),
      static_cast<unsigned long long>(f.unreadable),
      static_cast<unsigned long long>(f.counter_mismatches),
      static_cast<unsigned long long>(f.records), seconds, static_cast<unsigned long long>(seed));
  std::fflush(stdout);
}

TEST_CASE("a store whose creation is killed at any moment opens afterwards") {
  const uint64_t seed = EnvNumber("KVTIER_CRASH_SEED", std::random_device{}());
  INFO("seed " << seed);
  test::Watchdog watchdog("creation kill test", 300);
  std::mt19937_64 rng(seed);
  test::TempDir tmp;
  uint64_t before_open = 0, runs = 0;
  std::set<std::string> leftovers;  // file names found after kills before open
  for (int i = 0; i < 40; ++i) {
    const std::string dir = tmp.sub("store" + std::to_string(i));
    // Spread over the first 200 ms: process start, RocksDB's creation of
    // the database, our column families and format key, the first writes.
    const auto delay = std::chrono::milliseconds(i * 200 / 40 + rng() % 5);
    const ChildRun run = RunAndKill(dir, 0, rng(), false, 1, delay);
    INFO("kill after " << delay.count() << " ms");
    REQUIRE(run.killed);
    ++runs;
    if (!run.opened) {
      ++before_open;
      std::error_code ec;
      for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
        std::string name = e.path().filename().string();
        for (char& c : name)
          if (c >= '0' && c <= '9') c = '#';
        leftovers.insert(name);
      }
    }
    CacheOptions o = crash::WriterOptions(dir, false, 1);
    o.log = [](std::string_view) {};
    o.store_options.log = o.log;
    std::unique_ptr<Cache> cache;
    Status s = Cache::Open(o, &cache);
    INFO("opening the store after the kill: " << s.ToString());
    REQUIRE(s.ok());
    const test::StoreAudit audit = test::AuditStore(cache->store(), crash::CrashNamespace());
    INFO(audit.first_problem);
    CHECK(audit.clean());
  }
  std::string names;
  for (const auto& n : leftovers) names += " " + n;
  std::printf("creation kills: %llu runs, %llu killed before the store was open (files left:%s), "
              "all reopened\n",
              static_cast<unsigned long long>(runs), static_cast<unsigned long long>(before_open),
              names.c_str());
  std::fflush(stdout);
}
