// `shared`: aggregate promote throughput of N client processes reading
// through kvtierd, against the same lookups by N threads of one process on
// an embedded store (same data, same cache options, page cache warm).
//
// The clients are this binary run again (`kvtier-bench __shared-client`),
// so they start clean (no threads inherited through fork). A pipe barrier
// starts them together once each has opened its cache; the clock runs from
// the barrier to the last client's answer. The daemon is the kvtierd binary
// built beside kvtier-bench ($KVTIERD overrides).
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "kvtier/cache.h"
#include "kvtier/daemon.h"
#include "scenarios.h"

namespace kvtier::bench {

namespace {

constexpr size_t kBlocksPerPrompt = 16;
constexpr int kClients = 2;
constexpr char kClientCommand[] = "__shared-client";

// What every participant derives the same way from (layout, prompts per
// client): client k owns prompts [k*P, (k+1)*P); block j of prompt g holds
// payload g*16+j of the pool.
struct Work {
  BlockLayout layout = MakeLayout(4, 8, 128, DType::kBF16);  // 256 KiB blocks
  size_t prompts_per_client = 0;
  PayloadPool pool{layout, 64};
  std::vector<std::vector<Token>> prompts;

  explicit Work(size_t per_client)
      : prompts_per_client(per_client),
        prompts(DistinctPrompts(per_client * kClients, kBlocksPerPrompt, layout.block_size, 29)) {}
  size_t first(int client) const { return static_cast<size_t>(client) * prompts_per_client; }
  std::vector<std::span<const std::byte>> Payloads(size_t prompt) const {
    std::vector<std::span<const std::byte>> p(kBlocksPerPrompt);
    for (size_t j = 0; j < kBlocksPerPrompt; ++j) p[j] = pool.Get(prompt * kBlocksPerPrompt + j);
    return p;
  }
  double RawBytes(size_t prompts) const {
    return static_cast<double>(prompts * kBlocksPerPrompt * layout.block_bytes());
  }
};

CacheOptions Options(const Work& work, const std::string& store, int spill_threads) {
  CacheOptions o;
  o.ns = BenchNamespace(work.layout);
  // Room for every block a participant touches: reads never evict.
  o.memory_bytes = (work.prompts.size() + 1) * kBlocksPerPrompt * work.layout.block_bytes();
  o.store = store;
  o.store_options.max_bytes = 0;
  o.spill_policy = SpillPolicy::kWriteThrough;  // the same for both sides
  o.spill_threads = spill_threads;
  return o;
}

// Inserts (fill) or looks up (read) prompts [first, first+count). Returns
// blocks served from disk (read) and checks the bytes after the clock.
uint64_t DoWork(Cache* cache, const Work& work, size_t first, size_t count, bool fill,
                uint64_t* mismatches) {
  uint64_t from_disk = 0;
  for (size_t p = first; p < first + count; ++p) {
    if (fill) {
      CheckOk(cache->InsertBlocks(work.prompts[p], 0, work.Payloads(p)), "insert");
    } else {
      from_disk += cache->Lookup(work.prompts[p]).blocks_from_disk();
    }
  }
  if (fill || mismatches == nullptr) return from_disk;
  for (size_t p = first; p < first + count; ++p) {  // memory hits now
    Lease lease = cache->Lookup(work.prompts[p]);
    const auto expected = work.Payloads(p);
    for (size_t j = 0; j < kBlocksPerPrompt; ++j) {
      if (j >= lease.num_blocks() || std::memcmp(lease.block(j).data(), expected[j].data(),
                                                 expected[j].size()) != 0)
        ++*mismatches;
    }
  }
  return from_disk;
}

std::string SelfPath() { return std::filesystem::read_symlink("/proc/self/exe").string(); }

std::string FindKvtierd() {
  const char* env = std::getenv("KVTIERD");
  if (env != nullptr && *env != '\0') return env;
  const std::filesystem::path self = std::filesystem::path(SelfPath()).parent_path();
  for (const auto& candidate : {self / "kvtierd", self / ".." / "daemon" / "kvtierd"}) {
    if (access(candidate.c_str(), X_OK) == 0) return candidate.lexically_normal().string();
  }
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path != nullptr ? path : "");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const std::string candidate = dir + "/kvtierd";
    if (!dir.empty() && access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  CheckOk(Status::NotFound("no kvtierd beside kvtier-bench nor on $PATH (set $KVTIERD)"), "shared");
  return "";
}

// Runs args[0] (a path) with stderr appended to `stderr_file`, closing
// `close_fds` in the child. The child gets `death_signal` if this process
// dies first (a failed bench leaves no daemon or client behind).
pid_t SpawnProcess(const std::vector<std::string>& args, const std::vector<int>& close_fds,
                   const std::string& stderr_file, int death_signal) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) CheckOk(Status::IOError(std::string("fork failed: ") + std::strerror(errno)), "spawn");
  if (pid == 0) {  // only async-signal-safe calls until exec
    prctl(PR_SET_PDEATHSIG, death_signal);
    if (getppid() != parent) _exit(97);
    for (int fd : close_fds) close(fd);
    const int err = open(stderr_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (err >= 0) dup2(err, 2);
    execv(argv[0], argv.data());
    _exit(98);
  }
  return pid;
}

// kClients long-lived client processes (like servers), driven phase by
// phase: each opens a fresh cache and says "ready"; the parent starts the
// clock and releases them (one byte each on their own go pipe); each says
// "done <blocks from disk>" when its work is over (the clock stops at the
// last one), then "checked <byte mismatches>" after verifying, outside the
// clock. Phase 0 fills the store, the next ones read it.
class Clients {
 public:
  Clients(const std::string& socket, size_t per_client, int read_rounds, const std::string& log)
      : log_(log) {
    int results[2];
    if (pipe(results) != 0) CheckOk(Status::IOError("pipe failed"), "shared clients");
    results_ = results[0];
    for (int k = 0; k < kClients; ++k) {
      int go[2];
      if (pipe(go) != 0) CheckOk(Status::IOError("pipe failed"), "shared clients");
      go_.push_back(go[1]);
      go_read_.push_back(go[0]);
    }
    for (int k = 0; k < kClients; ++k) {
      std::vector<int> close_fds = {results_};
      close_fds.insert(close_fds.end(), go_.begin(), go_.end());
      for (int j = 0; j < kClients; ++j)
        if (j != k) close_fds.push_back(go_read_[j]);
      pids_.push_back(SpawnProcess({SelfPath(), kClientCommand, socket, std::to_string(k),
                                    std::to_string(per_client), std::to_string(read_rounds),
                                    std::to_string(results[1]), std::to_string(go_read_[k])},
                                   close_fds, log, SIGKILL));
    }
    close(results[1]);
    for (int fd : go_read_) close(fd);
  }
  ~Clients() {
    for (int fd : go_) close(fd);
    close(results_);
    for (pid_t pid : pids_) {
      int status = 0;
      waitpid(pid, &status, 0);
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        CheckOk(Status::IOError("a shared-scenario client failed (see " + log_ + ")"), "shared clients");
    }
  }

  // One phase; its seconds from the release to the last "done".
  double Phase(uint64_t* from_disk, uint64_t* mismatches) {
    WaitFor("ready", nullptr);
    Stopwatch w;
    for (int fd : go_) {
      const char go = 1;
      if (write(fd, &go, 1) != 1) CheckOk(Status::IOError("a client is gone (see " + log_ + ")"), "shared");
    }
    WaitFor("done", from_disk);
    const double seconds = w.Seconds();
    WaitFor("checked", mismatches);
    return seconds;
  }

 private:
  // Reads lines "<word> [n]" until kClients lines of `word` have come
  // (lines of clients a step ahead are kept for later); sums n into *sum.
  void WaitFor(const std::string& word, uint64_t* sum) {
    while (seen_[word].first < kClients) {
      const size_t eol = buffer_.find('\n');
      if (eol == std::string::npos) {
        char buf[256];
        const ssize_t n = read(results_, buf, sizeof(buf));
        if (n <= 0) CheckOk(Status::IOError("a client stopped early (see " + log_ + ")"), "shared");
        buffer_.append(buf, static_cast<size_t>(n));
        continue;
      }
      std::istringstream line(buffer_.substr(0, eol));
      buffer_.erase(0, eol + 1);
      std::string got;
      uint64_t n = 0;
      line >> got >> n;
      ++seen_[got].first;
      seen_[got].second += n;
    }
    seen_[word].first -= kClients;
    if (sum != nullptr) *sum += seen_[word].second;
    seen_[word].second = 0;
  }

  std::string log_;
  int results_ = -1;
  std::vector<int> go_, go_read_;
  std::vector<pid_t> pids_;
  std::string buffer_;
  std::map<std::string, std::pair<int, uint64_t>> seen_;  // word -> lines, sum
};

// The embedded side: `threads` threads of this process on one cache share
// the kClients clients' prompts (1 thread: all of them in turn).
double RunThreads(Cache* cache, const Work& work, bool fill, int threads, uint64_t* from_disk,
                  uint64_t* mismatches) {
  const size_t per_thread = work.prompts.size() / static_cast<size_t>(threads);
  std::vector<uint64_t> disk(threads, 0);
  std::vector<std::thread> pool;
  Stopwatch w;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] { disk[t] = DoWork(cache, work, t * per_thread, per_thread, fill, nullptr); });
  }
  for (auto& t : pool) t.join();
  if (fill) CheckOk(cache->Flush(), "flush (embedded fill)");
  const double seconds = w.Seconds();
  for (int t = 0; t < threads && !fill; ++t) {
    *from_disk += disk[t];
    DoWork(cache, work, t * per_thread, per_thread, false, mismatches);  // memory hits now
  }
  return seconds;
}

}  // namespace

int RunSharedClient(int argc, char** argv) {
  // kvtier-bench __shared-client SOCKET CLIENT PROMPTS READ_ROUNDS RESULT_FD GO_FD
  if (argc != 8) {
    std::fprintf(stderr, "kvtier-bench %s: internal use by the shared scenario\n", kClientCommand);
    return 2;
  }
  const std::string socket = argv[2];
  const int client = std::atoi(argv[3]);
  const size_t per_client = std::strtoull(argv[4], nullptr, 10);
  const int read_rounds = std::atoi(argv[5]);
  const int result = std::atoi(argv[6]), go = std::atoi(argv[7]);
  setenv("KVTIER_CLIENT_NAME", ("bench-client-" + std::to_string(client)).c_str(), 1);
  Work work(per_client);
  auto say = [&](const std::string& line) {
    return write(result, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  };
  // One cache for the whole run, as a server keeps it: phase 0 fills it,
  // each later phase empties its memory tier (Clear, then Flush so nothing
  // is in flight) and reads everything back from the daemon.
  std::unique_ptr<Cache> cache;
  CheckOk(Cache::Open(Options(work, "unix:" + socket, 1), &cache), "open shared cache");
  for (int phase = 0; phase <= read_rounds; ++phase) {
    const bool fill = phase == 0;
    if (!fill) {
      cache->Clear();
      CheckOk(cache->Flush(), "flush (shared)");
    }
    char c;
    if (!say("ready\n") || read(go, &c, 1) != 1) return 3;
    const uint64_t from_disk = DoWork(cache.get(), work, work.first(client), per_client, fill, nullptr);
    if (fill) CheckOk(cache->Flush(), "flush (fill)");
    if (!say("done " + std::to_string(from_disk) + "\n")) return 3;
    uint64_t mismatches = 0;
    if (!fill) DoWork(cache.get(), work, work.first(client), per_client, false, &mismatches);
    if (!say("checked " + std::to_string(mismatches) + "\n")) return 3;
  }
  CheckOk(cache->Close(), "close shared cache");
  return 0;
}

ScenarioResult RunSharedScenario(const BenchContext& ctx) {
  ScenarioResult r("shared");
  const size_t per_client = ctx.Size(12, 2);
  const int rounds = ctx.quick ? 1 : 7;  // short rounds: best of many, the machine is noisy
  Work work(per_client);
  const size_t total_prompts = per_client * kClients;
  const double raw = work.RawBytes(total_prompts);
  r.set_generator(work.pool.generator().Describe());
  ctx.Log("shared: " + std::to_string(kClients) + " clients x " + std::to_string(per_client * kBlocksPerPrompt) +
          " blocks of " + std::to_string(work.layout.block_bytes() >> 10) + " KiB");

  // Both sides keep their stores open the whole run, as servers would:
  //  - embedded: one cache in this process, filled by kClients threads;
  //  - shared: a kvtierd on a fresh store and kClients client processes,
  //    each with one cache, filling their share through the daemon.
  // Then the rounds alternate between the two, so both see the same
  // machine (this one is shared and noisy). Each round empties the memory
  // tiers (Clear, then Flush so nothing is in flight) and reads everything
  // back; the embedded side reads with kClients threads and with one
  // thread, and the faster is the baseline. Best of `rounds`, after an
  // unmeasured warm-up round.
  const std::string embedded_dir = ctx.FreshDir("shared-embedded");
  const std::string shared_dir = ctx.FreshDir("shared-daemon");
  const std::string socket = ctx.work_dir + "/shared.sock";
  const std::string log = ctx.work_dir + "/shared.log";
  const pid_t daemon = SpawnProcess({FindKvtierd(), "--store", shared_dir, "--socket", socket,
                                     "--max-disk-bytes", "0"},
                                    {}, log, SIGTERM);
  DaemonStats stats;
  for (int i = 0; i < 3000 && !QueryDaemonStats(socket, 1000, &stats).ok(); ++i) {
    int status;
    if (waitpid(daemon, &status, WNOHANG) == daemon)
      CheckOk(Status::IOError("kvtierd exited at start (see " + log + ")"), "shared");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CheckOk(QueryDaemonStats(socket, 5000, &stats), "reach kvtierd");

  double embedded_fill_s = 0, shared_fill_s = 0;
  double embedded_read_s[2] = {1e30, 1e30};  // [0]: kClients threads, [1]: one thread
  double shared_read_s = 1e30;
  uint64_t embedded_disk = 0, embedded_bad = 0, shared_disk = 0, shared_bad = 0, ignored = 0;
  {
    std::unique_ptr<Cache> cache;
    CheckOk(Cache::Open(Options(work, embedded_dir, kClients), &cache), "open embedded cache");
    embedded_fill_s = RunThreads(cache.get(), work, true, kClients, nullptr, nullptr);
    Clients clients(socket, per_client, rounds + 1, log);
    shared_fill_s = clients.Phase(&ignored, &ignored);
    for (int round = 0; round <= rounds; ++round) {  // round 0: unmeasured warm-up
      for (int variant = 0; variant < 2; ++variant) {
        cache->Clear();
        CheckOk(cache->Flush(), "flush (embedded)");
        uint64_t disk = 0;
        const double s = RunThreads(cache.get(), work, false, variant == 0 ? kClients : 1, &disk, &embedded_bad);
        if (round > 0) embedded_read_s[variant] = std::min(embedded_read_s[variant], s);
        embedded_disk = disk;
      }
      uint64_t disk = 0;
      const double s = clients.Phase(&disk, &shared_bad);
      if (round > 0) shared_read_s = std::min(shared_read_s, s);
      shared_disk = disk;
    }
    CheckOk(cache->Close(), "close (embedded)");
  }
  CheckOk(QueryDaemonStats(socket, 5000, &stats), "read kvtierd counters");
  kill(daemon, SIGTERM);
  int status = 0;
  waitpid(daemon, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    r.AddNote("kvtierd did not stop cleanly (see " + log + ")");

  const double shared_mb_s = MBps(raw, shared_read_s);
  const double embedded_threads_mb_s = MBps(raw, embedded_read_s[0]);
  const double embedded_one_mb_s = MBps(raw, embedded_read_s[1]);
  const double embedded_mb_s = std::max(embedded_threads_mb_s, embedded_one_mb_s);
  const uint64_t expected = total_prompts * kBlocksPerPrompt;
  r.params() = {{"layout", work.layout.ToString()},
                {"block_bytes", work.layout.block_bytes()},
                {"clients", kClients},
                {"blocks_per_client", per_client * kBlocksPerPrompt},
                {"blocks_per_lookup", kBlocksPerPrompt},
                {"raw_mb_per_round", raw / 1e6},
                {"rounds_best_of", rounds},
                {"spill_policy", "write-through (both)"},
                {"page_cache", "warm (store just written), one unmeasured warm-up round"},
                {"memory_tier", "emptied before each round (Clear + Flush); stores stay open"},
                {"order", "embedded and shared rounds alternate"}};
  r.figures() = {{"shared_promote_mb_per_s", shared_mb_s},
                 {"shared_fill_mb_per_s", MBps(raw, shared_fill_s)},
                 {"shared_blocks_from_disk", shared_disk},
                 {"blocks_expected_from_disk", expected},
                 {"shared_byte_mismatches", shared_bad},
                 {"daemon_get_p50_ms", stats.total.get_latency.p50_seconds * 1e3},
                 {"daemon_get_p99_ms", stats.total.get_latency.p99_seconds * 1e3},
                 {"daemon_put_p50_ms", stats.total.put_latency.p50_seconds * 1e3},
                 {"daemon_get_mb", stats.total.get_bytes / 1e6}};
  r.baselines() = {{"embedded_promote_mb_per_s", embedded_mb_s},
                   {"embedded_2_threads_promote_mb_per_s", embedded_threads_mb_s},
                   {"embedded_1_thread_promote_mb_per_s", embedded_one_mb_s},
                   {"embedded_fill_mb_per_s", MBps(raw, embedded_fill_s)},
                   {"embedded_blocks_from_disk", embedded_disk},
                   {"embedded_byte_mismatches", embedded_bad}};
  if (shared_disk != expected || embedded_disk != expected)
    r.AddNote("not every block came from disk (shared " + std::to_string(shared_disk) + ", embedded " +
              std::to_string(embedded_disk) + " of " + std::to_string(expected) + ")");
  if (shared_bad + embedded_bad > 0) r.AddNote("served bytes differed from the inserted ones");
  r.AddCheck("shared_promote_2_clients",
             "aggregate promote MB/s (raw), 2 client processes through kvtierd", shared_mb_s,
             "the same lookups in one process on an embedded store (the faster of 2 threads and 1)",
             embedded_mb_s,
             Direction::kAtLeast, 0.7);
  return r;
}

}  // namespace kvtier::bench
