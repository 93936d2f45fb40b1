// Daemon::Server: kvtierd's socket, accept loop and connection threads.
//
// Why one thread per connection and not a poll loop: the clients are a few
// server processes per node (a handful of connections each), every request
// is a blocking RocksDB call (a MultiGet of megabytes, a WAL write), and the
// records are large. A poll loop would still need a worker pool for the
// store calls plus a state machine per connection for partial multi-MB
// frames; threads give the same parallelism (RocksDB reads run side by
// side, writes serialize inside the store anyway) with straight-line code.
// max_connections bounds the threads; further clients wait in the backlog.
#ifndef KVTIER_DAEMON_SERVER_H_
#define KVTIER_DAEMON_SERVER_H_

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <list>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>

#include "daemon/connection.h"
#include "daemon/daemon_metrics.h"
#include "kvtier/daemon.h"

namespace kvtier {

class Daemon::Server {
 public:
  explicit Server(const DaemonOptions& options);
  ~Server();

  Status Start();
  Status Shutdown();
  DaemonStats Stats() const;

 private:
  struct Worker {
    std::thread thread;
    std::atomic<bool> done{false};
  };

  Status CheckOptions() const;
  // Busy if a daemon answers on the socket path; removes a stale socket.
  Status ClaimSocketPath();
  Status Listen();
  void AcceptLoop();
  void MetricsLoop();
  void WriteMetricsFile();
  // The refusal message for a peer, or "" when its uid/gid is allowed.
  std::string Refusal(const ucred& peer) const;
  void ReapFinished();  // REQUIRES: mu_ held
  void Log(const std::string& message) const;
  std::string NotePath() const;

  const DaemonOptions options_;
  daemon::DaemonMetrics metrics_;
  daemon::ConnectionContext context_;

  mutable std::shared_mutex store_mu_;  // Shutdown holds it to close the store
  std::unique_ptr<BlockStore> store_;
  int listen_fd_ = -1;
  int stop_fd_ = -1;  // eventfd, readable once Shutdown begins
  ino_t socket_inode_ = 0;
  dev_t socket_device_ = 0;
  std::thread accept_thread_;
  std::thread metrics_thread_;

  std::mutex mu_;
  std::condition_variable cv_;  // a worker finished; or shutdown (metrics loop)
  std::list<Worker> workers_;   // GUARDED_BY(mu_)
  bool stopping_ = false;       // GUARDED_BY(mu_)
  bool stopped_ = false;        // GUARDED_BY(mu_)
  Status shutdown_status_;      // GUARDED_BY(mu_)
  std::mutex shutdown_mu_;      // serializes Shutdown calls
};

}  // namespace kvtier

#endif  // KVTIER_DAEMON_SERVER_H_
