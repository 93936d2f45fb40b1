// Multi-process tests of kvtierd and its client: each test runs the real
// kvtierd binary ($KVTIER_TEST_BINARY_DIR/../tools/daemon/kvtierd) on a
// store and a socket in a temp directory, and real client processes
// (fork) against it. Every wait is bounded; no timing is asserted.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "client/daemon_block_store.h"
#include "daemon/protocol.h"
#include "kvtier/cache.h"
#include "kvtier/daemon.h"
#include "kvtier/record.h"
#include "kvtier/store.h"
#include "test_util.h"

namespace kvtier {
namespace {

using namespace std::chrono_literals;
using test::TempDir;

std::string KvtierdBinary() {
  const char* dir = std::getenv("KVTIER_TEST_BINARY_DIR");
  std::filesystem::path base = dir != nullptr ? std::filesystem::path(dir)
                                              : std::filesystem::read_symlink("/proc/self/exe").parent_path();
  return (base / ".." / "tools" / "daemon" / "kvtierd").lexically_normal().string();
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Waits for `pid` up to `timeout`; its exit code, 128+signal, or -1 on timeout.
int WaitFor(pid_t pid, std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (r < 0 || std::chrono::steady_clock::now() >= end) return -1;
    std::this_thread::sleep_for(5ms);
  }
}

// True once a Unix socket at `path` accepts connections.
bool Listening(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

// A kvtierd process. Killed (SIGKILL) on destruction if still running.
class Kvtierd {
 public:
  Kvtierd(std::string store, std::string socket, std::vector<std::string> extra = {})
      : store_(std::move(store)), socket_(std::move(socket)), extra_(std::move(extra)) {}
  ~Kvtierd() { Kill(); }

  void Start(const std::string& log) {
    log_ = log;
    std::vector<std::string> args = {KvtierdBinary(), "--store", store_, "--socket", socket_};
    args.insert(args.end(), extra_.begin(), extra_.end());
    const pid_t parent = getpid();
    pid_ = fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test
      if (getppid() != parent) _exit(97);
      const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) dup2(fd, 2);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(98);
    }
  }
  // Starts and waits until the socket accepts connections.
  void StartServing(const std::string& log) {
    Start(log);
    for (int i = 0; i < 2000 && !Listening(socket_); ++i) {
      int status;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        FAIL("kvtierd exited at start:\n" << Slurp(log));
      }
      std::this_thread::sleep_for(10ms);
    }
    REQUIRE(Listening(socket_));
  }
  // SIGTERM, then the exit code (-1 if it did not stop in time).
  int Stop() {
    if (pid_ <= 0) return -1;
    kill(pid_, SIGTERM);
    const int code = WaitFor(pid_, 30s);
    if (code == -1) Kill();
    pid_ = -1;
    return code;
  }
  int WaitExit() {
    const int code = WaitFor(pid_, 30s);
    if (code == -1) Kill();
    pid_ = -1;
    return code;
  }
  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    WaitFor(pid_, 30s);
    pid_ = -1;
  }
  bool Alive() const { return pid_ > 0 && kill(pid_, 0) == 0 && WaitFor(pid_, 0ms) == -1; }
  void Signal(int sig) const {
    if (pid_ > 0) kill(pid_, sig);
  }
  // True once the process is stopped (state T in /proc/PID/stat): SIGSTOP
  // takes effect asynchronously.
  bool WaitStopped() const {
    for (int i = 0; i < 1000; ++i) {
      const std::string stat = Slurp("/proc/" + std::to_string(pid_) + "/stat");
      const size_t paren = stat.rfind(')');
      if (paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'T') return true;
      std::this_thread::sleep_for(5ms);
    }
    return false;
  }
  std::string Log() const { return Slurp(log_); }

 private:
  std::string store_, socket_, log_;
  std::vector<std::string> extra_;
  pid_t pid_ = -1;
};

// Runs `body` in a forked child process; returns its exit code (-1 if it
// did not finish within `timeout`: it is killed). The child never returns
// into Catch2.
pid_t Spawn(const std::function<int()>& body) {
  const pid_t parent = getpid();
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(97);
    int code = 99;
    try {
      code = body();
    } catch (...) {
    }
    std::fflush(nullptr);
    _exit(code);
  }
  return pid;
}

int Join(pid_t pid, std::chrono::milliseconds timeout = 120s) {
  const int code = WaitFor(pid, timeout);
  if (code == -1) {
    kill(pid, SIGKILL);
    WaitFor(pid, 10s);
  }
  return code;
}

int RunChild(const std::function<int()>& body) { return Join(Spawn(body)); }

// A shared cache on the daemon at `socket` (write-through: the default for
// a daemon store).
Status OpenShared(const std::string& socket, const BlockLayout& layout, std::unique_ptr<Cache>* cache,
                  uint64_t memory_bytes = 64ull << 20) {
  CacheOptions o;
  o.ns = test::TestNamespace(layout);
  o.memory_bytes = memory_bytes;
  o.store = "unix:" + socket;
  o.log = [](std::string_view) {};
  return Cache::Open(o, cache);
}

std::vector<std::vector<std::byte>> Payloads(const BlockLayout& layout, size_t n, uint64_t seed) {
  std::vector<std::vector<std::byte>> out;
  for (size_t i = 0; i < n; ++i) out.push_back(test::Payload(layout, seed * 1000 + i));
  return out;
}

Status InsertPrompt(Cache* cache, const std::vector<uint32_t>& tokens,
                    const std::vector<std::vector<std::byte>>& payloads) {
  std::vector<std::span<const std::byte>> spans(payloads.begin(), payloads.end());
  return cache->InsertBlocks(tokens, 0, spans);
}

// Every block of `tokens` is served with exactly `payloads`.
bool ServesExactly(const Lease& lease, const std::vector<std::vector<std::byte>>& payloads) {
  if (lease.num_blocks() != payloads.size()) return false;
  for (size_t i = 0; i < payloads.size(); ++i) {
    auto b = lease.block(i);
    if (b.size() != payloads[i].size() || std::memcmp(b.data(), payloads[i].data(), b.size()) != 0)
      return false;
  }
  return true;
}

// Opens `dir` directly (the daemon stopped) and checks every record:
// header, payload checksum, and that its key is the hash of its content.
void RequireStoreIntact(const std::string& dir, uint64_t* records) {
  std::unique_ptr<BlockStore> store;
  StoreOptions o;
  o.read_only = true;
  o.log = [](std::string_view) {};
  REQUIRE(OpenBlockStore(dir, o, &store).ok());
  std::vector<Hash128> keys;
  REQUIRE(store->ForEachRecord([&](const RecordMeta& m) {
    keys.push_back(m.key);
    return true;
  }).ok());
  std::vector<std::string> values;
  std::vector<Status> statuses;
  store->MultiGet(keys, &values, &statuses);
  for (size_t i = 0; i < keys.size(); ++i) {
    INFO("record " << keys[i].ToHex());
    REQUIRE(statuses[i].ok());
    RecordHeader h;
    std::vector<std::byte> payload;
    REQUIRE(DecodeRecord(values[i], &h, &payload).ok());
    CHECK(h.Key() == keys[i]);
  }
  *records = keys.size();
}

struct Setup {
  TempDir tmp;
  std::string store = tmp.sub("store");
  std::string socket = tmp.sub("kvtier.sock");
  std::string log = tmp.sub("kvtierd.log");
};

TEST_CASE("a prefix inserted by one process is a bit-exact disk hit in another") {
  Setup s;
  Kvtierd d(s.store, s.socket);
  d.StartServing(s.log);
  const BlockLayout layout = test::SmallLayout();
  const auto tokens = test::Tokens(3 * layout.block_size + 2, 7);
  const auto payloads = Payloads(layout, 3, 7);

  const int a = RunChild([&] {
    setenv("KVTIER_CLIENT_NAME", "writer-a", 1);
    std::unique_ptr<Cache> cache;
    if (!OpenShared(s.socket, layout, &cache).ok()) return 1;
    if (!InsertPrompt(cache.get(), tokens, payloads).ok()) return 2;
    return cache->Close().ok() ? 0 : 3;
  });
  REQUIRE(a == 0);

  setenv("KVTIER_CLIENT_NAME", "reader-b", 1);
  std::unique_ptr<Cache> cache;
  REQUIRE(OpenShared(s.socket, layout, &cache).ok());
  unsetenv("KVTIER_CLIENT_NAME");
  Lease lease = cache->Lookup(tokens);
  CHECK(lease.blocks_from_disk() == 3);
  CHECK(ServesExactly(lease, payloads));
  CHECK(cache->Stats().disk_hits == 3);
  CHECK(cache->store()->Describe() == "kvtierd:" + s.socket);

  DaemonStats stats;
  REQUIRE(QueryDaemonStats(s.socket, 5000, &stats).ok());
  CHECK(stats.total.put_records == 3);
  CHECK(stats.total.get_hits >= 3);
  CHECK(stats.store_stats.records == 3);
  std::map<std::string, const DaemonClientStats*> clients;
  for (const auto& c : stats.clients) clients[c.name] = &c;
  REQUIRE(clients.count("writer-a") == 1);
  REQUIRE(clients.count("reader-b") == 1);
  CHECK(clients["writer-a"]->counters.put_records == 3);
  CHECK(clients["writer-a"]->connections == 0);
  CHECK(clients["reader-b"]->counters.get_hits == 3);
  CHECK(clients["reader-b"]->connections >= 1);
  CHECK(clients["reader-b"]->counters.get_latency.count >= 1);
  CHECK(clients["reader-b"]->counters.get_latency.p50_seconds > 0);
}

TEST_CASE("in shared mode a new prefix reaches the other processes without a flush") {
  Setup s;
  Kvtierd d(s.store, s.socket);
  d.StartServing(s.log);
  const BlockLayout layout = test::SmallLayout();
  const auto tokens = test::Tokens(2 * layout.block_size, 11);
  const auto payloads = Payloads(layout, 2, 11);
  int done[2];
  REQUIRE(pipe(done) == 0);
  // The writer inserts and then waits (no flush, no close) until released.
  const pid_t writer = Spawn([&] {
    close(done[1]);
    std::unique_ptr<Cache> cache;
    if (!OpenShared(s.socket, layout, &cache).ok()) return 1;
    if (!InsertPrompt(cache.get(), tokens, payloads).ok()) return 2;
    char c;
    (void)!read(done[0], &c, 1);
    return 0;
  });
  close(done[0]);
  std::unique_ptr<Cache> cache;
  REQUIRE(OpenShared(s.socket, layout, &cache).ok());
  bool hit = false;
  for (int i = 0; i < 400 && !hit; ++i) {  // the writer's spill queue is asynchronous
    Lease lease = cache->Lookup(tokens);
    hit = lease.num_blocks() == 2 && ServesExactly(lease, payloads);
    if (!hit) std::this_thread::sleep_for(25ms);
  }
  close(done[1]);
  CHECK(Join(writer) == 0);
  CHECK(hit);
}

TEST_CASE("concurrent writers of one prefix leave one valid copy of each block") {
  Setup s;
  Kvtierd d(s.store, s.socket);
  d.StartServing(s.log);
  const BlockLayout layout = test::SmallLayout();
  const auto tokens = test::Tokens(8 * layout.block_size, 21);
  const auto payloads = Payloads(layout, 8, 21);
  int go[2];
  REQUIRE(pipe(go) == 0);
  std::vector<pid_t> writers;
  for (int w = 0; w < 4; ++w) {
    writers.push_back(Spawn([&] {
      close(go[1]);
      std::unique_ptr<Cache> cache;
      if (!OpenShared(s.socket, layout, &cache).ok()) return 1;
      char c;
      (void)!read(go[0], &c, 1);  // all start together
      if (!InsertPrompt(cache.get(), tokens, payloads).ok()) return 2;
      return cache->Close().ok() ? 0 : 3;
    }));
  }
  close(go[0]);
  close(go[1]);
  for (pid_t w : writers) CHECK(Join(w) == 0);

  std::unique_ptr<Cache> cache;
  REQUIRE(OpenShared(s.socket, layout, &cache).ok());
  Lease lease = cache->Lookup(tokens);
  CHECK(lease.blocks_from_disk() == 8);
  CHECK(ServesExactly(lease, payloads));
  StoreStats st;
  REQUIRE(cache->store()->GetStats(&st).ok());
  CHECK(st.records == 8);
  lease.Release();
  cache.reset();
  REQUIRE(d.Stop() == 0);
  uint64_t records = 0;
  RequireStoreIntact(s.store, &records);
  CHECK(records == 8);
}

TEST_CASE("clients degrade while kvtierd is killed and recover when it restarts") {
  Setup s;
  Kvtierd d(s.store, s.socket);
  d.StartServing(s.log);
  const BlockLayout layout = test::SmallLayout();
  constexpr int kPrompts = 240;
  const std::string report = s.tmp.sub("writer.report");
  int go[2];
  REQUIRE(pipe(go) == 0);
  // The writer inserts 2-block prompts one after another through the kill
  // and the restart, then flushes (retrying until the daemon takes it) and
  // checks that it still serves every prompt from memory.
  const pid_t writer = Spawn([&] {
    close(go[1]);
    std::unique_ptr<Cache> cache;
    if (!OpenShared(s.socket, layout, &cache).ok()) return 1;
    for (int p = 0; p < kPrompts; ++p) {
      if (p == 40) {
        char c;
        (void)!read(go[0], &c, 1);  // the daemon is dead now
      }
      if (!InsertPrompt(cache.get(), test::Tokens(2 * layout.block_size, 1000 + p),
                        Payloads(layout, 2, 1000 + p))
               .ok())
        return 2;
      std::this_thread::sleep_for(2ms);
    }
    bool flushed = false;
    for (int i = 0; i < 300 && !flushed; ++i) {
      flushed = cache->Flush().ok();
      if (!flushed) std::this_thread::sleep_for(100ms);
    }
    bool served = true;
    for (int p = 0; p < kPrompts; ++p) {
      Lease lease = cache->Lookup(test::Tokens(2 * layout.block_size, 1000 + p));
      served = served && ServesExactly(lease, Payloads(layout, 2, 1000 + p));
    }
    std::ofstream(report) << cache->Stats().store_errors << " " << flushed << " " << served << "\n";
    return 0;
  });
  close(go[0]);
  for (int i = 0; i < 1000; ++i) {  // until the writer has written something
    DaemonStats stats;
    if (QueryDaemonStats(s.socket, 2000, &stats).ok() && stats.total.put_records >= 20) break;
    std::this_thread::sleep_for(10ms);
  }
  d.Kill();
  {
    // A client call now fails fast with Unavailable, naming the socket.
    DaemonClientOptions o;
    o.socket_path = s.socket;
    std::unique_ptr<BlockStore> store;
    Status open = DaemonBlockStore::Open(o, &store);
    CHECK(open.IsUnavailable());
    CHECK(open.message().find(s.socket) != std::string::npos);
  }
  close(go[1]);  // the writer goes on without the daemon
  std::this_thread::sleep_for(300ms);
  d.StartServing(s.log);  // same store, same (now stale) socket
  REQUIRE(Join(writer) == 0);
  std::istringstream in(Slurp(report));
  uint64_t store_errors = 0;
  int flushed = 0, served = 0;
  in >> store_errors >> flushed >> served;
  CHECK(store_errors > 0);  // it noticed the outage
  CHECK(flushed == 1);      // and recovered
  CHECK(served == 1);       // and kept serving from memory throughout
  CHECK(d.Log().find("replaced the stale socket") != std::string::npos);

  std::unique_ptr<Cache> cache;
  REQUIRE(OpenShared(s.socket, layout, &cache).ok());
  for (int p : {0, 39, 41, 120, kPrompts - 1}) {
    INFO("prompt " << p);
    Lease lease = cache->Lookup(test::Tokens(2 * layout.block_size, 1000 + p));
    CHECK(lease.blocks_from_disk() == 2);
    CHECK(ServesExactly(lease, Payloads(layout, 2, 1000 + p)));
  }
  cache.reset();
  REQUIRE(d.Stop() == 0);
  uint64_t records = 0;
  RequireStoreIntact(s.store, &records);
  CHECK(records == 2 * kPrompts);
}

TEST_CASE("no client call blocks on a stalled daemon: it times out, fails fast, then recovers") {
  Setup s;
  Kvtierd d(s.store, s.socket);
  d.StartServing(s.log);
  DaemonClientOptions o;
  o.socket_path = s.socket;
  o.call_timeout_ms = 300;
  o.connect_timeout_ms = 300;
  o.backoff_initial_ms = 200;
  o.backoff_max_ms = 400;
  o.log = [](std::string_view) {};
  std::unique_ptr<BlockStore> store;
  REQUIRE(DaemonBlockStore::Open(o, &store).ok());
  const Hash128 keys[1] = {Hash128{1, 2}};
  std::vector<uint8_t> present;
  REQUIRE(store->Exists(keys, &present).ok());

  d.Signal(SIGSTOP);  // alive, listening, answering nothing
  REQUIRE(d.WaitStopped());
  std::vector<std::string> values;
  std::vector<Status> statuses;
  store->MultiGet(keys, &values, &statuses);  // returns (after the call timeout)
  CHECK(statuses[0].IsUnavailable());
  CHECK(statuses[0].message().find("timed out") != std::string::npos);
  Status fast = store->Exists(keys, &present);  // within the backoff: no socket touched
  CHECK(fast.IsUnavailable());
  CHECK(fast.message().find("next attempt in") != std::string::npos);

  d.Signal(SIGCONT);
  Status back;
  for (int i = 0; i < 200 && !(back = store->Exists(keys, &present)).ok(); ++i) std::this_thread::sleep_for(20ms);
  CHECK(back.ok());
  CHECK(present[0] == 0);
}

TEST_CASE("a client whose uid and gid are not allowed is refused while allowed ones are served") {
  Setup s;
  std::filesystem::permissions(s.tmp.path(), std::filesystem::perms(0755));
  Kvtierd d(s.store, s.socket, {"--allow-uid", "65534", "--allow-gid", "4242", "--socket-mode", "0666"});
  d.StartServing(s.log);
  struct stat st;
  REQUIRE(stat(s.socket.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0666);

  // This process runs as root (uid 0, gid 0): neither is allowed.
  std::unique_ptr<BlockStore> store;
  StoreOptions o;
  Status refused = OpenBlockStore("unix:" + s.socket, o, &store);
  CHECK(refused.IsIOError());
  CHECK(refused.message().find("refused this process") != std::string::npos);
  CHECK(refused.message().find("uid 0 gid 0") != std::string::npos);
  DaemonStats stats;
  CHECK(QueryDaemonStats(s.socket, 5000, &stats).IsIOError());

  const BlockLayout layout = test::SmallLayout();
  const auto tokens = test::Tokens(layout.block_size, 5);
  const auto payloads = Payloads(layout, 1, 5);
  // uid 65534 is allowed: it writes a block.
  CHECK(RunChild([&] {
          if (setgid(65534) != 0 || setuid(65534) != 0) return 10;
          std::unique_ptr<Cache> cache;
          if (!OpenShared(s.socket, layout, &cache).ok()) return 1;
          if (!InsertPrompt(cache.get(), tokens, payloads).ok()) return 2;
          return cache->Close().ok() ? 0 : 3;
        }) == 0);
  // gid 4242 is allowed (uid 0 still is not): it reads the block and the counters.
  const std::string out = s.tmp.sub("gid.out");
  CHECK(RunChild([&] {
          if (setgid(4242) != 0) return 10;
          std::unique_ptr<Cache> cache;
          if (!OpenShared(s.socket, layout, &cache).ok()) return 1;
          if (!ServesExactly(cache->Lookup(tokens), payloads)) return 2;
          DaemonStats child_stats;
          if (!QueryDaemonStats(s.socket, 5000, &child_stats).ok()) return 3;
          std::ofstream(out) << child_stats.connections_rejected << "\n";
          return 0;
        }) == 0);
  CHECK(std::stoull(Slurp(out)) >= 2);
  CHECK(d.Log().find("refuses uid 0 gid 0") != std::string::npos);
}

// A raw connection for malformed frames.
class RawClient {
 public:
  explicit RawClient(const std::string& path) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    REQUIRE(connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    timeval tv{10, 0};  // no read below can hang
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~RawClient() { close(fd_); }
  void Send(std::string_view bytes) { (void)!send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL); }
  void Frame(uint8_t op, std::string_view body, uint32_t claimed = UINT32_MAX) {
    daemon::FrameHeader h;
    h.op = op;
    h.request_id = 7;
    h.body_bytes = claimed == UINT32_MAX ? static_cast<uint32_t>(body.size()) : claimed;
    uint8_t head[daemon::kFrameHeaderBytes];
    daemon::EncodeFrameHeader(h, head);
    Send(std::string_view(reinterpret_cast<char*>(head), sizeof(head)));
    Send(body);
  }
  void Hello(uint16_t min_version = daemon::kProtocolVersion, uint16_t max_version = daemon::kProtocolVersion) {
    daemon::Hello hello;
    hello.min_version = min_version;
    hello.max_version = max_version;
    hello.name = "raw";
    Frame(static_cast<uint8_t>(daemon::Op::kHello), daemon::EncodeHello(hello));
  }
  void EndWrites() { shutdown(fd_, SHUT_WR); }
  // Everything the daemon sends until it closes the connection (or 10 s).
  std::string ReadToEnd() {
    std::string out;
    char buf[4096];
    for (;;) {
      const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) {
        // A daemon that closes with our unread bytes in its queue resets.
        closed_ = n == 0 || errno == ECONNRESET;
        return out;
      }
      out.append(buf, n);
    }
  }
  bool closed() const { return closed_; }

 private:
  int fd_ = -1;
  bool closed_ = false;
};

// The first frame in `bytes`: its header and message body.
daemon::FrameHeader FirstFrame(const std::string& bytes, std::string* body) {
  daemon::FrameHeader h;
  REQUIRE(bytes.size() >= daemon::kFrameHeaderBytes);
  REQUIRE(daemon::DecodeFrameHeader(reinterpret_cast<const uint8_t*>(bytes.data()), &h).ok());
  *body = bytes.substr(daemon::kFrameHeaderBytes, h.body_bytes);
  return h;
}

std::string WelcomeFrameBytes(const std::string& bytes) {
  daemon::FrameHeader h;
  if (bytes.size() < daemon::kFrameHeaderBytes) return bytes;
  (void)daemon::DecodeFrameHeader(reinterpret_cast<const uint8_t*>(bytes.data()), &h);
  return bytes.substr(daemon::kFrameHeaderBytes + h.body_bytes);  // what follows the welcome
}

TEST_CASE("malformed frames close only their own connection and other clients keep working") {
  Setup s;
  Kvtierd d(s.store, s.socket, {"--io-timeout-ms", "2000"});
  d.StartServing(s.log);
  const BlockLayout layout = test::SmallLayout();
  DaemonClientOptions o;
  o.socket_path = s.socket;
  o.client_name = "good";
  o.max_connections = 1;  // one connection, kept open through every case below
  std::unique_ptr<BlockStore> good;
  REQUIRE(DaemonBlockStore::Open(o, &good).ok());
  const auto tokens = test::Tokens(layout.block_size, 3);
  std::string record;
  const auto payload = test::Payload(layout, 3);
  const Namespace ns = test::TestNamespace(layout);
  REQUIRE(EncodeRecord({layout, 0, ns.Fingerprint(), ns.Fingerprint(), tokens}, payload, {}, &record).ok());
  std::string_view view = record;
  REQUIRE(good->Put(std::span<const std::string_view>(&view, 1)).ok());
  RecordHeader header;
  REQUIRE(ParseRecordHeader(record, &header).ok());
  const Hash128 key = header.Key();

  const uint8_t get = static_cast<uint8_t>(daemon::Op::kGet);
  const uint8_t put = static_cast<uint8_t>(daemon::Op::kPut);
  const uint8_t protocol_error = static_cast<uint8_t>(daemon::Op::kProtocolError);
  std::string reply, body;
  SECTION("garbage bytes") {
    RawClient raw(s.socket);
    raw.Send("GET / HTTP/1.1\r\nHost: kvtierd\r\n\r\n");
    reply = raw.ReadToEnd();
    CHECK(raw.closed());
    const daemon::FrameHeader h = FirstFrame(reply, &body);
    CHECK(h.op == protocol_error);
    CHECK(h.status == static_cast<uint8_t>(Status::Code::kCorruption));
    CHECK(body.find("magic") != std::string::npos);
  }
  SECTION("a truncated header") {
    RawClient raw(s.socket);
    raw.Send("KVTD\x02");
    raw.EndWrites();
    raw.ReadToEnd();
    CHECK(raw.closed());
  }
  SECTION("a truncated body (the client stalls)") {
    RawClient raw(s.socket);
    raw.Hello();
    raw.Frame(get, std::string(10, '\0'), /*claimed=*/4 + 16);
    reply = WelcomeFrameBytes(raw.ReadToEnd());  // after io_timeout
    CHECK(raw.closed());
    const daemon::FrameHeader h = FirstFrame(reply, &body);
    CHECK(h.op == protocol_error);
    CHECK(body.find("truncated get frame") != std::string::npos);
  }
  SECTION("an oversized frame") {
    RawClient raw(s.socket);
    raw.Hello();
    raw.Frame(put, "", /*claimed=*/1u << 30);
    reply = WelcomeFrameBytes(raw.ReadToEnd());
    CHECK(raw.closed());
    const daemon::FrameHeader h = FirstFrame(reply, &body);
    CHECK(h.op == protocol_error);
    CHECK(h.status == static_cast<uint8_t>(Status::Code::kInvalidArgument));
    CHECK(body.find("exceeds kvtierd's frame limit") != std::string::npos);
  }
  SECTION("a protocol version the daemon does not speak") {
    RawClient raw(s.socket);
    raw.Hello(/*min_version=*/9, /*max_version=*/12);
    reply = raw.ReadToEnd();
    CHECK(raw.closed());
    const daemon::FrameHeader h = FirstFrame(reply, &body);
    CHECK(h.status == static_cast<uint8_t>(Status::Code::kNotSupported));
    CHECK(body.find("versions 9-12") != std::string::npos);
  }
  SECTION("a request before hello") {
    RawClient raw(s.socket);
    raw.Frame(get, std::string(4, '\0'));
    reply = raw.ReadToEnd();
    CHECK(raw.closed());
    const daemon::FrameHeader h = FirstFrame(reply, &body);
    CHECK(h.op == protocol_error);
    CHECK(body.find("first frame must be hello") != std::string::npos);
  }
  SECTION("a put whose record lengths overrun the frame") {
    RawClient raw(s.socket);
    raw.Hello();
    std::string bad;
    daemon::WireWriter w(&bad);
    w.U32(2);
    w.U32(100);
    w.U32(100);
    bad += std::string(50, 'x');
    raw.Frame(put, bad);
    reply = WelcomeFrameBytes(raw.ReadToEnd());
    CHECK(raw.closed());
    const daemon::FrameHeader h = FirstFrame(reply, &body);
    CHECK(h.op == protocol_error);
    CHECK(body.find("runs past the frame") != std::string::npos);
  }
  SECTION("a well-formed put of a damaged record is refused, the connection stays") {
    std::string damaged = record;
    damaged[40] ^= 0x01;  // inside the namespace fingerprint: the header checksum fails
    std::string_view dv = damaged;
    Status st = good->Put(std::span<const std::string_view>(&dv, 1));
    CHECK(st.IsCorruption());
    CHECK(st.message().find("rejected, nothing written") != std::string::npos);
    DaemonStats stats;
    REQUIRE(QueryDaemonStats(s.socket, 5000, &stats).ok());
    CHECK(stats.total.put_rejected == 1);
  }
  // The good client's connection and the daemon survived.
  CHECK(d.Alive());
  std::vector<std::string> values;
  std::vector<Status> statuses;
  const Hash128 keys[1] = {key};
  good->MultiGet(keys, &values, &statuses);
  REQUIRE(statuses[0].ok());
  CHECK(values[0] == record);
  DaemonStats stats;
  REQUIRE(QueryDaemonStats(s.socket, 5000, &stats).ok());
  for (const auto& c : stats.clients)
    if (c.name == "good") CHECK(c.connections == 1);
}

TEST_CASE("the daemon's disk budget holds for all writers together") {
  Setup s;
  constexpr uint64_t kBudget = 96 << 10;
  Kvtierd d(s.store, s.socket, {"--max-disk-bytes", std::to_string(kBudget)});
  d.StartServing(s.log);
  const BlockLayout layout = test::SmallLayout();
  std::vector<pid_t> writers;
  for (int w = 0; w < 3; ++w) {
    writers.push_back(Spawn([&, w] {
      std::unique_ptr<Cache> cache;
      if (!OpenShared(s.socket, layout, &cache).ok()) return 1;
      for (int p = 0; p < 150; ++p) {
        const uint64_t seed = 10000 * (w + 1) + p;
        if (!InsertPrompt(cache.get(), test::Tokens(4 * layout.block_size, seed), Payloads(layout, 4, seed)).ok())
          return 2;
      }
      return cache->Close().ok() ? 0 : 3;
    }));
  }
  for (pid_t w : writers) CHECK(Join(w) == 0);
  DaemonStats stats;
  REQUIRE(QueryDaemonStats(s.socket, 5000, &stats).ok());
  INFO("stored " << stats.store_stats.stored_bytes << " records " << stats.store_stats.records);
  CHECK(stats.total.put_records >= 3 * 150 * 4);
  CHECK(stats.store_stats.max_bytes == kBudget);
  CHECK(stats.store_stats.stored_bytes <= kBudget);
  CHECK(stats.store_stats.stored_bytes > kBudget / 2);
  CHECK(stats.store_stats.evicted_records > 0);
  CHECK(stats.store_stats.records < 3 * 150 * 4);
}

TEST_CASE("kvtierd refuses a live daemon's socket, replaces a stale one, and stops cleanly") {
  Setup s;
  Kvtierd first(s.store, s.socket, {"--metrics-file", s.tmp.sub("kvtierd.prom"), "--metrics-interval", "1"});
  first.StartServing(s.log);
  struct stat st;
  REQUIRE(stat(s.socket.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0660);  // the default mode
  CHECK(Slurp(s.store + "/KVTIERD").find("socket " + s.socket) != std::string::npos);

  SECTION("a second daemon on the same socket does not start") {
    Kvtierd second(s.tmp.sub("other-store"), s.socket);
    second.Start(s.tmp.sub("second.log"));
    CHECK(second.WaitExit() == 1);
    CHECK(Slurp(s.tmp.sub("second.log")).find("held by a live daemon") != std::string::npos);
    CHECK(first.Alive());
    CHECK(Listening(s.socket));
  }
  SECTION("a path that is not a socket is never replaced") {
    const std::string file = s.tmp.sub("not-a-socket");
    std::ofstream(file) << "data";
    Kvtierd other(s.tmp.sub("other-store"), file);
    other.Start(s.tmp.sub("other.log"));
    CHECK(other.WaitExit() == 1);
    CHECK(Slurp(s.tmp.sub("other.log")).find("is not a socket") != std::string::npos);
    CHECK(Slurp(file) == "data");
  }
  SECTION("SIGTERM flushes, removes the socket, and the store opens embedded") {
    const BlockLayout layout = test::SmallLayout();
    const auto tokens = test::Tokens(2 * layout.block_size, 9);
    const auto payloads = Payloads(layout, 2, 9);
    {
      std::unique_ptr<Cache> cache;
      REQUIRE(OpenShared(s.socket, layout, &cache).ok());
      REQUIRE(InsertPrompt(cache.get(), tokens, payloads).ok());
      REQUIRE(cache->Close().ok());
    }
    std::string metrics;
    // The file is rewritten every second: wait for one written after the puts.
    for (int i = 0; i < 500 && metrics.find("kvtierd_put_records_total 2\n") == std::string::npos; ++i) {
      std::this_thread::sleep_for(20ms);
      metrics = Slurp(s.tmp.sub("kvtierd.prom"));
    }
    CHECK(metrics.find("kvtierd_up 1\n") != std::string::npos);
    CHECK(metrics.find("kvtierd_put_records_total 2\n") != std::string::npos);
    CHECK(metrics.find("kvtierd_requests_total{op=\"put\"} ") != std::string::npos);
    CHECK(metrics.find("kvtierd_store_records 2\n") != std::string::npos);
    CHECK(first.Stop() == 0);
    CHECK(access(s.socket.c_str(), F_OK) != 0);
    CHECK(access((s.store + "/KVTIERD").c_str(), F_OK) != 0);
    CHECK(access(s.tmp.sub("kvtierd.prom").c_str(), F_OK) != 0);
    CHECK(first.Log().find("store flushed and closed") != std::string::npos);
    CacheOptions o;
    o.ns = test::TestNamespace(layout);
    o.store = s.store;  // the same store, now embedded
    std::unique_ptr<Cache> cache;
    REQUIRE(Cache::Open(o, &cache).ok());
    Lease lease = cache->Lookup(tokens);
    CHECK(lease.blocks_from_disk() == 2);
    CHECK(ServesExactly(lease, payloads));
  }
  SECTION("after a SIGKILL the stale socket is replaced") {
    first.Kill();
    REQUIRE(access(s.socket.c_str(), F_OK) == 0);
    REQUIRE_FALSE(Listening(s.socket));
    Kvtierd again(s.store, s.socket);
    again.StartServing(s.tmp.sub("again.log"));
    CHECK(Slurp(s.tmp.sub("again.log")).find("replaced the stale socket") != std::string::npos);
    DaemonStats stats;
    CHECK(QueryDaemonStats(s.socket, 5000, &stats).ok());
  }
}

TEST_CASE("records larger than a frame's room travel in several frames") {
  Setup s;
  Kvtierd d(s.store, s.socket, {"--max-frame-bytes", "1M"});
  d.StartServing(s.log);
  BlockLayout layout;
  layout.num_layers = 4;
  layout.num_kv_heads = 4;
  layout.head_dim = 64;
  layout.block_size = 16;
  layout.dtype = DType::kF16;  // 64 KiB blocks
  Namespace ns = test::TestNamespace(layout);
  std::mt19937_64 rng(1);
  std::vector<std::string> records(40);
  std::vector<Hash128> keys;
  Hash128 parent = ns.Fingerprint();
  for (size_t i = 0; i < records.size(); ++i) {
    std::vector<std::byte> payload(layout.block_bytes());
    for (auto& b : payload) b = static_cast<std::byte>(rng());  // incompressible: stored raw
    const auto tokens = test::Tokens(layout.block_size, i);
    REQUIRE(EncodeRecord({layout, static_cast<uint32_t>(i), ns.Fingerprint(), parent, tokens}, payload, {},
                         &records[i])
                .ok());
    RecordHeader h;
    REQUIRE(ParseRecordHeader(records[i], &h).ok());
    keys.push_back(parent = h.Key());
  }
  DaemonClientOptions o;
  o.socket_path = s.socket;
  std::unique_ptr<BlockStore> store;
  REQUIRE(DaemonBlockStore::Open(o, &store).ok());
  std::vector<std::string_view> views(records.begin(), records.end());
  REQUIRE(store->Put(views).ok());  // about 2.6 MB: three frames
  std::vector<std::string> values;
  std::vector<Status> statuses;
  std::vector<Hash128> asked = keys;
  asked.push_back(Hash128{1, 2});  // absent
  store->MultiGet(asked, &values, &statuses);
  for (size_t i = 0; i < keys.size(); ++i) {
    INFO("record " << i);
    REQUIRE(statuses[i].ok());
    CHECK(values[i] == records[i]);
  }
  CHECK(statuses.back().IsNotFound());
  DaemonStats stats;
  REQUIRE(QueryDaemonStats(s.socket, 5000, &stats).ok());
  CHECK(stats.total.put_requests >= 3);
  CHECK(stats.total.get_requests >= 3);
  CHECK(stats.total.get_hits == keys.size());

  // A record too big for any frame is refused by the client, naming the limit.
  std::string huge(2u << 20, 'x');
  std::string_view hv = huge;
  Status st = store->Put(std::span<const std::string_view>(&hv, 1));
  CHECK(st.IsInvalidArgument());
  CHECK(st.message().find("frame limit") != std::string::npos);
}

// Runs `kvtier args...` (the CLI built beside kvtierd); stdout and stderr
// go to files in `tmp`.
struct CliRun {
  int code = -1;
  std::string out, err;
};
CliRun Kvtier(const TempDir& tmp, const std::vector<std::string>& args) {
  static int n = 0;
  const std::string out = tmp.sub("cli" + std::to_string(n) + ".out"), err = tmp.sub("cli" + std::to_string(n++) + ".err");
  std::vector<std::string> argv_s = {
      (std::filesystem::path(KvtierdBinary()).parent_path() / ".." / "cli" / "kvtier").lexically_normal().string()};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  const pid_t pid = Spawn([&] {
    const int o = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644), e = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(o, 1);
    dup2(e, 2);
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    return 98;
  });
  CliRun r;
  r.code = Join(pid);
  r.out = Slurp(out);
  r.err = Slurp(err);
  return r;
}

TEST_CASE("the kvtier CLI reads a daemon's counters and writes a store it holds through it") {
  Setup s;
  Kvtierd d(s.store, s.socket);
  d.StartServing(s.log);
  const BlockLayout layout = test::SmallLayout();
  {
    setenv("KVTIER_CLIENT_NAME", "gpu0", 1);
    std::unique_ptr<Cache> cache;
    REQUIRE(OpenShared(s.socket, layout, &cache).ok());
    unsetenv("KVTIER_CLIENT_NAME");
    REQUIRE(InsertPrompt(cache.get(), test::Tokens(3 * layout.block_size, 4), Payloads(layout, 3, 4)).ok());
    REQUIRE(cache->Close().ok());
  }
  CliRun json = Kvtier(s.tmp, {"stats", "--socket", s.socket, "--json"});
  INFO(json.err);
  REQUIRE(json.code == 0);
  CHECK(json.out.find("\"put_records\": 3") != std::string::npos);
  CHECK(json.out.find("\"name\": \"gpu0\"") != std::string::npos);
  CliRun text = Kvtier(s.tmp, {"stats", "--socket", s.socket});
  REQUIRE(text.code == 0);
  CHECK(text.out.find("3 records") != std::string::npos);
  CHECK(text.out.find("gpu0") != std::string::npos);
  CliRun prom = Kvtier(s.tmp, {"stats", "--socket", s.socket, "--prometheus"});
  REQUIRE(prom.code == 0);
  CHECK(prom.out.find("kvtierd_up 1\n") != std::string::npos);
  CHECK(prom.out.find("kvtierd_client_put_records_total{client=\"gpu0\"} 3\n") != std::string::npos);

  // Read commands open the directory read-only; a write command goes
  // through the daemon that holds it.
  CliRun ls = Kvtier(s.tmp, {"ls", s.store, "--json"});
  REQUIRE(ls.code == 0);
  CHECK(ls.out.find("\"total\": 3") != std::string::npos);
  CliRun trim = Kvtier(s.tmp, {"trim", s.store, "--max-bytes", "0"});
  INFO(trim.out << trim.err);
  CHECK(trim.code == 0);
  CHECK(trim.err.find("held by kvtierd") != std::string::npos);
  CHECK(trim.err.find("runs through its socket " + s.socket) != std::string::npos);
  DaemonStats stats;
  REQUIRE(QueryDaemonStats(s.socket, 5000, &stats).ok());
  CHECK(stats.store_stats.records == 0);

  CliRun down = Kvtier(s.tmp, {"stats", "--socket", s.tmp.sub("nothing.sock")});
  CHECK(down.code == 2);
  CHECK(down.err.rfind("kvtier: cannot read kvtierd's counters: ", 0) == 0);
}

TEST_CASE("a daemon store that is not reachable fails fast at open, naming the socket") {
  TempDir tmp;
  const std::string socket = tmp.sub("nobody-home.sock");
  std::unique_ptr<BlockStore> store;
  Status s = OpenBlockStore("unix:" + socket, StoreOptions(), &store);
  CHECK(s.IsUnavailable());
  CHECK(s.message().find(socket) != std::string::npos);
  CacheOptions o;
  o.ns = test::TestNamespace(test::SmallLayout());
  o.store = "unix:" + socket;
  std::unique_ptr<Cache> cache;
  CHECK(Cache::Open(o, &cache).IsUnavailable());
}

}  // namespace
}  // namespace kvtier
