// What every scenario shares: the run's settings (quick/scale, scratch
// directory), a stopwatch, deterministic prompts and payloads, and parsing
// of --layout / --dtype.
#ifndef KVTIER_TOOLS_BENCH_BENCH_COMMON_H_
#define KVTIER_TOOLS_BENCH_BENCH_COMMON_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kv_data.h"
#include "kvtier/hash.h"
#include "kvtier/layout.h"
#include "kvtier/status.h"
#include "report.h"

namespace kvtier::bench {

struct BenchContext {
  bool quick = false;  // each scenario takes a couple of seconds (CI smoke)
  double scale = 1.0;  // multiplies data sizes (ignored with quick)
  std::string work_dir;  // scratch space for stores and files; must exist

  // n scaled for this run: quick_n with --quick, else max(1, n * scale).
  uint64_t Size(uint64_t n, uint64_t quick_n) const;
  // A fresh, empty directory work_dir/name (removed first if present).
  std::string FreshDir(const std::string& name) const;
  // Progress for humans on stderr (never on stdout, which holds results).
  void Log(const std::string& msg) const;
};

class Stopwatch {
 public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}
  void Reset() { start_ = std::chrono::steady_clock::now(); }
  double Seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

// A layout "LAYERS,KV_HEADS,HEAD_DIM" with block size and dtype.
// InvalidArgument naming the bad part.
Status ParseLayout(const std::string& text, uint32_t block_size, const std::string& dtype,
                   BlockLayout* layout);
BlockLayout MakeLayout(uint32_t layers, uint32_t kv_heads, uint32_t head_dim, DType dtype,
                       uint32_t block_size = 16);

// The bench's namespace ("kvtier-bench/synthetic" @ "bench1") over `layout`.
Namespace BenchNamespace(const BlockLayout& layout);

// `count` distinct prompts of `blocks` full blocks each; prompt i's tokens
// are a deterministic function of (seed, i).
std::vector<std::vector<Token>> DistinctPrompts(size_t count, size_t blocks, uint32_t block_size,
                                                uint64_t seed);

// The prefix hashes of every full block of `tokens` under `ns`.
std::vector<Hash128> BlockHashes(const Namespace& ns, std::span<const Token> tokens);

// A pool of `count` distinct payloads from the K/V generator: scenarios
// cycle through it so payload synthesis stays out of timed loops.
class PayloadPool {
 public:
  PayloadPool(const BlockLayout& layout, size_t count, uint64_t seed = 1);
  std::span<const std::byte> Get(size_t i) const {
    const auto& p = payloads_[i % payloads_.size()];
    return {p.data(), p.size()};
  }
  size_t size() const { return payloads_.size(); }
  const KvDataGenerator& generator() const { return generator_; }

 private:
  KvDataGenerator generator_;
  std::vector<std::vector<std::byte>> payloads_;
};

// The most payload bytes a scenario lets sit in memory without a copy on
// disk when it calls Flush()/Close(): under CacheOptions' default 256 MiB
// spill queue. (SpillQueue::Enqueue deadlocks when one Flush hands it more
// than its budget; see docs/BENCHMARKS.md, "Known library issues".)
inline constexpr uint64_t kUnspilledBytesLimit = 128ull << 20;

// min(blocks, the blocks of `layout` that fit in kUnspilledBytesLimit).
uint64_t CapUnspilledBlocks(const BlockLayout& layout, uint64_t blocks);

// CPU seconds (user + system) used by every thread of this process so far:
// beside a wall-clock figure it tells work from waiting on a busy machine.
double ProcessCpuSeconds();

// Minor page faults of this process so far (fresh memory touched).
uint64_t ProcessMinorFaults();

// Bytes this process (every thread) has handed to write(2) and friends so
// far (`wchar` of /proc/self/io); 0 where that file is unreadable.
uint64_t ProcessWrittenBytes();

// Waits until this process is idle (under 5% of one core over 200 ms, so
// RocksDB's background flushes and compactions are done), at most
// `max_seconds`. Returns the seconds waited.
double WaitForIdle(double max_seconds);

// Bytes per second as MB/s (10^6).
inline double MBps(double bytes, double seconds) {
  return seconds > 0 ? bytes / seconds / 1e6 : 0;
}

// Aborts the process with a message when a call the bench depends on fails:
// a bench that keeps going after a failed setup measures nothing.
void CheckOk(const Status& s, const std::string& what);

}  // namespace kvtier::bench

#endif  // KVTIER_TOOLS_BENCH_BENCH_COMMON_H_
