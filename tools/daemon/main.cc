// kvtierd: serves one kvtier store to the server processes of a node over a
// Unix-domain socket (docs/DAEMON.md). Logs to stderr; SIGTERM or SIGINT
// stops it cleanly (requests in flight answered, store flushed and closed).
//
// Exit codes: 0 after a clean shutdown, 1 if it could not start (or the
// final flush failed), 2 for usage errors.
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "kvtier/daemon.h"

namespace {

// "1073741824", "64M", "16G", "1T" (binary units); false otherwise.
bool ParseBytes(const std::string& text, uint64_t* out) {
  if (text.empty()) return false;
  size_t end = 0;
  unsigned long long v = 0;
  try {
    v = std::stoull(text, &end, 10);
  } catch (...) {
    return false;
  }
  int shift = 0;
  const std::string suffix = text.substr(end);
  if (suffix == "" || suffix == "B") shift = 0;
  else if (suffix == "K" || suffix == "KiB") shift = 10;
  else if (suffix == "M" || suffix == "MiB") shift = 20;
  else if (suffix == "G" || suffix == "GiB") shift = 30;
  else if (suffix == "T" || suffix == "TiB") shift = 40;
  else return false;
  if (shift > 0 && v > (~0ull >> shift)) return false;
  *out = static_cast<uint64_t>(v) << shift;
  return true;
}

void Log(const std::string& message) { std::fprintf(stderr, "kvtierd: %s\n", message.c_str()); }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kvtierd: one kvtier block store shared by the server processes of a node,\n"
               "served over a Unix-domain socket (see docs/DAEMON.md).",
               "kvtierd"};
  kvtier::DaemonOptions options;
  std::string max_disk = "16G", max_frame = "64M", socket_mode = "0660";
  app.add_option("--store", options.store_dir, "Store directory (created if missing)")->required();
  app.add_option("--socket", options.socket_path, "Unix socket path to listen on")->required();
  app.add_option("--max-disk-bytes", max_disk, "Disk budget for all records (bytes; K/M/G/T suffixes; 0 = none)")
      ->capture_default_str();
  app.add_option("--allow-uid", options.allow_uids, "Accept clients with this uid (repeatable)");
  app.add_option("--allow-gid", options.allow_gids, "Accept clients with this primary gid (repeatable)");
  app.add_option("--socket-mode", socket_mode, "Permission bits of the socket file (octal)")
      ->capture_default_str();
  app.add_option("--metrics-file", options.metrics_file,
                 "Rewrite Prometheus text metrics here periodically (node-exporter textfile collector)");
  int metrics_interval_s = 10;
  app.add_option("--metrics-interval", metrics_interval_s, "Seconds between metrics file rewrites")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--max-frame-bytes", max_frame, "Largest protocol frame (bytes; K/M/G suffixes)")
      ->capture_default_str();
  app.add_option("--max-connections", options.max_connections, "Connections served at once")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--io-timeout-ms", options.io_timeout_ms,
                 "A started frame must arrive (or leave) within this time")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_flag("--sync-writes", options.store_options.sync_writes,
               "fsync the WAL on every write (survive machine crashes, not just daemon kills)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  uint64_t frame = 0;
  if (!ParseBytes(max_disk, &options.store_options.max_bytes)) {
    Log("--max-disk-bytes: '" + max_disk + "' is not a byte count (e.g. 1073741824, 64M, 16G)");
    return 2;
  }
  if (!ParseBytes(max_frame, &frame) || frame > 0xFFFFFFFFull) {
    Log("--max-frame-bytes: '" + max_frame + "' is not a byte count below 4G");
    return 2;
  }
  options.max_frame_bytes = static_cast<uint32_t>(frame);
  char* end = nullptr;
  const unsigned long mode = std::strtoul(socket_mode.c_str(), &end, 8);
  if (socket_mode.empty() || *end != '\0' || mode > 0777) {
    Log("--socket-mode: '" + socket_mode + "' is not an octal permission mode like 0660");
    return 2;
  }
  options.socket_mode = static_cast<uint32_t>(mode);
  options.metrics_interval_ms = metrics_interval_s * 1000;

  // Signals are taken synchronously by this thread; every thread the
  // daemon starts inherits the blocked mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::unique_ptr<kvtier::Daemon> daemon;
  kvtier::Status s = kvtier::Daemon::Start(options, &daemon);
  if (!s.ok()) {
    Log("cannot start: " + s.ToString());
    return 1;
  }
  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  Log(std::string("received ") + (signal_number == SIGTERM ? "SIGTERM" : "SIGINT") + ", stopping");
  s = daemon->Shutdown();
  return s.ok() ? 0 : 1;
}
