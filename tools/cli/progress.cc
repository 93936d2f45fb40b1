#include "progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "format.h"

namespace kvtier::cli {

namespace {

constexpr int kBarWidth = 24;
constexpr auto kRedrawInterval = std::chrono::milliseconds(100);

std::string FormatRate(double per_second, ProgressBar::Unit unit) {
  if (unit == ProgressBar::Unit::kBytes)
    return FormatBytes(static_cast<uint64_t>(per_second)) + "/s";
  char buf[32];
  if (per_second >= 1e6)
    std::snprintf(buf, sizeof(buf), "%.1fM rec/s", per_second / 1e6);
  else if (per_second >= 1e3)
    std::snprintf(buf, sizeof(buf), "%.1fk rec/s", per_second / 1e3);
  else
    std::snprintf(buf, sizeof(buf), "%.0f rec/s", per_second);
  return buf;
}

std::string FormatAmount(uint64_t n, ProgressBar::Unit unit) {
  return unit == ProgressBar::Unit::kBytes ? FormatBytes(n) : std::to_string(n);
}

}  // namespace

bool ProgressVisible(bool allowed) { return allowed && isatty(STDERR_FILENO) == 1; }

ProgressBar::ProgressBar(std::string label, uint64_t total, Unit unit, bool allowed)
    : label_(std::move(label)),
      total_(total),
      unit_(unit),
      drawing_(ProgressVisible(allowed)),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {
  if (drawing_) Draw();
}

ProgressBar::~ProgressBar() { Finish(); }

void ProgressBar::Set(uint64_t done) {
  done_ = done;
  if (!drawing_ || finished_) return;
  auto now = std::chrono::steady_clock::now();
  if (now - last_draw_ < kRedrawInterval) return;
  last_draw_ = now;
  Draw();
}

void ProgressBar::Finish() {
  if (finished_) return;
  finished_ = true;
  if (!drawing_) return;
  Draw();
  std::fputs("\r\033[K", stderr);
  std::fflush(stderr);
}

void ProgressBar::Draw() {
  double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double rate = elapsed > 0 ? static_cast<double>(done_) / elapsed : 0;
  std::string line = "\r" + label_ + " ";
  if (total_ > 0) {
    double fraction = std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_));
    int filled = static_cast<int>(fraction * kBarWidth);
    line += "[" + std::string(filled, '#') + std::string(kBarWidth - filled, '-') + "]";
    char pct[16];
    std::snprintf(pct, sizeof(pct), " %3d%%  ", static_cast<int>(fraction * 100));
    line += pct + FormatAmount(done_, unit_) + "/" + FormatAmount(total_, unit_);
    line += "  " + FormatRate(rate, unit_);
    double eta = rate > 0 ? static_cast<double>(total_ - std::min(done_, total_)) / rate : -1;
    line += "  ETA " + (done_ >= total_ ? std::string("0:00") : FormatClock(eta));
  } else {
    line += FormatAmount(done_, unit_) + "  " + FormatRate(rate, unit_);
  }
  line += "\033[K";
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
}

}  // namespace kvtier::cli
