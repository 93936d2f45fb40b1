// Deadline-bounded I/O on non-blocking Unix-domain stream sockets, shared by
// kvtierd and its client. Nothing here blocks past its deadline: every wait
// is a poll() bounded by it. Writes gather from iovecs (records are sent
// from where they lie) and never raise SIGPIPE.
#ifndef KVTIER_DAEMON_SOCKET_IO_H_
#define KVTIER_DAEMON_SOCKET_IO_H_

#include <sys/uio.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "daemon/protocol.h"

namespace kvtier::daemon {

class Deadline {
 public:
  using Clock = std::chrono::steady_clock;
  static Deadline In(int ms) { return Deadline(Clock::now() + std::chrono::milliseconds(ms)); }
  static Deadline Never() { return Deadline(Clock::time_point::max()); }
  // Milliseconds left for poll(): -1 for Never, 0 once expired.
  int PollMs() const;
  bool expired() const { return at_ != Clock::time_point::max() && Clock::now() >= at_; }
  Clock::time_point at() const { return at_; }
  // The earlier of the two.
  static Deadline Min(const Deadline& a, const Deadline& b) { return a.at_ < b.at_ ? a : b; }

 private:
  explicit Deadline(Clock::time_point at) : at_(at) {}
  Clock::time_point at_;
};

enum class IoOutcome : uint8_t {
  kOk,
  kClosed,    // the peer closed the connection (EOF, EPIPE, ECONNRESET)
  kTimedOut,  // the deadline passed
  kAborted,   // abort_fd became readable (shutdown)
  kFailed,    // another errno
};

struct IoResult {
  IoOutcome outcome = IoOutcome::kOk;
  size_t bytes = 0;  // transferred before the outcome
  int error = 0;     // errno for kFailed
  bool ok() const { return outcome == IoOutcome::kOk; }
  // "timed out after 1234 of 5000 bytes", "connection closed by the peer", ...
  std::string Describe(size_t wanted) const;
};

// Reads exactly `n` bytes. abort_fd (optional, -1 = none) is watched too.
IoResult ReadExact(int fd, void* buf, size_t n, const Deadline& deadline, int abort_fd = -1);

// Writes every byte of `iov` (modified: advanced past what was written).
IoResult WriteAll(int fd, std::span<iovec> iov, const Deadline& deadline);

// Waits until `fd` is readable (or has hung up). kAborted if abort_fd
// became readable first.
IoOutcome WaitReadable(int fd, const Deadline& deadline, int abort_fd = -1);

// Writes one frame: header, then the body pieces. `iov_body` may be empty.
IoResult WriteFrame(int fd, const FrameHeader& header, std::span<const iovec> iov_body,
                    const Deadline& deadline);
// Writes one frame whose body is `body`.
IoResult WriteFrame(int fd, const FrameHeader& header, std::string_view body,
                    const Deadline& deadline);

inline constexpr int kSocketSendBufferBytes = 4 << 20;
// Asks for a kSocketSendBufferBytes send buffer (capped by the kernel).
void EnlargeSendBuffer(int fd);

// Connects a new non-blocking socket to `path` within the deadline.
// Unavailable naming the cause (no such socket, refused, timed out);
// IOError for a permission problem; InvalidArgument for a path too long
// for sockaddr_un. `error` (optional) receives connect's errno.
Status ConnectUnix(const std::string& path, const Deadline& deadline, int* fd, int* error = nullptr);

}  // namespace kvtier::daemon

#endif  // KVTIER_DAEMON_SOCKET_IO_H_
