// Human-readable output for the `kvtier` tool: sizes, times, durations and
// aligned tables. JSON output never goes through here (it keeps raw numbers).
#ifndef KVTIER_TOOLS_CLI_FORMAT_H_
#define KVTIER_TOOLS_CLI_FORMAT_H_

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace kvtier::cli {

// "512 B", "1.5 KiB", "3.2 GiB".
std::string FormatBytes(uint64_t bytes);
// "2.73x"; "-" when the ratio is undefined (no stored bytes).
std::string FormatRatio(uint64_t raw, uint64_t stored);
// Local time "2024-05-01 12:34:56"; "-" for 0 (never).
std::string FormatTime(int64_t unix_us);
// "12s ago", "3h ago", "5d ago"; "-" for 0.
std::string FormatAge(int64_t unix_us, int64_t now_us);
// "1 record", "2 records": a count and its noun, plural unless 1.
std::string Count(uint64_t n, std::string_view noun);
// "0:07", "1:02:03": a duration for an ETA.
std::string FormatClock(double seconds);
// Microseconds since the epoch, now.
int64_t NowMicros();

// Parses a byte count: "1048576", "512K", "1.5MiB", "10G", "2TB" (K, M, G, T
// in powers of 1024, with or without "iB"/"B"). Returns false otherwise.
bool ParseBytes(std::string_view text, uint64_t* bytes);
// Parses a duration: "90s", "30m", "12h", "7d", "2w" or plain seconds.
bool ParseDuration(std::string_view text, int64_t* micros);

// Columns of text, each padded to its widest cell; numeric columns (those
// whose header was added with `right_align`) are right-aligned.
class Table {
 public:
  void AddColumn(std::string header, bool right_align = false);
  void AddRow(std::vector<std::string> cells);
  // Prints the header row and every row to `out`, `indent` spaces in.
  void Print(std::FILE* out, int indent = 0) const;
  bool empty() const { return rows_.empty(); }

 private:
  std::vector<std::string> headers_;
  std::vector<bool> right_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace kvtier::cli

#endif  // KVTIER_TOOLS_CLI_FORMAT_H_
