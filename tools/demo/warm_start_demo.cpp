// kvtier-demo: the warm-start demo. Plays an inference server over a
// synthetic multi-turn chat workload with a small memory budget, so blocks
// spill to an embedded RocksDB store; then starts again as a new process on
// the same store, replays the workload, and prints what each run served
// from memory and from disk.
//
//   kvtier-demo [--store DIR] [--memory-blocks N] [--conversations N] ...
//
// The parent process only orchestrates: each run is a fresh child process
// (`kvtier-demo --run ...`) that reports its figures as JSON on stdout.
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "chat_workload.h"
#include "kvtier/cache.h"

namespace {

using kvtier::Cache;
using kvtier::CacheOptions;
using kvtier::Status;
using nlohmann::json;

struct DemoParams {
  std::string store = "demo-store";
  uint64_t memory_blocks = 192;
  kvtier::demo::ChatWorkloadParams workload;
  bool keep = false;
};

kvtier::Namespace DemoNamespace() {
  kvtier::Namespace ns;
  ns.layout = kvtier::BlockLayout{8, 4, 64, 16, kvtier::DType::kBF16};  // 128 KiB per block
  ns.model = "kvtier-demo/chat-8L";
  ns.revision = "r1";
  ns.tokenizer = "demo-tok";
  return ns;
}

// One server lifetime: open, serve every request, close. Returns 0 on
// success; prints the figures as one JSON object on stdout.
int RunServer(const DemoParams& p) {
  CacheOptions o;
  o.ns = DemoNamespace();
  const auto& layout = o.ns.layout;
  o.memory_bytes = p.memory_blocks * layout.block_bytes();
  o.store = p.store;
  o.store_options.max_bytes = 4ull << 30;
  std::unique_ptr<Cache> cache;
  const auto t0 = std::chrono::steady_clock::now();
  Status s = Cache::Open(o, &cache);
  if (!s.ok()) {
    std::fprintf(stderr, "kvtier-demo: cannot open the cache: %s\n", s.ToString().c_str());
    return 2;
  }
  const auto requests = kvtier::demo::MakeChatWorkload(p.workload);
  const uint32_t bs = layout.block_size;
  uint64_t wrong = 0, tokens_saved = 0, tokens_total = 0, rejected = 0;
  std::vector<std::byte> expect(layout.block_bytes());
  std::vector<std::vector<std::byte>> computed;
  std::vector<kvtier::Hash128> hashes;
  for (const auto& prompt : requests) {
    hashes.clear();
    kvtier::PrefixHashes(cache->namespace_fingerprint(), prompt, bs, &hashes);
    kvtier::PrefillSession session = cache->Prepare(prompt);
    const auto& cached = session.cached();
    for (size_t b = 0; b < cached.num_blocks(); ++b) {
      kvtier::demo::FillBlock(layout, hashes[b].lo, expect);
      if (!std::equal(expect.begin(), expect.end(), cached.block(b).begin())) ++wrong;
    }
    tokens_saved += session.uncached_start();
    tokens_total += prompt.size();
    // "Run the model" on the uncached tail: produce its full blocks.
    computed.clear();
    for (size_t b = session.uncached_start() / bs; b < hashes.size(); ++b) {
      computed.emplace_back(layout.block_bytes());
      kvtier::demo::FillBlock(layout, hashes[b].lo, computed.back());
    }
    std::vector<std::span<const std::byte>> spans(computed.begin(), computed.end());
    s = session.StoreBlocks(spans);
    if (s.IsFull()) {
      ++rejected;
    } else if (!s.ok()) {
      std::fprintf(stderr, "kvtier-demo: insert failed: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  const kvtier::CacheStats before_close = cache->Stats();
  s = cache->Close();
  if (!s.ok()) {
    std::fprintf(stderr, "kvtier-demo: close failed: %s\n", s.ToString().c_str());
    return 1;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const kvtier::CacheStats st = cache->Stats();  // after the closing flush
  json out = {
      {"requests", requests.size()},
      {"lookup_blocks", st.lookup_blocks},
      {"memory_hits", st.memory_hits},
      {"disk_hits", st.disk_hits},
      {"misses", st.misses},
      {"tokens_total", tokens_total},
      {"tokens_saved", tokens_saved},
      {"spills", st.spills},
      {"promotions", st.promotions},
      {"bytes_written_raw", st.bytes_written_raw},
      {"bytes_written_stored", st.bytes_written_stored},
      {"disk_records", before_close.disk_records},
      {"disk_bytes", before_close.disk_bytes},
      {"corrupt_records", st.corrupt_records},
      {"store_errors", st.store_errors},
      {"insert_rejected", rejected},
      {"wrong_blocks", wrong},
      {"seconds", seconds},
  };
  std::printf("%s\n", out.dump().c_str());
  return wrong == 0 ? 0 : 1;
}

// Runs `self --run ...` as a new process and parses its JSON report.
bool RunChild(const std::string& self, const DemoParams& p, json* report) {
  int fds[2];
  if (pipe(fds) != 0) return false;
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    std::vector<std::string> args = {self,
                                     "--run",
                                     "--store", p.store,
                                     "--memory-blocks", std::to_string(p.memory_blocks),
                                     "--conversations", std::to_string(p.workload.conversations),
                                     "--turns", std::to_string(p.workload.turns),
                                     "--system-prompts", std::to_string(p.workload.system_prompts)};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(self.c_str(), argv.data());
    _exit(127);
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return false;
  *report = json::parse(out, nullptr, /*allow_exceptions=*/false);
  return !report->is_discarded();
}

std::string Percent(const json& r, const char* field) {
  const double total = r["lookup_blocks"].get<double>();
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", total == 0 ? 0.0 : 100.0 * r[field].get<double>() / total);
  return buf;
}

std::string Mib(double bytes) {
  char buf[32];
  if (bytes < (1 << 20)) {
    std::snprintf(buf, sizeof buf, "%.0f KiB", bytes / 1024);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1 << 20));
  }
  return buf;
}

void PrintTable(const DemoParams& p, const json& a, const json& b) {
  const auto ns = DemoNamespace();
  std::printf("\nkvtier warm-start demo\n");
  std::printf("  store %s (embedded RocksDB), memory budget %llu blocks (%s), layout %s (%s per block)\n",
              p.store.c_str(), static_cast<unsigned long long>(p.memory_blocks),
              Mib(static_cast<double>(p.memory_blocks * ns.layout.block_bytes())).c_str(),
              ns.layout.ToString().c_str(), Mib(static_cast<double>(ns.layout.block_bytes())).c_str());
  std::printf("  workload: %d conversations x %d turns over %d shared system prompts, %llu requests\n\n",
              p.workload.conversations, p.workload.turns, p.workload.system_prompts,
              static_cast<unsigned long long>(a["requests"].get<uint64_t>()));
  auto row = [](const char* name, const std::string& x, const std::string& y) {
    std::printf("  %-30s %18s %22s\n", name, x.c_str(), y.c_str());
  };
  auto num = [](const json& r, const char* f) { return std::to_string(r[f].get<uint64_t>()); };
  row("", "run 1 (cold start)", "run 2 (new process)");
  row("blocks looked up", num(a, "lookup_blocks"), num(b, "lookup_blocks"));
  auto hit = [](const json& r) {
    json h = r;
    h["hits"] = r["memory_hits"].get<uint64_t>() + r["disk_hits"].get<uint64_t>();
    return h;
  };
  row("block hit rate", Percent(hit(a), "hits"), Percent(hit(b), "hits"));
  row("  from memory", Percent(a, "memory_hits"), Percent(b, "memory_hits"));
  row("  from disk", Percent(a, "disk_hits"), Percent(b, "disk_hits"));
  row("prefill tokens saved", num(a, "tokens_saved") + " / " + num(a, "tokens_total"),
      num(b, "tokens_saved") + " / " + num(b, "tokens_total"));
  row("blocks spilled to disk", num(a, "spills"), num(b, "spills"));
  row("blocks promoted from disk", num(a, "promotions"), num(b, "promotions"));
  row("records on disk before close", num(a, "disk_records"), num(b, "disk_records"));
  row("bytes on disk before close", Mib(a["disk_bytes"].get<double>()), Mib(b["disk_bytes"].get<double>()));
  auto ratio = [](const json& r) {
    const double stored = r["bytes_written_stored"].get<double>();
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2fx", stored == 0 ? 0.0 : r["bytes_written_raw"].get<double>() / stored);
    return std::string(stored == 0 ? "-" : buf);
  };
  row("compression ratio (written)", ratio(a), ratio(b));
  row("corrupt records seen", num(a, "corrupt_records"), num(b, "corrupt_records"));
  row("wrong blocks served", num(a, "wrong_blocks"), num(b, "wrong_blocks"));
  char ta[32], tb[32];
  std::snprintf(ta, sizeof ta, "%.2f s", a["seconds"].get<double>());
  std::snprintf(tb, sizeof tb, "%.2f s", b["seconds"].get<double>());
  row("wall time", ta, tb);
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  DemoParams p;
  bool run = false;
  CLI::App app{"kvtier warm-start demo: a chat server that restarts and is warm at once"};
  app.add_option("--store", p.store, "store directory (removed first unless --keep)");
  app.add_option("--memory-blocks", p.memory_blocks, "memory tier budget in blocks")->check(CLI::PositiveNumber);
  app.add_option("--conversations", p.workload.conversations, "chat conversations")->check(CLI::PositiveNumber);
  app.add_option("--turns", p.workload.turns, "turns per conversation")->check(CLI::PositiveNumber);
  app.add_option("--system-prompts", p.workload.system_prompts, "shared system prompts")->check(CLI::PositiveNumber);
  app.add_flag("--keep", p.keep, "keep an existing store instead of starting cold");
  app.add_flag("--run", run, "internal: serve the workload once and report JSON");
  CLI11_PARSE(app, argc, argv);
  if (run) return RunServer(p);

  std::error_code ec;
  if (!p.keep) std::filesystem::remove_all(p.store, ec);
  const std::string self = std::filesystem::read_symlink("/proc/self/exe", ec).string();
  json first, second;
  std::printf("run 1: a server starts cold on %s ...\n", p.store.c_str());
  std::fflush(stdout);
  if (!RunChild(self, p, &first)) {
    std::fprintf(stderr, "kvtier-demo: run 1 failed\n");
    return 1;
  }
  std::printf("run 2: the server restarts as a new process on the same store ...\n");
  std::fflush(stdout);
  if (!RunChild(self, p, &second)) {
    std::fprintf(stderr, "kvtier-demo: run 2 failed\n");
    return 1;
  }
  PrintTable(p, first, second);
  return 0;
}
