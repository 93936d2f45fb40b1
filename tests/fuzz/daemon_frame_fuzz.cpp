// Fuzz target: kvtierd's request path (src/daemon/connection.{h,cc}: frame
// header checks, the hello handshake, every request body parser, dispatch
// and responses), as a client on the other end of the socket would drive
// it. Each input is the byte stream a client sends: the harness writes it
// into one end of a socketpair, closes that end for writing, and serves
// the other end with a daemon::Connection over an in-memory BlockStore
// until the connection ends. A reader thread drains the responses.
//
// The daemon must never crash, hang or trip a sanitizer whatever a client
// sends; the store must only ever see records that parse.
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <thread>

#include "daemon/connection.h"
#include "daemon/daemon_metrics.h"
#include "kvtier/record.h"
#include "kvtier/store.h"

using namespace kvtier;

namespace {

// A BlockStore in memory, with a byte cap (a fuzz input must not grow it
// without bound). Puts parse every record like the real store.
class MemoryStore final : public BlockStore {
 public:
  void MultiGet(std::span<const Hash128> keys, std::vector<std::string>* values,
                std::vector<Status>* statuses) override {
    values->assign(keys.size(), std::string());
    statuses->assign(keys.size(), Status::OK());
    for (size_t i = 0; i < keys.size(); ++i) {
      auto it = records_.find(keys[i]);
      if (it == records_.end()) {
        (*statuses)[i] = Status::NotFound("no record");
      } else {
        (*values)[i] = it->second;
      }
    }
  }
  Status Exists(std::span<const Hash128> keys, std::vector<uint8_t>* present) override {
    present->clear();
    for (const Hash128& k : keys) present->push_back(records_.count(k) != 0);
    return Status::OK();
  }
  Status Put(std::span<const std::string_view> records) override {
    std::vector<Hash128> keys;
    uint64_t bytes = 0;
    for (std::string_view r : records) {
      RecordHeader h;
      Status s = ParseRecordHeader(r, &h);
      if (!s.ok()) return s;
      if (h.record_size() != r.size()) __builtin_trap();  // the parser's promise
      keys.push_back(h.Key());
      bytes += r.size();
    }
    if (bytes_ + bytes > (8u << 20)) return Status::Full("memory store full");
    for (size_t i = 0; i < records.size(); ++i) {
      auto [it, fresh] = records_.emplace(keys[i], std::string(records[i]));
      if (fresh) bytes_ += it->second.size();
    }
    return Status::OK();
  }
  Status Touch(std::span<const Hash128>) override { return Status::OK(); }
  Status Delete(std::span<const Hash128> keys) override {
    for (const Hash128& k : keys) {
      auto it = records_.find(k);
      if (it != records_.end()) {
        bytes_ -= it->second.size();
        records_.erase(it);
      }
    }
    return Status::OK();
  }
  Status Flush() override { return Status::OK(); }
  Status GetStats(StoreStats* stats) override {
    *stats = StoreStats{};
    stats->format_version = kStoreFormatVersion;
    stats->records = records_.size();
    stats->stored_bytes = bytes_;
    return Status::OK();
  }
  Status RegisterNamespace(const Namespace& ns) override {
    Status s = ns.Validate();
    if (!s.ok()) return s;
    NamespaceEntry& e = namespaces_[ns.Fingerprint()];
    e.fingerprint = ns.Fingerprint();
    e.ns = ns;
    return Status::OK();
  }
  Status ListNamespaces(std::vector<NamespaceEntry>* out) override {
    out->clear();
    for (const auto& [fp, e] : namespaces_) out->push_back(e);
    return Status::OK();
  }
  Status GetMeta(const Hash128& key, RecordMeta* meta) override {
    auto it = records_.find(key);
    if (it == records_.end()) return Status::NotFound("no record");
    *meta = RecordMeta{};
    meta->key = key;
    meta->stored_bytes = it->second.size();
    return Status::OK();
  }
  Status ForEachRecord(const std::function<bool(const RecordMeta&)>& fn) override {
    for (const auto& [key, value] : records_) {
      RecordMeta m;
      m.key = key;
      m.stored_bytes = value.size();
      if (!fn(m)) break;
    }
    return Status::OK();
  }
  Status TrimToBytes(uint64_t, TrimResult* result) override { return Clear(result); }
  Status TrimOlderThan(int64_t, TrimResult* result) override { return Clear(result); }
  Status DropNamespace(const Hash128& fp, TrimResult* result) override {
    *result = TrimResult{};
    return namespaces_.erase(fp) ? Status::OK() : Status::NotFound("no such namespace");
  }
  Status Compact(CompactResult* result) override {
    *result = CompactResult{};
    return Status::OK();
  }
  std::string Describe() const override { return "memory:fuzz"; }

 private:
  Status Clear(TrimResult* result) {
    *result = TrimResult{};
    result->records_deleted = records_.size();
    records_.clear();
    bytes_ = 0;
    return Status::OK();
  }
  std::map<Hash128, std::string> records_;
  std::map<Hash128, NamespaceEntry> namespaces_;
  uint64_t bytes_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const int stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);  // never signalled
  static daemon::DaemonMetrics metrics;
  static const DaemonOptions options = [] {
    DaemonOptions o;
    o.max_frame_bytes = daemon::kMinFrameBytes;  // responses are cut to 1 MiB
    o.io_timeout_ms = 2000;
    return o;
  }();
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return 0;
  const int big = 4 << 20;
  setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
  setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
  // The client: sends the input, then drains responses until the daemon
  // side closes.
  std::thread client([fd = fds[0], data, size] {
    size_t sent = 0;
    while (sent < size) {
      const ssize_t n = ::send(fd, data + sent, size - sent, MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    ::shutdown(fd, SHUT_WR);
    char buf[65536];
    while (::read(fd, buf, sizeof(buf)) > 0) {
    }
  });
  {
    MemoryStore store;
    daemon::ConnectionContext context;
    context.store = &store;
    context.metrics = &metrics;
    context.options = &options;
    context.stop_fd = stop_fd;
    context.stats = [] { return DaemonStats{}; };
    context.log = [](const std::string&) {};
    ucred peer{getpid(), getuid(), getgid()};
    daemon::Connection connection(fds[1], peer, "", &context);
    connection.Serve();
  }
  ::shutdown(fds[1], SHUT_RDWR);
  client.join();
  close(fds[0]);
  close(fds[1]);
  return 0;
}
