// A one-line progress bar with rate and ETA, drawn on stderr only when
// stderr is a terminal (and the user did not pass --no-progress). When
// output goes to a file or a pipe it draws nothing at all.
//
//   verify [##########----------]  52%  5200/10000  1.3k rec/s  ETA 0:04
#ifndef KVTIER_TOOLS_CLI_PROGRESS_H_
#define KVTIER_TOOLS_CLI_PROGRESS_H_

#include <chrono>
#include <cstdint>
#include <string>

namespace kvtier::cli {

// Whether a bar would be drawn: `allowed` and stderr is a terminal.
bool ProgressVisible(bool allowed);

class ProgressBar {
 public:
  enum class Unit { kRecords, kBytes };

  // `total` = 0 draws a count and rate without percentage or ETA.
  ProgressBar(std::string label, uint64_t total, Unit unit, bool allowed);
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;
  // Finish().
  ~ProgressBar();

  void Advance(uint64_t n) { Set(done_ + n); }
  // Redraws at most every 100 ms.
  void Set(uint64_t done);
  // Draws the final state once, then erases the line so the summary that
  // follows starts clean. Idempotent.
  void Finish();

  bool drawing() const { return drawing_; }

 private:
  void Draw();

  std::string label_;
  uint64_t total_;
  Unit unit_;
  bool drawing_;
  bool finished_ = false;
  uint64_t done_ = 0;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

}  // namespace kvtier::cli

#endif  // KVTIER_TOOLS_CLI_PROGRESS_H_
