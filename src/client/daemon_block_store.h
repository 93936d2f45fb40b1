// DaemonBlockStore: the BlockStore of a process that shares a node-local
// store through kvtierd ("unix:/run/kvtier.sock" in OpenBlockStore).
//
// Records travel as the store keeps them (the cache encodes and decodes;
// the daemon validates headers and writes). Connections are pooled and
// reused: up to max_connections calls run at once, e.g. a lookup's
// MultiGet beside a spill worker's Put.
//
// Never blocks forever: every call has a deadline (call_timeout_ms;
// maintenance calls maintenance_timeout_ms). When the daemon is down, a call
// fails with Unavailable at once and later calls fail fast too, without
// touching the socket, until the next reconnect attempt; attempts back off
// from backoff_initial_ms to backoff_max_ms. A call whose pooled connection
// turns out dead (the daemon restarted) is retried once on a new one: every
// operation is idempotent (records are content-addressed).
//
// The daemon's options rule the store: StoreOptions::max_bytes and
// sync_writes of the client are ignored (the daemon has the node's budget).
#ifndef KVTIER_CLIENT_DAEMON_BLOCK_STORE_H_
#define KVTIER_CLIENT_DAEMON_BLOCK_STORE_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "client/daemon_connection.h"
#include "kvtier/store.h"

namespace kvtier {

struct DaemonClientOptions {
  std::string socket_path;
  // Shown in the daemon's per-client counters; "" = $KVTIER_CLIENT_NAME,
  // else "<program>-<pid>".
  std::string client_name;
  int connect_timeout_ms = 1000;
  // A lookup waits for the store at most this long (a stalled daemon costs
  // a server this much latency once, then calls fail fast while it backs off).
  int call_timeout_ms = 5000;
  int maintenance_timeout_ms = 3600 * 1000;  // trim, compact, for-each
  int max_connections = 4;
  int backoff_initial_ms = 50;
  int backoff_max_ms = 5000;
  // Refuse writes locally (NotSupported), as a read-only embedded store.
  bool read_only = false;
  // Diagnostics sink; empty = stderr, prefixed "kvtier: ".
  std::function<void(std::string_view)> log;
};

class DaemonBlockStore final : public BlockStore {
 public:
  // Connects once (so a wrong path or a refused uid shows at open).
  // Unavailable if no daemon answers; IOError if it refuses this process.
  static Status Open(const DaemonClientOptions& options, std::unique_ptr<BlockStore>* store);

  void MultiGet(std::span<const Hash128> keys, std::vector<std::string>* values,
                std::vector<Status>* statuses) override;
  Status Exists(std::span<const Hash128> keys, std::vector<uint8_t>* present) override;
  Status Put(std::span<const std::string_view> records) override;
  Status Touch(std::span<const Hash128> keys) override;
  Status Delete(std::span<const Hash128> keys) override;
  Status Flush() override;
  Status GetStats(StoreStats* stats) override;
  Status RegisterNamespace(const Namespace& ns) override;
  Status ListNamespaces(std::vector<NamespaceEntry>* out) override;
  Status GetMeta(const Hash128& key, RecordMeta* meta) override;
  Status ForEachRecord(const std::function<bool(const RecordMeta&)>& fn) override;
  Status TrimToBytes(uint64_t max_bytes, TrimResult* result) override;
  Status TrimOlderThan(int64_t unix_us, TrimResult* result) override;
  Status DropNamespace(const Hash128& fingerprint, TrimResult* result) override;
  Status Compact(CompactResult* result) override;
  std::string Describe() const override { return "kvtierd:" + options_.socket_path; }

 private:
  using Call = std::function<Status(DaemonConnection*, const daemon::Deadline&)>;

  explicit DaemonBlockStore(DaemonClientOptions options);
  // Runs `call` on a pooled connection within timeout_ms, retrying once on
  // a new connection if a reused one proves dead before answering.
  Status Run(int timeout_ms, const Call& call);
  Status Acquire(const daemon::Deadline& deadline, std::unique_ptr<DaemonConnection>* c, bool* fresh);
  // Back to the pool; a broken one is closed (`outcome`: its call's Status).
  void Return(std::unique_ptr<DaemonConnection> c, const Status& outcome);
  // Starts or lengthens the reconnect backoff. REQUIRES: mu_ held.
  void BackOffLocked(const Status& failure);
  // Sends `n`-key batches of "u32 n, keys" and reads plain status answers.
  Status KeysCall(daemon::Op op, std::span<const Hash128> keys);
  Status SimpleCall(daemon::Op op, std::string_view request, std::string* response, int timeout_ms);
  Status TrimCall(daemon::Op op, std::string_view request, TrimResult* result);
  Status CheckWritable() const;
  void Log(const std::string& message) const;

  const DaemonClientOptions options_;
  std::atomic<uint32_t> max_frame_bytes_{daemon::kMinFrameBytes};

  std::mutex mu_;
  std::condition_variable cv_;  // a connection came back to the pool
  std::vector<std::unique_ptr<DaemonConnection>> idle_;  // GUARDED_BY(mu_)
  int open_ = 0;  // connections idle, in use or being opened; GUARDED_BY(mu_)
  // Reconnect backoff, GUARDED_BY(mu_).
  std::chrono::steady_clock::time_point retry_at_{};
  int backoff_ms_ = 0;
  std::string last_failure_;
  uint64_t failures_ = 0;
};

}  // namespace kvtier

#endif  // KVTIER_CLIENT_DAEMON_BLOCK_STORE_H_
