// The scenarios of BENCHMARKS.md. Each measures kvtier and its baselines in
// the same run on the same data, and returns its figures and target checks.
#ifndef KVTIER_TOOLS_BENCH_SCENARIOS_H_
#define KVTIER_TOOLS_BENCH_SCENARIOS_H_

#include <cstdint>
#include <string>

#include "bench_common.h"
#include "report.h"

namespace kvtier::bench {

ScenarioResult RunLookupScenario(const BenchContext& ctx);
ScenarioResult RunSpillScenario(const BenchContext& ctx);
ScenarioResult RunPromoteScenario(const BenchContext& ctx);
ScenarioResult RunRatioScenario(const BenchContext& ctx);
ScenarioResult RunRestartScenario(const BenchContext& ctx);
ScenarioResult RunReplayScenario(const BenchContext& ctx);
ScenarioResult RunStoresScenario(const BenchContext& ctx);
// `shared`: N client processes through kvtierd vs the same lookups on an
// embedded store in one process (scenario_shared.cc).
ScenarioResult RunSharedScenario(const BenchContext& ctx);
// `kvtier-bench __shared-client ...`: one client process of that scenario.
int RunSharedClient(int argc, char** argv);

// `kvtier-bench replay --trace FILE ...`: the stable interface scripts use.
struct ReplayCommand {
  std::string trace;
  uint64_t memory_blocks = 0;  // 0 = not given
  uint64_t memory_bytes = 0;   // 0 = not given
  std::string store;           // "" = memory-only
  uint32_t block_size = 16;
  std::string layout = "1,8,128";
  std::string dtype = "bf16";
  bool json = false;
};
// Default memory budget when neither --memory-blocks nor --memory-bytes is given.
inline constexpr uint64_t kDefaultReplayMemoryBlocks = 4096;

// Runs the command; prints one JSON object (--json) or a human summary.
// Returns the process exit code.
int RunReplayCommand(const ReplayCommand& cmd);

}  // namespace kvtier::bench

#endif  // KVTIER_TOOLS_BENCH_SCENARIOS_H_
