// One connection to kvtierd (see daemon_connection.h).
#include "client/daemon_connection.h"

#include <unistd.h>

namespace kvtier {

using daemon::Deadline;
using daemon::FrameHeader;
using daemon::IoOutcome;
using daemon::IoResult;
using daemon::Op;

namespace {

// A non-OK response carries a message, never more than this.
constexpr uint32_t kMaxMessageBytes = 64u << 10;

}  // namespace

DaemonConnection::~DaemonConnection() { ::close(fd_); }

Status DaemonConnection::Open(const std::string& path, const std::string& client_name,
                              const Deadline& deadline, std::unique_ptr<DaemonConnection>* out) {
  out->reset();
  int fd = -1;
  Status s = daemon::ConnectUnix(path, deadline, &fd);
  if (!s.ok()) return s.IsUnavailable() ? Status::Unavailable("kvtierd is not reachable: " + s.message()) : s;
  std::unique_ptr<DaemonConnection> c(new DaemonConnection(fd, path));
  daemon::Hello hello;
  hello.pid = static_cast<uint32_t>(::getpid());
  hello.name = client_name;
  std::string body;
  s = c->Call(Op::kHello, daemon::EncodeHello(hello), &body, deadline);
  if (s.IsIOError() && !c->broken())
    return Status::IOError("kvtierd at " + path + " refused this process: " + s.message());
  if (!s.ok()) return s;
  daemon::Welcome welcome;
  if (!daemon::DecodeWelcome(body, &welcome) || welcome.version != daemon::kProtocolVersion ||
      welcome.max_frame_bytes < daemon::kMinFrameBytes)
    return Status::Corruption("kvtierd at " + path + " sent a malformed welcome (" +
                              std::to_string(body.size()) + " bytes)");
  c->max_frame_bytes_ = welcome.max_frame_bytes;
  c->daemon_pid_ = welcome.pid;
  *out = std::move(c);
  return Status::OK();
}

Status DaemonConnection::Broken(Status s) {
  broken_ = true;
  return s;
}

Status DaemonConnection::Transport(std::string_view what, const IoResult& r, size_t wanted) {
  broken_ = true;
  peer_gone_ = r.outcome == IoOutcome::kClosed;
  timed_out_ = r.outcome == IoOutcome::kTimedOut;
  return Status::Unavailable("kvtierd at " + path_ + ": " + std::string(what) + " " +
                             daemon::OpName(current_op_) + ": " + r.Describe(wanted));
}

Status DaemonConnection::Send(Op op, std::span<const iovec> body, const Deadline& deadline) {
  if (broken_) return Status::Unavailable("kvtierd at " + path_ + ": connection already broken");
  FrameHeader h;
  h.op = static_cast<uint8_t>(op);
  h.request_id = current_id_ = next_id_++;
  current_op_ = h.op;
  answered_ = false;
  uint64_t total = 0;
  for (const iovec& v : body) total += v.iov_len;
  if (total + daemon::kFrameHeaderBytes > max_frame_bytes_)
    return Status::InvalidArgument(daemon::OpName(h.op) + " request of " +
                                   std::to_string(total + daemon::kFrameHeaderBytes) +
                                   " bytes exceeds kvtierd's frame limit of " +
                                   std::to_string(max_frame_bytes_) + " bytes");
  h.body_bytes = static_cast<uint32_t>(total);
  const IoResult r = daemon::WriteFrame(fd_, h, body, deadline);
  if (!r.ok()) return Transport("sending", r, daemon::kFrameHeaderBytes + total);
  return Status::OK();
}

Status DaemonConnection::Read(void* buf, size_t n, const Deadline& deadline) {
  const IoResult r = daemon::ReadExact(fd_, buf, n, deadline);
  if (r.bytes > 0) answered_ = true;
  if (!r.ok()) return Transport("reading the answer to", r, n);
  return Status::OK();
}

Status DaemonConnection::Receive(FrameHeader* h, const Deadline& deadline) {
  uint8_t head[daemon::kFrameHeaderBytes];
  Status s = Read(head, sizeof(head), deadline);
  if (!s.ok()) return s;
  s = daemon::DecodeFrameHeader(head, h);
  if (!s.ok()) return Broken(s.WithContext("kvtierd at " + path_ + " answered"));
  const bool protocol_error = h->op == static_cast<uint8_t>(Op::kProtocolError);
  if ((h->op != current_op_ && !protocol_error) || h->request_id != current_id_)
    return Broken(Status::Corruption("kvtierd at " + path_ + " answered " + daemon::OpName(h->op) +
                                     " #" + std::to_string(h->request_id) + " to " +
                                     daemon::OpName(current_op_) + " #" + std::to_string(current_id_)));
  if (uint64_t{h->body_bytes} + daemon::kFrameHeaderBytes > max_frame_bytes_)
    return Broken(Status::Corruption("kvtierd at " + path_ + " sent a frame of " +
                                     std::to_string(h->body_bytes) + " bytes, over its own limit"));
  if (h->status == 0 && !protocol_error) return Status::OK();
  if (h->body_bytes > kMaxMessageBytes)
    return Broken(Status::Corruption("kvtierd at " + path_ + " sent an error message of " +
                                     std::to_string(h->body_bytes) + " bytes"));
  std::string message(h->body_bytes, '\0');
  s = Read(message.data(), message.size(), deadline);
  if (!s.ok()) return s;
  if (protocol_error) {
    broken_ = true;  // the daemon closes the connection after a protocol error
    Status e = daemon::StatusFromWire(h->status, message);
    return e.ok() ? Status::Corruption("kvtierd closed the connection") : e.WithContext("kvtierd closed the connection");
  }
  return daemon::StatusFromWire(h->status, message);
}

Status DaemonConnection::Call(Op op, std::span<const iovec> request, std::string* body,
                              const Deadline& deadline) {
  Status s = Send(op, request, deadline);
  if (!s.ok()) return s;
  FrameHeader h;
  s = Receive(&h, deadline);
  if (!s.ok()) return s;
  if (h.flags != 0) return Broken(Status::Corruption("kvtierd answered " + daemon::OpName(h.op) + " with flags"));
  body->resize(h.body_bytes);
  return Read(body->data(), body->size(), deadline);
}

Status DaemonConnection::Call(Op op, std::string_view request, std::string* body,
                              const Deadline& deadline) {
  const iovec piece{const_cast<char*>(request.data()), request.size()};
  return Call(op, std::span<const iovec>(&piece, request.empty() ? 0 : 1), body, deadline);
}

}  // namespace kvtier
