// Deadline-bounded socket I/O (see socket_io.h).
#include "daemon/socket_io.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

namespace kvtier::daemon {

namespace {

bool IsClosedErrno(int e) { return e == EPIPE || e == ECONNRESET || e == ENOTCONN; }

// Waits for `events` on fd (and POLLIN on abort_fd). kOk when fd is ready.
IoOutcome Wait(int fd, short events, const Deadline& deadline, int abort_fd) {
  for (;;) {
    pollfd p[2] = {{fd, events, 0}, {abort_fd, POLLIN, 0}};
    const int n = ::poll(p, abort_fd >= 0 ? 2 : 1, deadline.PollMs());
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoOutcome::kFailed;
    }
    if (abort_fd >= 0 && (p[1].revents & POLLIN) != 0) return IoOutcome::kAborted;
    if (n == 0 || p[0].revents == 0) {
      if (deadline.expired()) return IoOutcome::kTimedOut;
      continue;
    }
    return IoOutcome::kOk;  // ready, or POLLHUP/POLLERR: the next call says which
  }
}

}  // namespace

int Deadline::PollMs() const {
  if (at_ == Clock::time_point::max()) return -1;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(at_ - Clock::now()).count();
  if (left <= 0) return 0;
  return static_cast<int>(std::min<int64_t>(left + 1, 1 << 30));
}

std::string IoResult::Describe(size_t wanted) const {
  const std::string progress =
      bytes > 0 ? " after " + std::to_string(bytes) + " of " + std::to_string(wanted) + " bytes" : "";
  switch (outcome) {
    case IoOutcome::kOk: return "ok";
    case IoOutcome::kClosed: return "connection closed by the peer" + progress;
    case IoOutcome::kTimedOut: return "timed out" + progress;
    case IoOutcome::kAborted: return "interrupted by shutdown" + progress;
    case IoOutcome::kFailed: return std::string(std::strerror(error)) + progress;
  }
  return "?";
}

IoOutcome WaitReadable(int fd, const Deadline& deadline, int abort_fd) {
  return Wait(fd, POLLIN, deadline, abort_fd);
}

IoResult ReadExact(int fd, void* buf, size_t n, const Deadline& deadline, int abort_fd) {
  IoResult r;
  char* p = static_cast<char*>(buf);
  while (r.bytes < n) {
    const ssize_t got = ::recv(fd, p + r.bytes, n - r.bytes, 0);
    if (got > 0) {
      r.bytes += static_cast<size_t>(got);
      continue;
    }
    if (got == 0) {
      r.outcome = IoOutcome::kClosed;
      return r;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      r.error = errno;
      r.outcome = IsClosedErrno(errno) ? IoOutcome::kClosed : IoOutcome::kFailed;
      return r;
    }
    r.outcome = Wait(fd, POLLIN, deadline, abort_fd);
    if (r.outcome == IoOutcome::kFailed) r.error = errno;
    if (!r.ok()) return r;
  }
  return r;
}

IoResult WriteAll(int fd, std::span<iovec> iov, const Deadline& deadline) {
  IoResult r;
  size_t first = 0;
  while (first < iov.size()) {
    if (iov[first].iov_len == 0) {
      ++first;
      continue;
    }
    msghdr msg{};
    msg.msg_iov = &iov[first];
    msg.msg_iovlen = std::min<size_t>(iov.size() - first, IOV_MAX);
    const ssize_t sent = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        r.error = errno;
        r.outcome = IsClosedErrno(errno) ? IoOutcome::kClosed : IoOutcome::kFailed;
        return r;
      }
      r.outcome = Wait(fd, POLLOUT, deadline, -1);
      if (r.outcome == IoOutcome::kFailed) r.error = errno;
      if (!r.ok()) return r;
      continue;
    }
    r.bytes += static_cast<size_t>(sent);
    size_t left = static_cast<size_t>(sent);
    while (left > 0) {
      const size_t take = std::min(left, iov[first].iov_len);
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + take;
      iov[first].iov_len -= take;
      left -= take;
      if (iov[first].iov_len == 0) ++first;
    }
  }
  return r;
}

IoResult WriteFrame(int fd, const FrameHeader& header, std::span<const iovec> iov_body,
                    const Deadline& deadline) {
  uint8_t head[kFrameHeaderBytes];
  EncodeFrameHeader(header, head);
  std::vector<iovec> iov;
  iov.reserve(iov_body.size() + 1);
  iov.push_back({head, sizeof(head)});
  iov.insert(iov.end(), iov_body.begin(), iov_body.end());
  return WriteAll(fd, iov, deadline);
}

IoResult WriteFrame(int fd, const FrameHeader& header, std::string_view body,
                    const Deadline& deadline) {
  const iovec piece{const_cast<char*>(body.data()), body.size()};
  return WriteFrame(fd, header, std::span<const iovec>(&piece, body.empty() ? 0 : 1), deadline);
}

void EnlargeSendBuffer(int fd) {
  // A Unix stream socket queues at most its sender's SO_SNDBUF (208 KiB by
  // default): a multi-MB record batch would cross in a hundred wake-ups.
  // The kernel caps the request at net.core.wmem_max; best effort.
  const int bytes = kSocketSendBufferBytes;
  (void)::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
}

Status ConnectUnix(const std::string& path, const Deadline& deadline, int* out, int* error) {
  *out = -1;
  if (error != nullptr) *error = 0;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path))
    return Status::InvalidArgument("socket path '" + path + "' is empty or longer than " +
                                   std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  std::memcpy(addr.sun_path, path.data(), path.size());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::IOError(std::string("cannot create a socket: ") + std::strerror(errno));
  EnlargeSendBuffer(fd);
  for (;;) {
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) break;
    const int e = errno;
    if (e == EINTR) continue;
    // A Unix socket whose backlog is full answers EAGAIN: the daemon is
    // alive but busy; try again until the deadline.
    if (e == EAGAIN && !deadline.expired()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      continue;
    }
    ::close(fd);
    if (error != nullptr) *error = e;
    if (e == EAGAIN) return Status::Unavailable("connect to " + path + " timed out (backlog full)");
    if (e == EACCES || e == EPERM)
      return Status::IOError("connect to " + path + ": " + std::strerror(e) +
                             " (the socket's mode or its directory keeps this user out)");
    return Status::Unavailable("connect to " + path + ": " + std::strerror(e));
  }
  *out = fd;
  return Status::OK();
}

}  // namespace kvtier::daemon
