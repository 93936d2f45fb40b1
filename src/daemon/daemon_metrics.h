// kvtierd's counters: per client and in total, with latency histograms.
//
// Connection threads record every answered request into their client's
// counters and the total (relaxed atomics: no lock on the request path);
// Snapshot() reads them into the public DaemonStats shape.
#ifndef KVTIER_DAEMON_DAEMON_METRICS_H_
#define KVTIER_DAEMON_DAEMON_METRICS_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "daemon/protocol.h"
#include "kvtier/daemon.h"

namespace kvtier::daemon {

// Log-scale histogram of microseconds: 4 buckets per power of two, from
// 1 us to about 6 days. Quantiles are bucket upper bounds (<= 19% high).
class LatencyHistogram {
 public:
  void Record(uint64_t micros);
  LatencySummary Summary() const;

 private:
  static constexpr int kBuckets = 4 * 40;
  static int BucketOf(uint64_t micros);
  static double UpperBoundSeconds(int bucket);

  std::atomic<uint64_t> buckets_[kBuckets] = {};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_micros_{0};
};

// One answered request, as the connection saw it.
struct RequestRecord {
  Op op = Op::kHello;
  uint64_t micros = 0;
  uint64_t keys = 0;  // keys asked (get/exists) or records sent (put)
  uint64_t hits = 0;  // get: keys answered with a record
  uint64_t bytes = 0;  // get: record bytes sent; put: record bytes accepted
  bool rejected = false;  // the store refused the request's content
  bool error = false;     // the store failed (I/O)
};

class RequestCounters {
 public:
  void Record(const RequestRecord& r);
  void ProtocolError() { protocol_errors_.fetch_add(1, std::memory_order_relaxed); }
  DaemonCounters Snapshot() const;

 private:
  std::atomic<uint64_t> requests_{0}, get_requests_{0}, get_keys_{0}, get_hits_{0}, get_bytes_{0},
      put_requests_{0}, put_records_{0}, put_bytes_{0}, put_rejected_{0}, exists_requests_{0},
      exists_keys_{0}, touch_requests_{0}, delete_requests_{0}, flush_requests_{0},
      other_requests_{0}, errors_{0}, protocol_errors_{0};
  LatencyHistogram get_latency_, put_latency_, exists_latency_, other_latency_;
};

// A client as the daemon knows it: the name from its hello and the peer
// credentials of its latest connection.
struct ClientIdentity {
  std::string name;
  uint32_t uid = 0;
  uint32_t gid = 0;
  int32_t pid = 0;
};

class DaemonMetrics {
 public:
  // Clients with no open connection kept for Stats(), least recent dropped.
  static constexpr size_t kRetainedIdleClients = 32;

  DaemonMetrics();

  // A connection of `who` said hello: its counters (shared by every
  // connection with the same name); *first = no other connection of that
  // name is open. Pair with Disconnected(), which returns true when the
  // client's last connection closed.
  std::shared_ptr<RequestCounters> Connected(const ClientIdentity& who, bool* first);
  bool Disconnected(const std::string& name);

  // Records into the client's counters (if known yet) and the total.
  void Record(RequestCounters* client, const RequestRecord& r);
  void ProtocolError(RequestCounters* client);
  void ConnectionAccepted() { accepted_.fetch_add(1, std::memory_order_relaxed); }
  void ConnectionRejected() { rejected_.fetch_add(1, std::memory_order_relaxed); }
  void ConnectionOpened() { open_.fetch_add(1, std::memory_order_relaxed); }
  void ConnectionClosed() { open_.fetch_sub(1, std::memory_order_relaxed); }

  // Everything but the store fields of DaemonStats.
  DaemonStats Snapshot() const;

 private:
  struct ClientEntry {
    ClientIdentity identity;
    uint32_t connections = 0;
    uint64_t last_change = 0;  // for dropping the least recent idle entry
    std::shared_ptr<RequestCounters> counters;
  };
  void DropIdleClients();  // REQUIRES: mu_ held

  const std::chrono::steady_clock::time_point start_;
  RequestCounters total_;
  std::atomic<uint64_t> accepted_{0}, rejected_{0};
  std::atomic<uint32_t> open_{0};
  mutable std::mutex mu_;
  std::map<std::string, ClientEntry> clients_;  // GUARDED_BY(mu_)
  uint64_t changes_ = 0;                         // GUARDED_BY(mu_)
};

}  // namespace kvtier::daemon

#endif  // KVTIER_DAEMON_DAEMON_METRICS_H_
