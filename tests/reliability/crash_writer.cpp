// crash_writer: the child process of tests/crash_test.cpp. Opens a cache
// on a store, inserts prompts (spilling through a small memory budget),
// looks up older ones (promotes, recency refreshes), flushes every few
// prompts and compacts now and then, reporting each completed flush on
// stdout (see crash_workload.h), until the driver kills it with SIGKILL.
//
//   crash_writer STORE_DIR START_PROMPT SEED WRITE_THROUGH(0|1) SPILL_THREADS
//
// Exits on its own only on an error (code 2, message on stderr) or when
// orphaned (its parent is gone) or after 20000 prompts.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "reliability/crash_workload.h"
#include "reliability/reliability_util.h"

using namespace kvtier;

namespace {

void Say(const std::string& line) {
  const std::string out = line + "\n";
  // One write(2) per line: the driver may read it after the kill.
  if (write(STDOUT_FILENO, out.data(), out.size()) != static_cast<ssize_t>(out.size())) _exit(3);
}

[[noreturn]] void Fail(const std::string& what, const Status& s) {
  std::fprintf(stderr, "crash_writer: %s: %s\n", what.c_str(), s.ToString().c_str());
  _exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: crash_writer STORE_DIR START_PROMPT SEED WRITE_THROUGH SPILL_THREADS\n");
    return 2;
  }
  const std::string dir = argv[1];
  const uint64_t start = std::strtoull(argv[2], nullptr, 10);
  std::mt19937_64 rng(std::strtoull(argv[3], nullptr, 10));
  CacheOptions o = test::crash::WriterOptions(dir, argv[4][0] == '1', std::atoi(argv[5]));
  o.log = [](std::string_view) {};  // the driver judges by the store's contents
  o.store_options.log = o.log;
  const pid_t parent = getppid();

  std::unique_ptr<Cache> cache;
  Status s = Cache::Open(o, &cache);
  if (!s.ok()) Fail("opening the cache", s);
  Say("open");
  for (uint64_t p = start; p < start + 20000; ++p) {
    if (getppid() != parent) return 0;  // orphaned: the driver is gone
    const std::vector<Token> tokens = test::crash::PromptTokens(p);
    auto blocks = test::KeyedBlocks(o.ns, tokens, 0, test::crash::PromptBlocks(p));
    s = cache->InsertBlocks(tokens, 0, test::Spans(blocks));
    if (!s.ok()) Fail("inserting prompt " + std::to_string(p), s);
    if (p > start && rng() % 3 == 0) {
      // An older prompt, of this run or an earlier one: promotes and touches.
      const uint64_t cycle = p / test::crash::kCycleStride;
      const uint64_t back = rng() % 2 ? start + rng() % (p - start)
                                      : (rng() % (cycle + 1)) * test::crash::kCycleStride + rng() % 40;
      Lease l = cache->Lookup(test::crash::PromptTokens(back));
      (void)l;
    }
    if (p % 4 == 3) {
      s = cache->Flush();
      const CacheStats st = cache->Stats();
      if (s.ok() && st.spill_dropped == 0 && st.store_errors == 0) Say("ack " + std::to_string(p + 1));
    }
    if (p % 29 == 28) {
      CompactResult compacted;
      s = cache->store()->Compact(&compacted);
      if (!s.ok()) Fail("compacting", s);
    }
  }
  return 0;
}
