// One client connection of kvtierd, served by its own thread: reads a
// frame, checks it, runs it against the store, answers, repeats.
//
// A frame that breaks the protocol (bad magic, unknown op, over the frame
// limit, a body that does not parse, no hello first, truncated or stalled
// past io_timeout) is answered with kProtocolError when the socket still
// takes it, counted, logged, and ends this connection only.
#ifndef KVTIER_DAEMON_CONNECTION_H_
#define KVTIER_DAEMON_CONNECTION_H_

#include <sys/socket.h>

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "daemon/daemon_metrics.h"
#include "daemon/protocol.h"
#include "daemon/socket_io.h"
#include "kvtier/daemon.h"
#include "kvtier/store.h"

namespace kvtier::daemon {

// What every connection shares, owned by the server (outlives connections).
struct ConnectionContext {
  BlockStore* store = nullptr;
  DaemonMetrics* metrics = nullptr;
  const DaemonOptions* options = nullptr;
  int stop_fd = -1;  // readable once the daemon shuts down
  std::function<DaemonStats()> stats;
  std::function<void(const std::string&)> log;
};

class Connection {
 public:
  // `refusal` non-empty: the peer's credentials are not allowed; Serve()
  // answers its hello with this IOError message and ends.
  Connection(int fd, const ucred& peer, std::string refusal, const ConnectionContext* context);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Serves requests until the peer closes, a protocol error, or shutdown
  // (an idle connection ends at once; a request already read is answered).
  void Serve();

 private:
  // Reads the next frame into header_ and body_. False = end the connection
  // (after answering a protocol error where appropriate).
  bool ReadRequest(bool* shutdown);
  // Answers `status` (and on OK the given body) to the current request.
  bool Respond(const Status& status, std::span<const iovec> body = {}, uint16_t flags = 0);
  bool Respond(const Status& status, std::string_view body, uint16_t flags = 0);
  // Answers a protocol error, counts it, logs it; always false.
  bool Reject(const Status& why);
  bool Dispatch();
  // Counts the request. Called before its reply is written, so a client
  // holding the reply sees it counted; latency runs from the request's
  // arrival until its reply is ready.
  void Finish(RequestRecord record);

  bool Hello();
  bool Get();
  bool Exists();
  bool Put();
  bool KeysCall(Status (BlockStore::*call)(std::span<const Hash128>));
  bool ForEachRecord();
  bool Maintenance();  // trim, drop, compact
  bool Other();        // flush, stats, namespaces, meta

  // Parses "u32 n, key[16] * n" from body_ into keys_.
  bool ParseKeys();
  std::string Who() const;

  const int fd_;
  const ucred peer_;
  const std::string refusal_;
  const ConnectionContext* const context_;
  std::string name_;  // from hello
  std::shared_ptr<RequestCounters> counters_;
  bool greeted_ = false;

  FrameHeader header_;
  std::unique_ptr<char[]> body_;
  size_t body_capacity_ = 0;
  std::string_view body() const { return {body_.get(), header_.body_bytes}; }
  std::chrono::steady_clock::time_point started_;
  // Reused between requests.
  std::vector<Hash128> keys_;
  std::vector<std::string> values_;
  std::vector<Status> statuses_;
  std::string scratch_;
};

}  // namespace kvtier::daemon

#endif  // KVTIER_DAEMON_CONNECTION_H_
