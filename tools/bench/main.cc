// kvtier-bench: the benchmark harness of BENCHMARKS.md.
//
//   kvtier-bench [all|lookup|spill|promote|ratio|restart|replay|stores|shared]
//                [--quick] [--scale X] [--json] [--dir DIR] [--keep]
//   kvtier-bench replay --trace FILE [--memory-blocks N | --memory-bytes B]
//                [--store DIR|unix:SOCKET] [--block-size 16] [--layout L,H,D]
//                [--dtype f32|f16|bf16] [--json]
//
// Results go to stdout (a human report, or one JSON object per scenario per
// line with --json); progress goes to stderr. Exit code 0 when every
// scenario ran (a missed target is a result, not a failure), 1 when a
// scenario could not run, 2 for bad arguments.
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <thread>

#include <CLI/CLI.hpp>

#include "scenarios.h"

namespace {

using kvtier::bench::BenchContext;
using kvtier::bench::ScenarioResult;

std::string ReadField(const char* path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) {
      auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      auto start = line.find_first_not_of(" \t", colon + 1);
      return start == std::string::npos ? "" : line.substr(start);
    }
  }
  return "?";
}

// Microseconds per first touch of a fresh 4 KiB page (a minor page fault):
// the price of every newly allocated buffer. Cheap on bare metal (~0.1-0.3),
// much dearer on some VMs, where it bounds every path that allocates.
double PageFaultMicros() {
  const size_t bytes = 32u << 20;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return 0;
  kvtier::bench::Stopwatch w;
  for (size_t i = 0; i < bytes; i += 4096) static_cast<volatile char*>(p)[i] = 1;
  const double us = w.Seconds() * 1e6 / (bytes / 4096);
  munmap(p, bytes);
  return us;
}

nlohmann::json Machine() {
  return {{"nproc", std::thread::hardware_concurrency()},
          {"cpu", ReadField("/proc/cpuinfo", "model name")},
          {"ram", ReadField("/proc/meminfo", "MemTotal")},
          {"page_fault_us", PageFaultMicros()}};
}

const std::map<std::string, std::function<ScenarioResult(const BenchContext&)>>& Scenarios() {
  static const std::map<std::string, std::function<ScenarioResult(const BenchContext&)>> m = {
      {"lookup", kvtier::bench::RunLookupScenario},
      {"spill", kvtier::bench::RunSpillScenario},
      {"promote", kvtier::bench::RunPromoteScenario},
      {"ratio", kvtier::bench::RunRatioScenario},
      {"restart", kvtier::bench::RunRestartScenario},
      {"replay", kvtier::bench::RunReplayScenario},
      {"stores", kvtier::bench::RunStoresScenario},
      {"shared", kvtier::bench::RunSharedScenario},
  };
  return m;
}

// The order of `all`: cheap and independent first.
const char* const kAllOrder[] = {"ratio",  "lookup",  "spill",  "promote",
                                 "stores", "restart", "replay", "shared"};

}  // namespace

int main(int argc, char** argv) {
  // The client processes of the shared scenario (this binary, run again).
  if (argc > 1 && std::string(argv[1]) == "__shared-client") return kvtier::bench::RunSharedClient(argc, argv);
  std::string scenario = "all";
  BenchContext ctx;
  bool json = false, keep = false;
  std::string dir;
  kvtier::bench::ReplayCommand replay;

  CLI::App app{"kvtier-bench: kvtier's benchmarks, each against baselines measured in the same run"};
  app.add_option("scenario", scenario,
                 "all, lookup, spill, promote, ratio, restart, replay, stores, shared")
      ->check(CLI::IsMember({"all", "lookup", "spill", "promote", "ratio", "restart", "replay",
                             "stores", "shared"}));
  app.add_flag("--quick", ctx.quick, "Tiny sizes: each scenario takes a couple of seconds");
  app.add_option("--scale", ctx.scale, "Multiply data sizes by X (default 1)")
      ->check(CLI::PositiveNumber);
  app.add_flag("--json", json, "One JSON object per scenario on stdout");
  app.add_option("--dir", dir, "Scratch directory (default: a new one under $TMPDIR)");
  app.add_flag("--keep", keep, "Keep the scratch directory");
  auto* trace = app.add_option("--trace", replay.trace, "replay: the request trace to replay");
  auto* mblocks = app.add_option("--memory-blocks", replay.memory_blocks,
                                 "replay: memory budget in blocks (default 4096)");
  auto* mbytes = app.add_option("--memory-bytes", replay.memory_bytes,
                                "replay: memory budget in payload bytes");
  mblocks->excludes(mbytes);
  auto* store = app.add_option("--store", replay.store,
                               "replay: store directory (used and kept), or unix:SOCKET of a running "
                               "kvtierd (default: memory-only)");
  auto* bs = app.add_option("--block-size", replay.block_size, "replay: tokens per block");
  auto* layout = app.add_option("--layout", replay.layout,
                                "replay: LAYERS,KV_HEADS,HEAD_DIM (default 1,8,128)");
  auto* dtype = app.add_option("--dtype", replay.dtype, "replay: f32, f16 or bf16 (default bf16)")
                    ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help prints and returns 0; every bad argument exits 2.
    return app.exit(e) == 0 ? 0 : 2;
  }

  const bool replay_options = trace->count() + mblocks->count() + mbytes->count() +
                                  store->count() + bs->count() + layout->count() +
                                  dtype->count() > 0;
  if (replay_options && scenario != "replay") {
    std::cerr << "kvtier-bench: --trace, --memory-*, --store, --block-size, --layout and "
                 "--dtype belong to the replay scenario\n";
    return 2;
  }
  if (scenario == "replay" && replay_options && replay.trace.empty()) {
    std::cerr << "kvtier-bench replay: --trace FILE is required with replay options\n";
    return 2;
  }
  if (scenario == "replay" && !replay.trace.empty()) {
    replay.json = json;
    return kvtier::bench::RunReplayCommand(replay);
  }

  bool made_dir = false;
  if (dir.empty()) {
    const char* tmp = getenv("TMPDIR");
    std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/kvtier-bench-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) {
      std::cerr << "kvtier-bench: cannot create a scratch directory under " << tmpl << "\n";
      return 1;
    }
    dir = tmpl;
    made_dir = true;
  } else {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      std::cerr << "kvtier-bench: cannot create " << dir << ": " << ec.message() << "\n";
      return 1;
    }
  }
  ctx.work_dir = dir;

  std::vector<std::string> names;
  if (scenario == "all") {
    names.assign(std::begin(kAllOrder), std::end(kAllOrder));
  } else {
    names.push_back(scenario);
  }
  const nlohmann::json machine = Machine();
  if (!json) {
    std::cout << "kvtier-bench " << (ctx.quick ? "--quick" : "scale " + std::to_string(ctx.scale))
              << " on " << machine["nproc"] << " CPUs (" << machine["cpu"].get<std::string>()
              << "), RAM " << machine["ram"].get<std::string>() << ", "
              << kvtier::bench::FormatFigure(machine["page_fault_us"].get<double>())
              << " us per first touch of a 4 KiB page\n\n";
  }
  std::vector<ScenarioResult> results;
  kvtier::bench::Stopwatch total;
  for (const auto& name : names) {
    kvtier::bench::Stopwatch w;
    ScenarioResult r = Scenarios().at(name)(ctx);
    r.params()["scenario_seconds"] = w.Seconds();
    if (json) {
      nlohmann::json j = r.ToJson();
      j["machine"] = machine;
      j["quick"] = ctx.quick;
      j["scale"] = ctx.scale;
      std::cout << j.dump() << std::endl;
    } else {
      r.PrintHuman(std::cout);
      std::cout.flush();
    }
    ctx.Log(name + " done in " + kvtier::bench::FormatFigure(w.Seconds()) + " s");
    results.push_back(std::move(r));
  }
  if (!json && results.size() > 1) {
    std::cout << "== results (" << kvtier::bench::FormatFigure(total.Seconds()) << " s) ==\n";
    kvtier::bench::PrintSummaryTable(results, std::cout);
  }
  if (made_dir && !keep) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  return 0;
}
