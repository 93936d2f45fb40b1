// kvtierd's server: socket setup, accept loop, shutdown (see server.h).
#include "daemon/server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "daemon/protocol.h"
#include "daemon/socket_io.h"
#include "store/rocks_block_store.h"

namespace kvtier {

namespace {

constexpr int kProbeTimeoutMs = 1000;
constexpr int kListenBacklog = 128;
// The file in the store directory that names the daemon holding the store
// (for the kvtier CLI); removed on a clean shutdown.
constexpr char kNoteFile[] = "KVTIERD";

std::string Join(const std::vector<uint32_t>& v) {
  std::string out;
  for (uint32_t x : v) {
    if (!out.empty()) out += ',';
    out += std::to_string(x);
  }
  return out.empty() ? "none" : out;
}

std::string Errno(int e) { return std::strerror(e); }

// Who answers on a live socket: "pid N, store S" from its welcome, or a
// note that it does not speak the protocol.
std::string ProbeWho(int fd) {
  using namespace daemon;
  const Deadline deadline = Deadline::In(kProbeTimeoutMs);
  Hello hello;
  hello.pid = static_cast<uint32_t>(::getpid());
  hello.name = "kvtierd-probe";
  FrameHeader h;
  h.op = static_cast<uint8_t>(Op::kHello);
  const std::string body = EncodeHello(hello);
  h.body_bytes = static_cast<uint32_t>(body.size());
  if (!WriteFrame(fd, h, body, deadline).ok()) return "it did not take a hello";
  uint8_t head[kFrameHeaderBytes];
  FrameHeader reply;
  if (!ReadExact(fd, head, sizeof(head), deadline).ok() || !DecodeFrameHeader(head, &reply).ok() ||
      reply.body_bytes > kMaxHelloBytes * 8)
    return "it does not answer as a kvtierd";
  std::string reply_body(reply.body_bytes, '\0');
  if (!ReadExact(fd, reply_body.data(), reply_body.size(), deadline).ok())
    return "it does not answer as a kvtierd";
  Welcome welcome;
  if (reply.status != 0 || !DecodeWelcome(reply_body, &welcome))
    return "a kvtierd that refused the probe: " + reply_body;
  return "pid " + std::to_string(welcome.pid) + ", " + welcome.store;
}

}  // namespace

Status Daemon::Start(const DaemonOptions& options, std::unique_ptr<Daemon>* daemon) {
  daemon->reset();
  auto server = std::make_unique<Server>(options);
  Status s = server->Start();
  if (!s.ok()) return s;  // ~Server undoes what was done
  daemon->reset(new Daemon(std::move(server)));
  return Status::OK();
}

Daemon::Daemon(std::unique_ptr<Server> server) : server_(std::move(server)) {}
Daemon::~Daemon() { (void)server_->Shutdown(); }
Status Daemon::Shutdown() { return server_->Shutdown(); }
DaemonStats Daemon::Stats() const { return server_->Stats(); }

Daemon::Server::Server(const DaemonOptions& options) : options_(options) {}

Daemon::Server::~Server() { (void)Shutdown(); }

void Daemon::Server::Log(const std::string& message) const {
  if (options_.log) {
    options_.log(message);
  } else {
    std::fprintf(stderr, "kvtierd: %s\n", message.c_str());
  }
}

std::string Daemon::Server::NotePath() const {
  return (std::filesystem::path(options_.store_dir) / kNoteFile).string();
}

Status Daemon::Server::CheckOptions() const {
  const DaemonOptions& o = options_;
  if (o.store_dir.empty()) return Status::InvalidArgument("no store directory given (--store)");
  if (o.store_dir.starts_with("unix:"))
    return Status::InvalidArgument("kvtierd's store must be a directory, not " + o.store_dir);
  if (o.socket_path.empty()) return Status::InvalidArgument("no socket path given (--socket)");
  if (o.socket_path.size() >= sizeof(sockaddr_un::sun_path))
    return Status::InvalidArgument("socket path " + o.socket_path + " is longer than " +
                                   std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes");
  if (o.socket_mode > 0777)
    return Status::InvalidArgument("socket mode " + std::to_string(o.socket_mode) + " is not a permission mode");
  if (o.max_frame_bytes < daemon::kMinFrameBytes)
    return Status::InvalidArgument("frame limit of " + std::to_string(o.max_frame_bytes) +
                                   " bytes is below the minimum of " +
                                   std::to_string(daemon::kMinFrameBytes));
  if (o.max_connections < 1) return Status::InvalidArgument("max_connections must be at least 1");
  if (o.io_timeout_ms < 1) return Status::InvalidArgument("io_timeout_ms must be positive");
  if (!o.metrics_file.empty() && o.metrics_interval_ms < 1)
    return Status::InvalidArgument("metrics_interval_ms must be positive");
  return Status::OK();
}

Status Daemon::Server::ClaimSocketPath() {
  const std::string& path = options_.socket_path;
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::OK();
    return Status::IOError("cannot inspect socket path " + path + ": " + Errno(errno));
  }
  if (!S_ISSOCK(st.st_mode))
    return Status::InvalidArgument(path + " exists and is not a socket; refusing to replace it");
  int fd = -1, error = 0;
  Status s = daemon::ConnectUnix(path, daemon::Deadline::In(kProbeTimeoutMs), &fd, &error);
  if (s.ok()) {
    const std::string who = ProbeWho(fd);
    ::close(fd);
    return Status::Busy("socket " + path + " is held by a live daemon (" + who +
                        "); stop it first, or give another --socket");
  }
  if (error == ENOENT) return Status::OK();  // removed meanwhile
  if (error != ECONNREFUSED) return s.IsUnavailable() ? Status::Busy(s.message()) : s;
  // Nobody listens: the socket file of a daemon that died. Replace it.
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    return Status::IOError("cannot remove the stale socket " + path + ": " + Errno(errno));
  Log("replaced the stale socket " + path + " (no daemon answered on it)");
  return Status::OK();
}

Status Daemon::Server::Listen() {
  const std::string& path = options_.socket_path;
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::IOError("cannot create a socket: " + Errno(errno));
  listen_fd_ = fd;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int e = errno;
    if (e == EADDRINUSE)
      return Status::Busy("socket " + path + " was taken by another process while kvtierd started");
    return Status::IOError("cannot bind socket " + path + ": " + Errno(e));
  }
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    socket_inode_ = st.st_ino;
    socket_device_ = st.st_dev;
  }
  // Nobody can connect before listen(), so the mode is in place first.
  if (::chmod(path.c_str(), static_cast<mode_t>(options_.socket_mode)) != 0)
    return Status::IOError("cannot set mode of socket " + path + ": " + Errno(errno));
  if (::listen(fd, kListenBacklog) != 0)
    return Status::IOError("cannot listen on socket " + path + ": " + Errno(errno));
  return Status::OK();
}

Status Daemon::Server::Start() {
  Status s = CheckOptions();
  if (!s.ok()) return s;
  s = ClaimSocketPath();
  if (!s.ok()) return s;
  StoreOptions store_options = options_.store_options;
  if (!store_options.log) store_options.log = [this](std::string_view m) { Log("store: " + std::string(m)); };
  s = RocksBlockStore::Open(options_.store_dir, store_options, &store_);
  if (!s.ok()) return s;
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) return Status::IOError("cannot create an eventfd: " + Errno(errno));
  context_.store = store_.get();
  context_.metrics = &metrics_;
  context_.options = &options_;
  context_.stop_fd = stop_fd_;
  context_.stats = [this] { return Stats(); };
  context_.log = [this](const std::string& m) { Log(m); };
  {
    // Written before the socket listens, so whoever reaches the daemon
    // finds the note too (Shutdown removes it, also after a failed start).
    std::error_code ec;
    const auto socket = std::filesystem::absolute(options_.socket_path, ec);
    std::ofstream note(NotePath(), std::ios::trunc);
    note << "pid " << ::getpid() << "\nsocket " << (ec ? options_.socket_path : socket.string()) << "\n";
    if (!note) Log("cannot write " + NotePath() + " (the kvtier CLI uses it to find this daemon)");
  }
  s = Listen();
  if (!s.ok()) return s;
  accept_thread_ = std::thread([this] { AcceptLoop(); });
  if (!options_.metrics_file.empty()) {
    WriteMetricsFile();
    metrics_thread_ = std::thread([this] { MetricsLoop(); });
  }
  char mode[8];
  std::snprintf(mode, sizeof(mode), "%04o", options_.socket_mode);
  const bool defaults = options_.allow_uids.empty() && options_.allow_gids.empty();
  Log("serving " + store_->Describe() + " on " + options_.socket_path + " (mode " + mode +
      ", allowed " +
      (defaults ? "uid " + std::to_string(::geteuid()) + " / gid " + std::to_string(::getegid())
                : "uids " + Join(options_.allow_uids) + " / gids " + Join(options_.allow_gids)) +
      ", disk budget " + std::to_string(options_.store_options.max_bytes) + " bytes, frame limit " +
      std::to_string(options_.max_frame_bytes) + " bytes)");
  return Status::OK();
}

std::string Daemon::Server::Refusal(const ucred& peer) const {
  const auto& uids = options_.allow_uids;
  const auto& gids = options_.allow_gids;
  const std::string who = "uid " + std::to_string(peer.uid) + " gid " + std::to_string(peer.gid);
  if (uids.empty() && gids.empty()) {
    if (peer.uid == ::geteuid() || peer.gid == ::getegid()) return "";
    return "kvtierd refuses " + who + ": by default it accepts only its own uid " +
           std::to_string(::geteuid()) + " or gid " + std::to_string(::getegid()) +
           " (start it with --allow-uid/--allow-gid)";
  }
  if (std::find(uids.begin(), uids.end(), peer.uid) != uids.end()) return "";
  if (std::find(gids.begin(), gids.end(), peer.gid) != gids.end()) return "";
  return "kvtierd refuses " + who + ": not among its allowed uids (" + Join(uids) + ") or gids (" +
         Join(gids) + ")";
}

void Daemon::Server::ReapFinished() {
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (it->done.load()) {
      it->thread.join();
      it = workers_.erase(it);
    } else {
      ++it;
    }
  }
}

void Daemon::Server::AcceptLoop() {
  uint64_t accept_errors = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        ReapFinished();
        return stopping_ || workers_.size() < static_cast<size_t>(options_.max_connections);
      });
      if (stopping_) return;
    }
    pollfd p[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (::poll(p, 2, 1000) < 0 && errno != EINTR) {
      Log("poll on the listening socket failed: " + Errno(errno));
      return;
    }
    if ((p[1].revents & POLLIN) != 0) return;
    if ((p[0].revents & POLLIN) == 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      const int e = errno;
      if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR || e == ECONNABORTED) continue;
      if (++accept_errors <= 3 || (accept_errors & (accept_errors - 1)) == 0)
        Log("accept failed: " + Errno(e) + " (occurrence " + std::to_string(accept_errors) + ")");
      std::this_thread::sleep_for(std::chrono::milliseconds(100));  // EMFILE and friends
      continue;
    }
    daemon::EnlargeSendBuffer(fd);
    ucred peer{};
    socklen_t len = sizeof(peer);
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0) {
      Log("cannot read the peer credentials of a connection: " + Errno(errno) + "; closing it");
      ::close(fd);
      continue;
    }
    std::string refusal = Refusal(peer);
    if (refusal.empty()) {
      metrics_.ConnectionAccepted();
    } else {
      metrics_.ConnectionRejected();
    }
    std::lock_guard<std::mutex> lock(mu_);
    Worker* worker = &workers_.emplace_back();
    worker->thread = std::thread([this, worker, fd, peer, refusal = std::move(refusal)] {
      metrics_.ConnectionOpened();
      {
        daemon::Connection connection(fd, peer, refusal, &context_);
        connection.Serve();
      }
      ::close(fd);
      metrics_.ConnectionClosed();
      {
        std::lock_guard<std::mutex> done_lock(mu_);
        worker->done = true;
      }
      cv_.notify_all();
    });
  }
}

void Daemon::Server::WriteMetricsFile() {
  const std::string& path = options_.metrics_file;
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << FormatPrometheus(Stats());
    if (!out) {
      Log("cannot write the metrics file " + tmp);
      return;
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    Log("cannot rename " + tmp + " to " + path + ": " + Errno(errno));
}

void Daemon::Server::MetricsLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (cv_.wait_for(lock, std::chrono::milliseconds(options_.metrics_interval_ms),
                     [&] { return stopping_; }))
      return;
    lock.unlock();
    WriteMetricsFile();
    lock.lock();
  }
}

Status Daemon::Server::Shutdown() {
  std::lock_guard<std::mutex> serial(shutdown_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return shutdown_status_;
    stopping_ = true;
  }
  cv_.notify_all();
  const bool serving = store_ != nullptr && listen_fd_ >= 0;
  if (serving) Log("shutting down: finishing requests in flight");
  if (stop_fd_ >= 0) {
    const uint64_t one = 1;
    (void)!::write(stop_fd_, &one, sizeof(one));
  }
  if (accept_thread_.joinable()) accept_thread_.join();
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    listen_fd_ = -1;
    struct stat st;
    // Remove the socket file only if it is still ours.
    if (::stat(options_.socket_path.c_str(), &st) == 0 && st.st_ino == socket_inode_ &&
        st.st_dev == socket_device_)
      ::unlink(options_.socket_path.c_str());
  }
  // The accept loop is gone, so the list no longer changes; workers finish
  // the request they hold and end (idle ones at once).
  for (Worker& w : workers_)
    if (w.thread.joinable()) w.thread.join();
  workers_.clear();
  if (metrics_thread_.joinable()) metrics_thread_.join();
  if (!options_.metrics_file.empty() && serving) ::unlink(options_.metrics_file.c_str());
  Status s;
  {
    std::unique_lock<std::shared_mutex> lock(store_mu_);
    if (store_ != nullptr) {
      s = store_->Flush();
      store_.reset();
      ::unlink(NotePath().c_str());
    }
  }
  if (stop_fd_ >= 0) {
    ::close(stop_fd_);
    stop_fd_ = -1;
  }
  if (serving) Log(s.ok() ? "store flushed and closed; stopped" : "stopped; flushing the store failed: " + s.ToString());
  std::lock_guard<std::mutex> lock(mu_);
  stopped_ = true;
  shutdown_status_ = s;
  return s;
}

DaemonStats Daemon::Server::Stats() const {
  DaemonStats s = metrics_.Snapshot();
  std::shared_lock<std::shared_mutex> lock(store_mu_);
  if (store_ != nullptr) {
    s.store = store_->Describe();
    (void)store_->GetStats(&s.store_stats);
  }
  return s;
}

}  // namespace kvtier
