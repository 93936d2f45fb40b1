#include "format.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>

namespace kvtier::cli {

namespace {

// Splits "1.5MiB" into 1.5 and "mib" (lower case); false if no number.
bool SplitNumber(std::string_view text, double* number, std::string* unit) {
  std::string s(text);
  if (s.empty() || !(std::isdigit(static_cast<unsigned char>(s[0])) || s[0] == '.')) return false;
  char* end = nullptr;
  *number = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || !std::isfinite(*number) || *number < 0) return false;
  unit->clear();
  for (const char* p = end; *p; ++p) {
    if (*p == ' ') continue;
    unit->push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(*p))));
  }
  return true;
}

}  // namespace

std::string FormatBytes(uint64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double v = static_cast<double>(bytes);
  int unit = 0;
  while (v >= 1024 && unit < 5) {
    v /= 1024;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), v < 10 ? "%.2f %s" : (v < 100 ? "%.1f %s" : "%.0f %s"), v,
                kUnits[unit]);
  return buf;
}

std::string FormatRatio(uint64_t raw, uint64_t stored) {
  if (stored == 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2fx", static_cast<double>(raw) / static_cast<double>(stored));
  return buf;
}

std::string FormatTime(int64_t unix_us) {
  if (unix_us == 0) return "-";
  std::time_t t = static_cast<std::time_t>(unix_us / 1000000);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

std::string FormatAge(int64_t unix_us, int64_t now_us) {
  if (unix_us == 0) return "-";
  int64_t s = (now_us - unix_us) / 1000000;
  if (s < 0) return "in the future";
  if (s < 120) return std::to_string(s) + "s ago";
  if (s < 2 * 3600) return std::to_string(s / 60) + "m ago";
  if (s < 2 * 86400) return std::to_string(s / 3600) + "h ago";
  return std::to_string(s / 86400) + "d ago";
}

std::string Count(uint64_t n, std::string_view noun) {
  return std::to_string(n) + " " + std::string(noun) + (n == 1 ? "" : "s");
}

std::string FormatClock(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  auto total = static_cast<uint64_t>(seconds + 0.5);
  char buf[32];
  if (total >= 3600) {
    std::snprintf(buf, sizeof(buf), "%llu:%02llu:%02llu",
                  static_cast<unsigned long long>(total / 3600),
                  static_cast<unsigned long long>(total / 60 % 60),
                  static_cast<unsigned long long>(total % 60));
  } else {
    std::snprintf(buf, sizeof(buf), "%llu:%02llu", static_cast<unsigned long long>(total / 60),
                  static_cast<unsigned long long>(total % 60));
  }
  return buf;
}

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool ParseBytes(std::string_view text, uint64_t* bytes) {
  double number;
  std::string unit;
  if (!SplitNumber(text, &number, &unit)) return false;
  double scale;
  if (unit.empty() || unit == "b") {
    scale = 1;
  } else {
    static const std::string kPrefixes = "kmgtp";
    size_t power = kPrefixes.find(unit[0]);
    std::string rest = unit.substr(1);
    if (power == std::string::npos || !(rest.empty() || rest == "b" || rest == "ib")) return false;
    scale = std::pow(1024.0, static_cast<double>(power + 1));
  }
  double value = number * scale;
  if (value >= 18446744073709551615.0) return false;
  *bytes = static_cast<uint64_t>(value);
  return true;
}

bool ParseDuration(std::string_view text, int64_t* micros) {
  double number;
  std::string unit;
  if (!SplitNumber(text, &number, &unit)) return false;
  double seconds;
  if (unit.empty() || unit == "s") {
    seconds = number;
  } else if (unit == "m" || unit == "min") {
    seconds = number * 60;
  } else if (unit == "h") {
    seconds = number * 3600;
  } else if (unit == "d") {
    seconds = number * 86400;
  } else if (unit == "w") {
    seconds = number * 7 * 86400;
  } else {
    return false;
  }
  if (seconds > 1e11) return false;  // ~3000 years: certainly a typo
  *micros = static_cast<int64_t>(seconds * 1e6);
  return true;
}

void Table::AddColumn(std::string header, bool right_align) {
  headers_.push_back(std::move(header));
  right_.push_back(right_align);
}

void Table::AddRow(std::vector<std::string> cells) {
  cells.resize(headers_.size());
  rows_.push_back(std::move(cells));
}

void Table::Print(std::FILE* out, int indent) const {
  std::vector<size_t> width(headers_.size());
  for (size_t c = 0; c < headers_.size(); ++c) {
    width[c] = headers_[c].size();
    for (const auto& row : rows_) width[c] = std::max(width[c], row[c].size());
  }
  auto print_row = [&](const std::vector<std::string>& cells) {
    std::string line(static_cast<size_t>(indent), ' ');
    for (size_t c = 0; c < cells.size(); ++c) {
      std::string pad(width[c] - cells[c].size(), ' ');
      bool last = c + 1 == cells.size();
      line += right_[c] ? pad + cells[c] : cells[c] + (last ? "" : pad);
      if (!last) line += "  ";
    }
    std::fprintf(out, "%s\n", line.c_str());
  };
  print_row(headers_);
  for (const auto& row : rows_) print_row(row);
}

}  // namespace kvtier::cli
