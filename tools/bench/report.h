// What a scenario reports: its parameters, measured figures, the baselines
// measured in the same run, and the target checks (ratio against a
// baseline). Printed as a human table or as one JSON object per scenario.
#ifndef KVTIER_TOOLS_BENCH_REPORT_H_
#define KVTIER_TOOLS_BENCH_REPORT_H_

#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kvtier::bench {

// Which way a target points: the ratio (figure / baseline) must be at least
// (kAtLeast) or at most (kAtMost) the target.
enum class Direction { kAtLeast, kAtMost };

struct Check {
  std::string name;           // short id, e.g. "spill_1_worker"
  std::string figure;         // what was measured, with unit
  double value = 0;
  std::string baseline;       // what it is compared with, with unit
  double baseline_value = 0;
  double ratio = 0;           // value / baseline_value
  Direction direction = Direction::kAtLeast;
  double target = 0;
  bool met = false;

  std::string TargetText() const;  // ">= 0.80x" or "<= 2.00x"
  nlohmann::json ToJson() const;
};

class ScenarioResult {
 public:
  explicit ScenarioResult(std::string name) : name_(std::move(name)) {}

  const std::string& name() const { return name_; }
  const std::vector<Check>& checks() const { return checks_; }

  // Free-form parameters (sizes, layout, threads, ...).
  nlohmann::json& params() { return params_; }
  // Figures of kvtier, and of the baselines, keyed by name with the unit in
  // the key ("mb_per_s", "ns_per_block", ...).
  nlohmann::json& figures() { return figures_; }
  nlohmann::json& baselines() { return baselines_; }
  void set_generator(std::string g) { generator_ = std::move(g); }
  void AddNote(std::string note) { notes_.push_back(std::move(note)); }

  // Adds a target check; the ratio and met are computed here. A baseline
  // of 0 gives ratio 0 (and met only for kAtMost).
  void AddCheck(std::string name, std::string figure, double value, std::string baseline,
                double baseline_value, Direction direction, double target);

  // True when every check is met (and there is at least one).
  bool met() const;

  nlohmann::json ToJson() const;
  void PrintHuman(std::ostream& out) const;

 private:
  std::string name_;
  std::string generator_;
  nlohmann::json params_ = nlohmann::json::object();
  nlohmann::json figures_ = nlohmann::json::object();
  nlohmann::json baselines_ = nlohmann::json::object();
  std::vector<Check> checks_;
  std::vector<std::string> notes_;
};

// The results table of every check of every scenario (markdown), as pasted
// into docs/BENCHMARKS.md.
void PrintSummaryTable(const std::vector<ScenarioResult>& results, std::ostream& out);

// "1.23", "1234", "0.000123": a compact figure for humans.
std::string FormatFigure(double v);

}  // namespace kvtier::bench

#endif  // KVTIER_TOOLS_BENCH_REPORT_H_
