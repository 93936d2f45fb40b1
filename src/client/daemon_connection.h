// DaemonConnection: one handshaken connection to kvtierd, used by one
// thread at a time (DaemonBlockStore pools them).
//
// Errors: a transport problem (no daemon, closed, timed out) is Unavailable
// and breaks the connection; a protocol error the daemon reports breaks it
// too; a non-OK response (a store error, NotFound) is returned as that
// Status and leaves the connection usable.
#ifndef KVTIER_CLIENT_DAEMON_CONNECTION_H_
#define KVTIER_CLIENT_DAEMON_CONNECTION_H_

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "daemon/protocol.h"
#include "daemon/socket_io.h"
#include "kvtier/status.h"

namespace kvtier {

class DaemonConnection {
 public:
  // Connects to the socket at `path` and says hello as `client_name`.
  // Unavailable if no daemon answers; IOError if it refuses this process
  // (peer credentials); NotSupported if it speaks no common version.
  static Status Open(const std::string& path, const std::string& client_name,
                     const daemon::Deadline& deadline, std::unique_ptr<DaemonConnection>* out);
  ~DaemonConnection();
  DaemonConnection(const DaemonConnection&) = delete;
  DaemonConnection& operator=(const DaemonConnection&) = delete;

  // Sends a request frame whose body is the concatenation of `body`.
  Status Send(daemon::Op op, std::span<const iovec> body, const daemon::Deadline& deadline);
  // Reads the next response header of the request last sent. OK: an OK
  // response whose h->body_bytes the caller reads with Read(). Otherwise the
  // response's Status (its message read), or a transport/protocol error.
  Status Receive(daemon::FrameHeader* h, const daemon::Deadline& deadline);
  Status Read(void* buf, size_t n, const daemon::Deadline& deadline);
  // Send(), Receive(), then reads the whole body into *body.
  Status Call(daemon::Op op, std::span<const iovec> request, std::string* body,
              const daemon::Deadline& deadline);
  Status Call(daemon::Op op, std::string_view request, std::string* body,
              const daemon::Deadline& deadline);

  // Gives up on the response in progress (the connection is closed).
  void Abandon() { broken_ = true; }
  bool broken() const { return broken_; }
  // The daemon closed the connection (it may have stopped).
  bool peer_gone() const { return peer_gone_; }
  // Some of the current request's response arrived (a retry could repeat
  // work the caller already saw).
  bool answered() const { return answered_; }
  bool timed_out() const { return timed_out_; }
  uint32_t max_frame_bytes() const { return max_frame_bytes_; }
  uint32_t daemon_pid() const { return daemon_pid_; }

 private:
  DaemonConnection(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  Status Transport(std::string_view what, const daemon::IoResult& r, size_t wanted);
  Status Broken(Status s);

  const int fd_;
  const std::string path_;
  uint32_t max_frame_bytes_ = daemon::kMinFrameBytes;
  uint32_t daemon_pid_ = 0;
  uint32_t next_id_ = 1;
  uint32_t current_id_ = 0;
  uint8_t current_op_ = 0;
  bool broken_ = false;
  bool peer_gone_ = false;
  bool answered_ = false;
  bool timed_out_ = false;
};

}  // namespace kvtier

#endif  // KVTIER_CLIENT_DAEMON_CONNECTION_H_
