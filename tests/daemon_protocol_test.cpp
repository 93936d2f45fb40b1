// In-process tests of kvtierd's pieces that need no daemon process: frame
// and body encodings, the latency histogram, the Prometheus text, and the
// Daemon class run inside the test process (start, serve, shut down).
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <set>
#include <sstream>
#include <cstring>
#include <mutex>
#include <thread>
#include <atomic>

#include "kvtier/cache.h"

#include "client/daemon_block_store.h"
#include "daemon/daemon_metrics.h"
#include "daemon/protocol.h"
#include "kvtier/daemon.h"
#include "kvtier/record.h"
#include "test_util.h"

namespace kvtier {
namespace {

using namespace daemon;

TEST_CASE("a frame header round-trips and a wrong magic is named") {
  FrameHeader h;
  h.op = static_cast<uint8_t>(Op::kPut);
  h.status = 3;
  h.flags = kFlagMore;
  h.request_id = 0xA1B2C3D4;
  h.body_bytes = 123456;
  uint8_t bytes[kFrameHeaderBytes];
  EncodeFrameHeader(h, bytes);
  CHECK(std::string(reinterpret_cast<char*>(bytes), 4) == "KVTD");
  FrameHeader back;
  REQUIRE(DecodeFrameHeader(bytes, &back).ok());
  CHECK(back.op == h.op);
  CHECK(back.status == h.status);
  CHECK(back.flags == h.flags);
  CHECK(back.request_id == h.request_id);
  CHECK(back.body_bytes == h.body_bytes);
  bytes[0] = 'X';
  Status s = DecodeFrameHeader(bytes, &back);
  CHECK(s.IsCorruption());
  CHECK(s.message().find("magic") != std::string::npos);
}

TEST_CASE("a wire reader never reads past its input") {
  std::string body;
  WireWriter w(&body);
  w.U32(7);
  w.String("abc");
  WireReader r(body);
  CHECK(r.U32() == 7);
  CHECK(r.String() == "abc");
  CHECK(r.done());
  CHECK(r.U64() == 0);  // past the end: zero, and the reader is spoiled
  CHECK_FALSE(r.ok());

  std::string lying;
  WireWriter(&lying).U32(1000);  // a string length with no bytes behind it
  WireReader r2(lying);
  CHECK(r2.String().empty());
  CHECK_FALSE(r2.ok());
}

TEST_CASE("hello, welcome, namespaces, metadata and stats round-trip") {
  Hello hello;
  hello.min_version = 1;
  hello.max_version = 3;
  hello.pid = 42;
  hello.name = "gpu0";
  Hello hello_back;
  REQUIRE(DecodeHello(EncodeHello(hello), &hello_back));
  CHECK(hello_back.max_version == 3);
  CHECK(hello_back.name == "gpu0");
  CHECK_FALSE(DecodeHello(EncodeHello(hello) + "x", &hello_back));  // trailing bytes

  Namespace ns = test::TestNamespace(test::SmallLayout(DType::kBF16, 8), "m/x");
  ns.salt = "tenant-a";
  ns.tp_rank = 1;
  ns.tp_size = 2;
  NamespaceEntry entry{ns.Fingerprint(), ns, 5, 600, 300, 123};
  std::string body;
  WireWriter w(&body);
  EncodeNamespaceEntry(entry, &w);
  WireReader r(body);
  NamespaceEntry back;
  REQUIRE(DecodeNamespaceEntry(&r, &back));
  CHECK(r.done());
  CHECK(back.ns.Fingerprint() == ns.Fingerprint());
  CHECK(back.stored_bytes == 300);

  DaemonStats stats;
  stats.pid = 77;
  stats.store = "rocksdb:/x";
  stats.store_stats.records = 9;
  stats.total.get_hits = 11;
  stats.total.put_latency.p99_seconds = 0.25;
  DaemonClientStats client;
  client.name = "c1";
  client.counters.put_records = 4;
  stats.clients = {client, client};
  body.clear();
  EncodeDaemonStats(stats, &w);
  WireReader rs(body);
  DaemonStats stats_back;
  REQUIRE(DecodeDaemonStats(&rs, &stats_back));
  CHECK(rs.done());
  CHECK(stats_back.pid == 77);
  CHECK(stats_back.store == "rocksdb:/x");
  CHECK(stats_back.store_stats.records == 9);
  CHECK(stats_back.total.get_hits == 11);
  CHECK(stats_back.total.put_latency.p99_seconds == 0.25);
  REQUIRE(stats_back.clients.size() == 2);
  CHECK(stats_back.clients[1].counters.put_records == 4);
}

TEST_CASE("latency quantiles are within a bucket of the true value") {
  const uint64_t seed = GENERATE(1, 2, 3);
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<double> dist(5.0, 1.5);  // microseconds
  LatencyHistogram h;
  std::vector<uint64_t> values;
  for (int i = 0; i < 20000; ++i) {
    values.push_back(static_cast<uint64_t>(dist(rng)) + 1);
    h.Record(values.back());
  }
  std::sort(values.begin(), values.end());
  const LatencySummary s = h.Summary();
  CHECK(s.count == values.size());
  const std::pair<double, double> qs[] = {{0.5, s.p50_seconds}, {0.9, s.p90_seconds}, {0.99, s.p99_seconds}};
  for (const auto& [q, got] : qs) {
    const double truth = static_cast<double>(values[static_cast<size_t>(std::ceil(q * values.size())) - 1]) * 1e-6;
    INFO("quantile " << q << " true " << truth << " reported " << got);
    CHECK(got >= truth);
    CHECK(got <= truth * 1.25 + 1e-6);
  }
}

TEST_CASE("the Prometheus text has one HELP and TYPE per family and escaped labels") {
  DaemonStats s;
  s.total.get_requests = 3;
  s.total.get_latency.count = 3;
  s.total.get_latency.p50_seconds = 0.001;
  s.store_stats.records = 12;
  DaemonClientStats c;
  c.name = "we\"ird\\name";
  c.connections = 2;
  c.counters.put_records = 5;
  s.clients.push_back(c);
  const std::string text = FormatPrometheus(s);
  CHECK(text.find("kvtierd_requests_total{op=\"get\"} 3\n") != std::string::npos);
  CHECK(text.find("kvtierd_request_duration_seconds{op=\"get\",quantile=\"0.5\"} 0.001") != std::string::npos);
  CHECK(text.find("kvtierd_request_duration_seconds{op=\"put\",quantile=\"0.5\"} NaN") != std::string::npos);
  CHECK(text.find("kvtierd_store_records 12\n") != std::string::npos);
  CHECK(text.find("kvtierd_client_put_records_total{client=\"we\\\"ird\\\\name\"} 5\n") != std::string::npos);
  CHECK(text.find("kvtierd_client_connections{client=\"we\\\"ird\\\\name\"} 2\n") != std::string::npos);
  // Every sample's family was declared once, before its samples.
  std::istringstream in(text);
  std::string line;
  std::set<std::string> declared;
  while (std::getline(in, line)) {
    if (line.rfind("# TYPE ", 0) == 0) {
      const std::string name = line.substr(7, line.find(' ', 7) - 7);
      CHECK(declared.insert(name).second);
      continue;
    }
    if (line.empty() || line[0] == '#') continue;
    std::string name = line.substr(0, line.find_first_of("{ "));
    for (const char* suffix : {"_sum", "_count"})
      if (!declared.count(name) && name.size() > std::strlen(suffix) && name.ends_with(suffix))
        name = name.substr(0, name.size() - std::strlen(suffix));
    INFO(line);
    CHECK(declared.count(name) == 1);
  }
}

TEST_CASE("a Daemon in this process serves a client and shuts down idempotently") {
  test::TempDir tmp;
  DaemonOptions o;
  o.store_dir = tmp.sub("store");
  o.socket_path = tmp.sub("d.sock");
  std::vector<std::string> log;
  std::mutex log_mu;
  o.log = [&](std::string_view m) {
    std::lock_guard<std::mutex> lock(log_mu);
    log.emplace_back(m);
  };
  std::unique_ptr<Daemon> daemon;
  REQUIRE(Daemon::Start(o, &daemon).ok());

  SECTION("bad options are refused, naming the option") {
    DaemonOptions bad = o;
    bad.socket_path = tmp.sub("other.sock");
    bad.max_frame_bytes = 1000;
    std::unique_ptr<Daemon> other;
    Status s = Daemon::Start(bad, &other);
    CHECK(s.IsInvalidArgument());
    CHECK(s.message().find("frame limit") != std::string::npos);
    bad = o;
    s = Daemon::Start(bad, &other);  // the same socket, served by `daemon`
    CHECK(s.IsBusy());
    CHECK(s.message().find("held by a live daemon") != std::string::npos);
  }
  SECTION("a namespace, a record, its metadata and a trim through the daemon") {
    std::unique_ptr<BlockStore> store;
    StoreOptions so;
    REQUIRE(OpenBlockStore("unix:" + o.socket_path, so, &store).ok());
    const BlockLayout layout = test::SmallLayout();
    const Namespace ns = test::TestNamespace(layout);
    REQUIRE(store->RegisterNamespace(ns).ok());
    Namespace other_layout = ns;
    other_layout.layout.head_dim = 16;
    Status conflict = store->RegisterNamespace(other_layout);
    CHECK(conflict.IsInvalidArgument());
    CHECK(conflict.message().find("does not match store") != std::string::npos);
    std::vector<NamespaceEntry> entries;
    REQUIRE(store->ListNamespaces(&entries).ok());
    REQUIRE(entries.size() == 1);
    CHECK(entries[0].ns.model == ns.model);

    std::string record;
    const auto tokens = test::Tokens(layout.block_size, 1);
    REQUIRE(EncodeRecord({layout, 0, ns.Fingerprint(), ns.Fingerprint(), tokens},
                         test::Payload(layout, 1), {}, &record)
                .ok());
    std::string_view view = record;
    REQUIRE(store->Put(std::span<const std::string_view>(&view, 1)).ok());
    RecordHeader h;
    REQUIRE(ParseRecordHeader(record, &h).ok());
    RecordMeta meta;
    REQUIRE(store->GetMeta(h.Key(), &meta).ok());
    CHECK(meta.stored_bytes == record.size());
    CHECK(store->GetMeta(Hash128{5, 5}, &meta).IsNotFound());
    size_t seen = 0;
    REQUIRE(store->ForEachRecord([&](const RecordMeta& m) {
      seen += m.key == h.Key() ? 1 : 0;
      return true;
    }).ok());
    CHECK(seen == 1);
    std::vector<uint8_t> present;
    const Hash128 keys[2] = {h.Key(), Hash128{5, 5}};
    REQUIRE(store->Exists(keys, &present).ok());
    CHECK(present == std::vector<uint8_t>{1, 0});
    TrimResult trim;
    REQUIRE(store->TrimToBytes(0, &trim).ok());
    CHECK(trim.records_deleted == 1);
    StoreStats st;
    REQUIRE(store->GetStats(&st).ok());
    CHECK(st.records == 0);
    CHECK(store->Describe() == "kvtierd:" + o.socket_path);

    StoreOptions read_only;
    read_only.read_only = true;
    std::unique_ptr<BlockStore> reader;
    REQUIRE(OpenBlockStore("unix:" + o.socket_path, read_only, &reader).ok());
    CHECK(reader->Put(std::span<const std::string_view>(&view, 1)).IsNotSupported());
  }
  CHECK(daemon->Shutdown().ok());
  CHECK(daemon->Shutdown().ok());  // idempotent
  CHECK(access(o.socket_path.c_str(), F_OK) != 0);
  // A client of a stopped daemon fails fast.
  std::unique_ptr<BlockStore> store;
  CHECK(OpenBlockStore("unix:" + o.socket_path, StoreOptions(), &store).IsUnavailable());
}

TEST_CASE("caches on threads share a daemon in this process while it serves, stops and restarts") {
  test::TempDir tmp;
  DaemonOptions o;
  o.store_dir = tmp.sub("store");
  o.socket_path = tmp.sub("d.sock");
  o.log = [](std::string_view) {};
  std::unique_ptr<Daemon> daemon;
  REQUIRE(Daemon::Start(o, &daemon).ok());
  const BlockLayout layout = test::SmallLayout();
  CacheOptions co;
  co.ns = test::TestNamespace(layout);
  co.store = "unix:" + o.socket_path;
  co.spill_threads = 2;
  co.log = [](std::string_view) {};
  std::unique_ptr<Cache> writer, reader;
  REQUIRE(Cache::Open(co, &writer).ok());
  REQUIRE(Cache::Open(co, &reader).ok());
  constexpr int kThreads = 4, kPrompts = 40;
  auto prompt = [&](int t, int p) { return test::Tokens(2 * layout.block_size, 100 * t + p); };
  auto payload = [&](int t, int p, int b) { return test::Payload(layout, 10000 * t + 10 * p + b); };
  auto insert_all = [&](Cache* cache, int round) {
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int p = 0; p < kPrompts; ++p) {
          const auto a = payload(t, p, 0), b = payload(t, p, 1);
          const std::span<const std::byte> blocks[2] = {a, b};
          if (!cache->InsertBlocks(prompt(t + 10 * round, p), 0, blocks).ok()) ++failures;
        }
      });
    }
    for (auto& th : threads) th.join();
    return failures.load();
  };
  REQUIRE(insert_all(writer.get(), 0) == 0);
  REQUIRE(writer->Flush().ok());

  // Readers on several threads promote what the writer wrote.
  std::vector<std::thread> threads;
  std::atomic<int> misses{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int p = 0; p < kPrompts; ++p) {
        Lease lease = reader->Lookup(prompt(t, p));
        const auto a = payload(t, p, 0);
        if (lease.num_blocks() != 2 || std::memcmp(lease.block(0).data(), a.data(), a.size()) != 0) ++misses;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(misses == 0);
  CHECK(reader->Stats().disk_hits == 2 * kThreads * kPrompts);

  // Stop the daemon under writers: they keep serving from memory.
  Status stopped;
  std::thread stopper([&] { stopped = daemon->Shutdown(); });  // Catch2 macros stay on this thread
  CHECK(insert_all(writer.get(), 1) == 0);
  stopper.join();
  CHECK(stopped.ok());
  CHECK_FALSE(writer->Flush().ok());  // nothing can reach the store now
  CHECK(writer->Stats().store_errors > 0);
  CHECK(writer->Lookup(prompt(10, 3)).num_blocks() == 2);  // memory still serves

  // A new daemon on the same store and socket: the writer reconnects.
  daemon.reset();
  REQUIRE(Daemon::Start(o, &daemon).ok());
  bool flushed = false;
  for (int i = 0; i < 200 && !flushed; ++i) {  // past the client's reconnect backoff
    flushed = writer->Flush().ok();
    if (!flushed) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(flushed);
  std::unique_ptr<Cache> fresh;
  REQUIRE(Cache::Open(co, &fresh).ok());
  CHECK(fresh->Lookup(prompt(10 + kThreads - 1, kPrompts - 1)).blocks_from_disk() == 2);
}

}  // namespace
}  // namespace kvtier
