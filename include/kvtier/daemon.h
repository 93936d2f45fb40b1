// kvtierd: one node-local block store shared by several server processes.
//
// RocksDB lets one process write a store, so on a node with several
// inference servers (one per GPU, or replicas) a daemon owns the store and
// the servers reach it over a Unix-domain socket. A server switches from
// embedded to shared by configuration only: CacheOptions::store =
// "unix:/run/kvtier.sock" (see OpenBlockStore in store.h). Each server keeps
// its own memory tier; the daemon is the shared disk tier, with one disk
// budget for all of them. docs/DAEMON.md has the protocol and the metrics.
//
// This header holds the daemon itself (the `kvtierd` tool is a thin main
// around Daemon) and the read side of its counters, for `kvtier stats
// --socket` and for monitoring.
#ifndef KVTIER_DAEMON_H_
#define KVTIER_DAEMON_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kvtier/status.h"
#include "kvtier/store.h"

namespace kvtier {

struct DaemonOptions {
  // REQUIRED: the store directory (the same format as an embedded store: a
  // store moves between embedded and shared use unchanged).
  std::string store_dir;
  // REQUIRED: where to listen. A stale socket file (no daemon answers) is
  // replaced; a live daemon on it makes Start() fail with Busy.
  std::string socket_path;
  // Options of the store; max_bytes is the node-wide disk budget.
  StoreOptions store_options;
  // Peer credentials (SO_PEERCRED) a client must have: its uid in
  // allow_uids or its primary gid in allow_gids. Both empty = the daemon's
  // own uid or gid only. Others are refused before any request is read.
  std::vector<uint32_t> allow_uids;
  std::vector<uint32_t> allow_gids;
  // Mode bits of the socket file (who may connect at all).
  uint32_t socket_mode = 0660;
  // Largest frame (header + body) either side may send. A client that
  // sends a larger one is disconnected; a Get response is cut to fit (the
  // client asks again for the rest).
  uint32_t max_frame_bytes = 64u << 20;
  // Connections served at once (one thread each); more wait in the backlog.
  int max_connections = 64;
  // A frame must arrive, and a response leave, within this time once begun;
  // a client stalled longer is disconnected. Idle connections stay open.
  int io_timeout_ms = 10000;
  // If set, Prometheus text (FormatPrometheus) is rewritten there every
  // metrics_interval_ms (atomically, for node-exporter's textfile collector).
  std::string metrics_file;
  int metrics_interval_ms = 10000;
  // Diagnostics sink; empty = stderr, prefixed "kvtierd: ".
  std::function<void(std::string_view)> log;
};

// Request latency, from a log-scale histogram (quantiles are bucket upper
// bounds: within 19% of the true value).
struct LatencySummary {
  uint64_t count = 0;
  double sum_seconds = 0;
  double p50_seconds = 0;
  double p90_seconds = 0;
  double p99_seconds = 0;
  double p999_seconds = 0;
};

// What the daemon did for one client, or for all of them.
struct DaemonCounters {
  uint64_t requests = 0;  // frames answered, every kind
  uint64_t get_requests = 0;
  uint64_t get_keys = 0;
  uint64_t get_hits = 0;   // keys answered with a record
  uint64_t get_bytes = 0;  // record bytes sent
  uint64_t put_requests = 0;
  uint64_t put_records = 0;
  uint64_t put_bytes = 0;     // record bytes received in accepted puts
  uint64_t put_rejected = 0;  // puts the store refused (bad record, too big)
  uint64_t exists_requests = 0;
  uint64_t exists_keys = 0;
  uint64_t touch_requests = 0;
  uint64_t delete_requests = 0;
  uint64_t flush_requests = 0;
  uint64_t other_requests = 0;    // stats, namespaces, metadata, maintenance
  uint64_t errors = 0;            // store calls that failed (I/O)
  uint64_t protocol_errors = 0;   // malformed frames: the connection was closed
  LatencySummary get_latency;
  LatencySummary put_latency;
  LatencySummary exists_latency;
  LatencySummary other_latency;  // every other request
};

struct DaemonClientStats {
  std::string name;  // the client's name (KVTIER_CLIENT_NAME, or program-pid)
  uint32_t uid = 0;
  uint32_t gid = 0;
  int32_t pid = 0;          // of its latest connection
  uint32_t connections = 0;  // open now
  DaemonCounters counters;
};

struct DaemonStats {
  uint32_t protocol_version = 0;
  int32_t pid = 0;
  double uptime_seconds = 0;
  std::string store;  // the store's Describe()
  StoreStats store_stats;
  uint32_t connections = 0;  // open now
  uint64_t connections_accepted = 0;
  uint64_t connections_rejected = 0;  // peer credentials not allowed
  DaemonCounters total;
  // Clients connected now, then recently disconnected ones (bounded).
  std::vector<DaemonClientStats> clients;
};

class Daemon {
 public:
  // Opens the store, takes the socket and starts serving. Errors: those of
  // OpenBlockStore(); Busy if a live daemon answers on the socket path;
  // InvalidArgument if the path exists and is not a socket, or for bad
  // options; IOError if the socket cannot be created.
  static Status Start(const DaemonOptions& options, std::unique_ptr<Daemon>* daemon);

  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;
  // Shutdown().
  ~Daemon();

  // Stops accepting, lets every request already received finish and
  // answer, closes the connections, flushes and closes the store, removes
  // the socket file. Idempotent and thread-safe; returns the flush result.
  Status Shutdown();

  DaemonStats Stats() const;

 private:
  class Server;
  explicit Daemon(std::unique_ptr<Server> server);
  std::unique_ptr<Server> server_;
};

// Asks the daemon at `socket_path` for its counters. Unavailable if none
// answers within timeout_ms; IOError if it refuses this process.
Status QueryDaemonStats(const std::string& socket_path, int timeout_ms, DaemonStats* stats);

// Prometheus text exposition format (version 0.0.4) of `stats`: totals,
// per-client series labelled client="name", latency quantiles, store gauges.
std::string FormatPrometheus(const DaemonStats& stats);

}  // namespace kvtier

#endif  // KVTIER_DAEMON_H_
