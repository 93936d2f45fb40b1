#include "report.h"

#include <cmath>
#include <cstdio>

namespace kvtier::bench {

namespace {

std::string FormatJsonValue(const nlohmann::json& v) {
  if (v.is_number_float()) return FormatFigure(v.get<double>());
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

void PrintFlat(const std::string& prefix, const nlohmann::json& obj, std::ostream& out) {
  for (const auto& [key, value] : obj.items()) {
    if (value.is_object()) {
      PrintFlat(prefix + key + ".", value, out);
    } else {
      out << "    " << prefix << key << " = " << FormatJsonValue(value) << "\n";
    }
  }
}

void PrintObject(const char* title, const nlohmann::json& obj, std::ostream& out) {
  if (obj.empty()) return;
  out << "  " << title << ":\n";
  PrintFlat("", obj, out);
}

}  // namespace

std::string FormatFigure(double v) {
  char buf[64];
  double a = std::fabs(v);
  if (v == 0) return "0";
  if (a >= 1000) {
    std::snprintf(buf, sizeof(buf), "%.0f", v);
  } else if (a >= 10) {
    std::snprintf(buf, sizeof(buf), "%.1f", v);
  } else if (a >= 0.01) {
    std::snprintf(buf, sizeof(buf), "%.3f", v);
  } else {
    std::snprintf(buf, sizeof(buf), "%.3g", v);
  }
  return buf;
}

std::string Check::TargetText() const {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%s %.2fx", direction == Direction::kAtLeast ? ">=" : "<=",
                target);
  return buf;
}

nlohmann::json Check::ToJson() const {
  return {{"name", name},
          {"figure", figure},
          {"value", value},
          {"baseline", baseline},
          {"baseline_value", baseline_value},
          {"ratio", ratio},
          {"target", TargetText()},
          {"met", met}};
}

void ScenarioResult::AddCheck(std::string name, std::string figure, double value,
                              std::string baseline, double baseline_value, Direction direction,
                              double target) {
  Check c;
  c.name = std::move(name);
  c.figure = std::move(figure);
  c.value = value;
  c.baseline = std::move(baseline);
  c.baseline_value = baseline_value;
  c.ratio = baseline_value != 0 ? value / baseline_value : 0;
  c.direction = direction;
  c.target = target;
  c.met = direction == Direction::kAtLeast ? c.ratio >= target : c.ratio <= target;
  checks_.push_back(std::move(c));
}

bool ScenarioResult::met() const {
  if (checks_.empty()) return false;
  for (const auto& c : checks_) {
    if (!c.met) return false;
  }
  return true;
}

nlohmann::json ScenarioResult::ToJson() const {
  nlohmann::json j;
  j["name"] = name_;
  j["generator"] = generator_;
  j["params"] = params_;
  j["figures"] = figures_;
  j["baselines"] = baselines_;
  nlohmann::json checks = nlohmann::json::array();
  nlohmann::json ratio = nlohmann::json::object();
  nlohmann::json target = nlohmann::json::object();
  for (const auto& c : checks_) {
    checks.push_back(c.ToJson());
    ratio[c.name] = c.ratio;
    target[c.name] = c.TargetText();
  }
  j["checks"] = checks;
  j["ratio"] = ratio;
  j["target"] = target;
  j["met"] = met();
  j["notes"] = notes_;
  return j;
}

void ScenarioResult::PrintHuman(std::ostream& out) const {
  out << "== " << name_ << " ==\n";
  if (!generator_.empty()) out << "  data: " << generator_ << "\n";
  PrintObject("params", params_, out);
  PrintObject("figures (kvtier)", figures_, out);
  PrintObject("baselines (same run)", baselines_, out);
  if (!checks_.empty()) {
    out << "  checks:\n";
    for (const auto& c : checks_) {
      out << "    " << (c.met ? "[met]    " : "[MISSED] ") << c.figure << " = "
          << FormatFigure(c.value) << " vs " << c.baseline << " = "
          << FormatFigure(c.baseline_value) << ": ratio " << FormatFigure(c.ratio)
          << ", target " << c.TargetText() << "\n";
    }
  }
  for (const auto& n : notes_) out << "  note: " << n << "\n";
  out << "\n";
}

void PrintSummaryTable(const std::vector<ScenarioResult>& results, std::ostream& out) {
  out << "| scenario | figure | value | baseline (same run) | value | ratio | target | met? |\n"
      << "| --- | --- | --- | --- | --- | --- | --- | --- |\n";
  for (const auto& r : results) {
    for (const auto& c : r.checks()) {
      out << "| " << r.name() << " | " << c.figure << " | " << FormatFigure(c.value) << " | "
          << c.baseline << " | " << FormatFigure(c.baseline_value) << " | "
          << FormatFigure(c.ratio) << " | " << c.TargetText() << " | "
          << (c.met ? "yes" : "**no**") << " |\n";
    }
  }
}

}  // namespace kvtier::bench
