// Tests of the RocksDB block store (src/store/): reads and writes, the
// budget and its LRU eviction, counters across restarts, open errors, the
// cross-process lock, maintenance calls. Everything runs against real
// RocksDB directories in temp folders; lock tests use real child processes.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <rocksdb/db.h>

#include "kvtier/record.h"
#include "kvtier/store.h"
#include "store/store_format.h"
#include "store_test_util.h"
#include "test_util.h"

using namespace kvtier;
using Chain = test::RecordChain;
using test::MakeChain;
using test::OpenStore;
using test::RawCodec;
using test::Stats;

namespace {

Namespace SmallNs(const std::string& model = "test-model") {
  return test::TestNamespace(test::SmallLayout(), model);
}

// 64 KiB blocks: records larger than a page, as real ones are.
Namespace BlobNs() { return test::LargeBlockNamespace("blob-model"); }

std::vector<uint8_t> Present(BlockStore& store, const std::vector<Hash128>& keys) {
  std::vector<uint8_t> present;
  REQUIRE(store.Exists(keys, &present).ok());
  return present;
}

bool Has(BlockStore& store, const Hash128& key) { return Present(store, {key})[0] == 1; }

RecordMeta Meta(BlockStore& store, const Hash128& key) {
  RecordMeta meta;
  REQUIRE(store.GetMeta(key, &meta).ok());
  return meta;
}

std::map<Hash128, NamespaceEntry> Namespaces(BlockStore& store) {
  std::vector<NamespaceEntry> list;
  REQUIRE(store.ListNamespaces(&list).ok());
  std::map<Hash128, NamespaceEntry> out;
  for (auto& e : list) out[e.fingerprint] = e;
  return out;
}

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Edits the `sys` family of a closed store with plain RocksDB.
void EditSys(const std::string& dir,
             const std::function<rocksdb::Status(rocksdb::DB*, rocksdb::ColumnFamilyHandle*)>& edit) {
  test::RawDb raw(dir);
  REQUIRE(edit(raw.db(), raw.family(store_format::kSysFamily)).ok());
}

// ---- child processes -------------------------------------------------------
// The lock is per process, so lock tests run this binary again as a child
// with the hidden test case below and these environment variables.
constexpr char kChildAction[] = "KVTIER_STORE_CHILD_ACTION";  // "open" or "hold"
constexpr char kChildDir[] = "KVTIER_STORE_CHILD_DIR";
constexpr char kChildOut[] = "KVTIER_STORE_CHILD_OUT";  // result / ready file
constexpr char kChildTest[] = "store child process (run by the lock tests)";

pid_t SpawnChild(const std::string& action, const std::string& dir, const std::string& out) {
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
  env_strings.push_back(std::string(kChildAction) + "=" + action);
  env_strings.push_back(std::string(kChildDir) + "=" + dir);
  env_strings.push_back(std::string(kChildOut) + "=" + out);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string exe = "/proc/self/exe", name = kChildTest, log = out + ".log";
  char* argv[] = {exe.data(), name.data(), nullptr};
  const pid_t parent = getpid();
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test
    if (getppid() != parent) _exit(99);
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execve(exe.c_str(), argv, envp.data());
    _exit(98);
  }
  return pid;
}

// Waits (generously) for `path` to appear while the child is alive.
bool WaitForFile(const std::string& path, pid_t child) {
  for (int i = 0; i < 6000; ++i) {
    if (access(path.c_str(), F_OK) == 0) return true;
    int status;
    if (waitpid(child, &status, WNOHANG) == child) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

int WaitChild(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST_CASE(kChildTest, "[.]") {
  const char* action = std::getenv(kChildAction);
  if (action == nullptr) return;  // run by hand: nothing to do
  const std::string dir = std::getenv(kChildDir), out = std::getenv(kChildOut);
  std::unique_ptr<BlockStore> store;
  Status s = OpenBlockStore(dir, StoreOptions(), &store);
  if (std::string(action) == "open") {
    std::ofstream(out) << static_cast<int>(s.code()) << "\n" << s.message() << "\n";
    return;
  }
  REQUIRE(s.ok());  // "hold": write a chain, report ready, wait to be killed
  Chain chain = MakeChain(SmallNs(), 7, 3);
  REQUIRE(store->Put(chain.views()).ok());
  std::ofstream(out) << "ready\n";
  for (int i = 0; i < 1200; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
}

TEST_CASE("records put into the store read back byte for byte, before and after reopen") {
  test::TempDir dir;
  const Namespace ns = GENERATE(SmallNs(), BlobNs());
  Chain chain = MakeChain(ns, 1, 4);
  {
    auto store = OpenStore(dir.str());
    REQUIRE(store->Put(chain.views()).ok());
    std::vector<std::string> values;
    std::vector<Status> statuses;
    store->MultiGet(chain.keys, &values, &statuses);
    for (size_t i = 0; i < chain.keys.size(); ++i) {
      REQUIRE(statuses[i].ok());
      CHECK(values[i] == chain.records[i]);
    }
    CHECK(store->Describe() == "rocksdb:" + dir.str());
  }
  auto store = OpenStore(dir.str());
  std::vector<std::string> values;
  std::vector<Status> statuses;
  store->MultiGet(chain.keys, &values, &statuses);
  for (size_t i = 0; i < chain.keys.size(); ++i) {
    REQUIRE(statuses[i].ok());
    CHECK(values[i] == chain.records[i]);
  }
}

TEST_CASE("MultiGet returns NotFound for absent keys beside the present ones") {
  test::TempDir dir;
  auto store = OpenStore(dir.str());
  Chain stored = MakeChain(SmallNs(), 1, 2);
  Chain absent = MakeChain(SmallNs(), 2, 1);
  REQUIRE(store->Put(stored.views()).ok());
  std::vector<Hash128> keys = {stored.keys[0], absent.keys[0], stored.keys[1], stored.keys[0]};
  std::vector<std::string> values = {"stale", "stale"};
  std::vector<Status> statuses;
  store->MultiGet(keys, &values, &statuses);
  REQUIRE(values.size() == 4);
  REQUIRE(statuses.size() == 4);
  CHECK(statuses[3].ok());
  CHECK(values[3] == stored.records[0]);
  CHECK(statuses[0].ok());
  CHECK(values[0] == stored.records[0]);
  CHECK(statuses[1].IsNotFound());
  CHECK_THAT(statuses[1].message(), Catch::Contains(absent.keys[0].ToHex()));
  CHECK(values[1].empty());
  CHECK(statuses[2].ok());
  CHECK(values[2] == stored.records[1]);
}

TEST_CASE("Exists reports exactly the stored keys") {
  test::TempDir dir;
  auto store = OpenStore(dir.str());
  Chain chain = MakeChain(SmallNs(), 1, 3);
  REQUIRE(store->Put(chain.views(0, 2)).ok());
  CHECK(Present(*store, chain.keys) == std::vector<uint8_t>{1, 1, 0});
  CHECK(Present(*store, {}).empty());
}

TEST_CASE("Put rejects a corrupt record and writes nothing of its batch") {
  test::TempDir dir;
  auto store = OpenStore(dir.str());
  Chain chain = MakeChain(SmallNs(), 1, 2);
  std::string bad = chain.records[1];
  bad[kRecordFixedHeaderBytes] ^= 0x01;  // a token id: the header checksum fails
  std::vector<std::string_view> batch = {chain.records[0], bad};
  Status s = store->Put(batch);
  REQUIRE(s.IsCorruption());
  CHECK_THAT(s.message(), Catch::Contains("record 1 of 2") && Catch::Contains("nothing written"));
  CHECK(Present(*store, chain.keys) == std::vector<uint8_t>{0, 0});
  CHECK(Stats(*store).records == 0);
  CHECK(Namespaces(*store).empty());

  std::string truncated = chain.records[0].substr(0, 50);
  std::vector<std::string_view> one = {truncated};
  CHECK(store->Put(one).IsCorruption());
  CHECK(Stats(*store).records == 0);
}

TEST_CASE("counters and recency survive a reopen exactly") {
  test::TempDir dir;
  Chain a = MakeChain(SmallNs("model-a"), 1, 3);
  Chain b = MakeChain(BlobNs(), 2, 2);
  StoreStats before;
  std::map<Hash128, NamespaceEntry> ns_before;
  uint64_t last_seq = 0;
  {
    auto store = OpenStore(dir.str());
    REQUIRE(store->Put(a.views()).ok());
    REQUIRE(store->Put(b.views()).ok());
    before = Stats(*store);
    ns_before = Namespaces(*store);
    last_seq = Meta(*store, b.keys[1]).access_seq;
  }
  uint64_t raw = 0, stored = 0;
  for (const Chain* c : {&a, &b}) {
    for (const auto& r : c->records) {
      RecordHeader h;
      REQUIRE(ParseRecordHeader(r, &h).ok());
      raw += h.raw_size;
      stored += r.size();
    }
  }
  CHECK(before.records == 5);
  CHECK(before.raw_bytes == raw);
  CHECK(before.stored_bytes == stored);

  auto store = OpenStore(dir.str());
  StoreStats after = Stats(*store);
  CHECK(after.records == before.records);
  CHECK(after.raw_bytes == before.raw_bytes);
  CHECK(after.stored_bytes == before.stored_bytes);
  CHECK(after.format_version == kStoreFormatVersion);
  auto ns_after = Namespaces(*store);
  REQUIRE(ns_after.size() == 2);
  for (const Chain* c : {&a, &b}) {
    const NamespaceEntry& e = ns_after.at(c->ns.Fingerprint());
    CHECK(e.blocks == c->records.size());
    CHECK(e.raw_bytes == ns_before.at(c->ns.Fingerprint()).raw_bytes);
    CHECK(e.stored_bytes == ns_before.at(c->ns.Fingerprint()).stored_bytes);
    CHECK(e.last_use_us == ns_before.at(c->ns.Fingerprint()).last_use_us);
  }
  CHECK(Meta(*store, b.keys[1]).access_seq == last_seq);
  CHECK(after.oldest_access_us == Meta(*store, a.keys[2]).last_access_us);  // deepest of the first Put
  CHECK(after.newest_access_us == Meta(*store, b.keys[0]).last_access_us);
  CHECK(after.oldest_access_us <= after.newest_access_us);
  Chain c = MakeChain(SmallNs("model-a"), 3, 1);
  REQUIRE(store->Put(c.views()).ok());
  CHECK(Meta(*store, c.keys[0]).access_seq > last_seq);
  REQUIRE(store->Touch(std::vector<Hash128>{a.keys[0]}).ok());
  CHECK(Meta(*store, a.keys[0]).access_seq > Meta(*store, c.keys[0]).access_seq);
}

TEST_CASE("writing past max_bytes evicts the least recently used records") {
  test::TempDir dir;
  std::vector<Chain> singles;
  for (uint64_t i = 0; i < 6; ++i) singles.push_back(MakeChain(SmallNs(), 100 + i, 1, RawCodec()));
  const uint64_t record_bytes = singles[0].records[0].size();
  StoreOptions options;
  options.max_bytes = 5 * record_bytes;
  auto store = OpenStore(dir.str(), options);
  for (size_t i = 0; i < 5; ++i) REQUIRE(store->Put(singles[i].views()).ok());
  CHECK(Stats(*store).records == 5);
  REQUIRE(store->Touch(std::vector<Hash128>{singles[0].keys[0]}).ok());  // 0 is now the newest

  REQUIRE(store->Put(singles[5].views()).ok());
  StoreStats stats = Stats(*store);
  CHECK(stats.stored_bytes <= options.max_bytes);
  CHECK(stats.records == 5);
  CHECK(stats.evicted_records == 1);
  CHECK(stats.orphans_collected == 0);
  CHECK(Has(*store, singles[0].keys[0]));   // touched: survives
  CHECK(!Has(*store, singles[1].keys[0]));  // least recently used: evicted
  for (size_t i = 2; i < 6; ++i) CHECK(Has(*store, singles[i].keys[0]));
}

TEST_CASE("the budget holds after every Put of a long random workload") {
  const uint64_t seed = std::random_device{}();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  test::TempDir dir;
  StoreOptions options;
  options.max_bytes = 20000;
  auto store = OpenStore(dir.str(), options);
  for (int i = 0; i < 60; ++i) {
    Chain chain = MakeChain(SmallNs(), rng(), 1 + rng() % 5);
    REQUIRE(store->Put(chain.views()).ok());
    CHECK(Stats(*store).stored_bytes <= options.max_bytes);
  }
  CHECK(Stats(*store).evicted_records > 0);
}

TEST_CASE("eviction matches an exact LRU model over a long random run with reopens") {
  const uint64_t seed = std::random_device{}();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  constexpr size_t kCapacity = 12;
  std::vector<Chain> pool;  // single-block chains of one fixed record size
  for (uint64_t i = 0; i < 40; ++i) pool.push_back(MakeChain(SmallNs(), 500 + i, 1, RawCodec()));
  test::TempDir dir;
  StoreOptions options;
  options.max_bytes = kCapacity * pool[0].records[0].size();
  auto store = OpenStore(dir.str(), options);
  std::vector<Hash128> model;  // least recently used first
  auto use = [&](const Hash128& key) {
    model.erase(std::remove(model.begin(), model.end(), key), model.end());
    model.push_back(key);
  };
  for (int step = 0; step < 400; ++step) {
    const Chain& c = pool[rng() % pool.size()];
    const int op = static_cast<int>(rng() % 10);
    if (op < 6) {
      REQUIRE(store->Put(c.views()).ok());
      use(c.keys[0]);
    } else if (op < 9) {
      REQUIRE(store->Touch(c.keys).ok());
      if (std::find(model.begin(), model.end(), c.keys[0]) != model.end()) use(c.keys[0]);
    } else {
      store.reset();
      store = OpenStore(dir.str(), options);
    }
    while (model.size() > kCapacity) model.erase(model.begin());
    std::set<Hash128> stored;
    REQUIRE(store->ForEachRecord([&](const RecordMeta& m) {
      stored.insert(m.key);
      return true;
    }).ok());
    INFO("step " << step << " op " << op);
    REQUIRE(stored == std::set<Hash128>(model.begin(), model.end()));
  }
}

TEST_CASE("among records used by the same call, the deepest is evicted first") {
  test::TempDir dir;
  Chain chain = MakeChain(SmallNs(), 1, 3, RawCodec());
  Chain other = MakeChain(SmallNs(), 2, 1, RawCodec());
  StoreOptions options;
  options.max_bytes = 3 * chain.records[0].size();
  auto store = OpenStore(dir.str(), options);
  REQUIRE(store->Put(chain.views()).ok());  // one call: one access_seq
  REQUIRE(store->Put(other.views()).ok());
  CHECK(Present(*store, chain.keys) == std::vector<uint8_t>{1, 1, 0});
  CHECK(Has(*store, other.keys[0]));
  CHECK(Stats(*store).evicted_records == 1);
}

TEST_CASE("evicting a parent collects its descendants and counts them as orphans") {
  test::TempDir dir;
  Chain chain = MakeChain(SmallNs(), 1, 3, RawCodec());
  Chain other = MakeChain(SmallNs(), 2, 1, RawCodec());
  StoreOptions options;
  options.max_bytes = 3 * chain.records[0].size();
  auto store = OpenStore(dir.str(), options);
  REQUIRE(store->Put(chain.views(0, 1)).ok());  // the head is the oldest
  REQUIRE(store->Put(chain.views(1, 3)).ok());
  REQUIRE(store->Put(other.views()).ok());
  CHECK(Present(*store, chain.keys) == std::vector<uint8_t>{0, 0, 0});
  CHECK(Has(*store, other.keys[0]));
  StoreStats stats = Stats(*store);
  CHECK(stats.evicted_records == 3);
  CHECK(stats.orphans_collected == 2);
  CHECK(stats.records == 1);
  CHECK(stats.stored_bytes == other.records[0].size());
  CHECK(Namespaces(*store).at(chain.ns.Fingerprint()).blocks == 1);
}

TEST_CASE("re-putting a stored record refreshes it without counting it twice") {
  test::TempDir dir;
  auto store = OpenStore(dir.str());
  Chain chain = MakeChain(SmallNs(), 1, 2);
  REQUIRE(store->Put(chain.views()).ok());
  const StoreStats first = Stats(*store);
  const uint64_t seq = Meta(*store, chain.keys[0]).access_seq;
  std::vector<std::string_view> twice = {chain.records[0], chain.records[0], chain.records[1]};
  REQUIRE(store->Put(twice).ok());
  const StoreStats second = Stats(*store);
  CHECK(second.records == 2);
  CHECK(second.raw_bytes == first.raw_bytes);
  CHECK(second.stored_bytes == first.stored_bytes);
  CHECK(Namespaces(*store).at(chain.ns.Fingerprint()).blocks == 2);
  CHECK(Meta(*store, chain.keys[0]).access_seq > seq);
}

TEST_CASE("a record larger than the whole budget is refused with Full") {
  test::TempDir dir;
  StoreOptions options;
  options.max_bytes = 100;
  auto store = OpenStore(dir.str(), options);
  Chain chain = MakeChain(SmallNs(), 1, 1);
  Status s = store->Put(chain.views());
  REQUIRE(s.IsFull());
  CHECK_THAT(s.message(), Catch::Contains("budget") && Catch::Contains("max_bytes 100"));
  CHECK(Stats(*store).records == 0);
}

TEST_CASE("Delete removes only the given records and ignores absent keys") {
  test::TempDir dir;
  auto store = OpenStore(dir.str());
  Chain chain = MakeChain(SmallNs(), 1, 3);
  Chain absent = MakeChain(SmallNs(), 2, 1);
  REQUIRE(store->Put(chain.views()).ok());
  REQUIRE(store->Delete(std::vector<Hash128>{chain.keys[1], absent.keys[0]}).ok());
  CHECK(Present(*store, chain.keys) == std::vector<uint8_t>{1, 0, 1});
  StoreStats stats = Stats(*store);
  CHECK(stats.records == 2);
  CHECK(stats.stored_bytes == chain.records[0].size() + chain.records[2].size());
  CHECK(Namespaces(*store).at(chain.ns.Fingerprint()).blocks == 2);
  RecordMeta meta;
  CHECK(store->GetMeta(chain.keys[1], &meta).IsNotFound());
}

TEST_CASE("a second writer in another process gets Busy naming the lock") {
  test::TempDir dir;
  const std::string store_dir = dir.sub("store");
  auto store = OpenStore(store_dir);
  const std::string out = dir.sub("child-result");
  pid_t child = SpawnChild("open", store_dir, out);
  REQUIRE(WaitChild(child) == 0);
  std::ifstream in(out);
  int code = -1;
  std::string line, message;
  in >> code;
  std::getline(in, line);
  std::getline(in, message);
  CHECK(code == static_cast<int>(Status::Code::kBusy));
  CHECK_THAT(message, Catch::Contains("held by another process") && Catch::Contains("LOCK") &&
                          Catch::Contains(store_dir) && Catch::Contains("kvtierd"));
}

TEST_CASE("a read-only open works while another process holds the store") {
  test::TempDir dir;
  const std::string store_dir = dir.sub("store");
  const std::string ready = dir.sub("ready");
  pid_t child = SpawnChild("hold", store_dir, ready);
  const bool started = WaitForFile(ready, child);
  if (!started) kill(child, SIGKILL);
  REQUIRE(started);

  std::unique_ptr<BlockStore> writer;
  Status busy = OpenBlockStore(store_dir, StoreOptions(), &writer);
  CHECK(busy.IsBusy());

  StoreOptions ro;
  ro.read_only = true;
  {
    auto store = OpenStore(store_dir, ro);
    Chain chain = MakeChain(SmallNs(), 7, 3);  // what the child wrote
    std::vector<std::string> values;
    std::vector<Status> statuses;
    store->MultiGet(chain.keys, &values, &statuses);
    for (size_t i = 0; i < 3; ++i) {
      REQUIRE(statuses[i].ok());
      CHECK(values[i] == chain.records[i]);
    }
    CHECK(Stats(*store).records == 3);
    CHECK(Stats(*store).read_only);
    Status s = store->Put(chain.views());
    CHECK(s.IsNotSupported());
    CHECK(s.message() == "store opened read-only");
    CHECK(store->Delete(chain.keys).IsNotSupported());
  }
  kill(child, SIGKILL);
  WaitChild(child);
  auto store = OpenStore(store_dir);  // the lock died with its holder
  CHECK(Stats(*store).records == 3);
}

TEST_CASE("every write on a read-only store returns NotSupported") {
  test::TempDir dir;
  Chain chain = MakeChain(SmallNs(), 1, 2);
  REQUIRE(OpenStore(dir.str())->Put(chain.views()).ok());
  StoreOptions ro;
  ro.read_only = true;
  auto store = OpenStore(dir.str(), ro);
  TrimResult trim;
  CompactResult compact;
  CHECK(store->Put(chain.views()).IsNotSupported());
  CHECK(store->Touch(chain.keys).IsNotSupported());
  CHECK(store->Delete(chain.keys).IsNotSupported());
  CHECK(store->RegisterNamespace(SmallNs()).IsNotSupported());
  CHECK(store->TrimToBytes(0, &trim).IsNotSupported());
  CHECK(store->TrimOlderThan(NowMicros(), &trim).IsNotSupported());
  CHECK(store->DropNamespace(chain.ns.Fingerprint(), &trim).IsNotSupported());
  CHECK(store->Compact(&compact).IsNotSupported());
  CHECK(store->Flush().ok());
  CHECK(Present(*store, chain.keys) == std::vector<uint8_t>{1, 1});
}

TEST_CASE("a path that holds no kvtier store is refused with a clear error") {
  test::TempDir dir;
  std::unique_ptr<BlockStore> store;
  SECTION("a directory with other files") {
    std::ofstream(dir.sub("notes.txt")) << "hello";
    Status s = OpenBlockStore(dir.str(), StoreOptions(), &store);
    REQUIRE(s.IsInvalidArgument());
    CHECK_THAT(s.message(), Catch::Contains(dir.str() + " is not a kvtier store"));
    CHECK_THAT(s.message(), Catch::Contains("notes.txt"));
  }
  SECTION("a regular file") {
    std::ofstream(dir.sub("file")) << "hello";
    Status s = OpenBlockStore(dir.sub("file"), StoreOptions(), &store);
    REQUIRE(s.IsInvalidArgument());
    CHECK_THAT(s.message(), Catch::Contains("is not a kvtier store"));
  }
  SECTION("a plain RocksDB database") {
    rocksdb::Options options;
    options.create_if_missing = true;
    rocksdb::DB* db = nullptr;
    REQUIRE(rocksdb::DB::Open(options, dir.str(), &db).ok());
    delete db;
    Status s = OpenBlockStore(dir.str(), StoreOptions(), &store);
    REQUIRE(s.IsInvalidArgument());
    CHECK_THAT(s.message(), Catch::Contains("not a kvtier store") && Catch::Contains("'meta'"));
  }
  SECTION("nothing there, read-only or without create_if_missing") {
    StoreOptions options;
    options.read_only = true;
    Status s = OpenBlockStore(dir.sub("missing"), options, &store);
    REQUIRE(s.IsNotFound());
    CHECK_THAT(s.message(), Catch::Contains("no kvtier store at " + dir.sub("missing")));
    options.read_only = false;
    options.create_if_missing = false;
    CHECK(OpenBlockStore(dir.sub("missing"), options, &store).IsNotFound());
    CHECK(access(dir.sub("missing").c_str(), F_OK) != 0);  // nothing created
  }
  CHECK(store == nullptr);
}

TEST_CASE("a store of another format version is refused with NotSupported") {
  test::TempDir dir;
  OpenStore(dir.str());
  EditSys(dir.str(), [](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* sys) {
    return db->Put(rocksdb::WriteOptions(), sys, store_format::kFormatKey,
                   store_format::EncodeFormatVersion(kStoreFormatVersion + 1));
  });
  std::unique_ptr<BlockStore> store;
  Status s = OpenBlockStore(dir.str(), StoreOptions(), &store);
  REQUIRE(s.IsNotSupported());
  CHECK_THAT(s.message(), Catch::Contains("format version 3") &&
                              Catch::Contains("reads format versions 1 and 2"));
  StoreOptions ro;
  ro.read_only = true;
  CHECK(OpenBlockStore(dir.str(), ro, &store).IsNotSupported());
}

TEST_CASE("a RocksDB database with kvtier's families but no format version is refused") {
  test::TempDir dir;
  Chain chain = MakeChain(SmallNs(), 1, 1);
  REQUIRE(OpenStore(dir.str())->Put(chain.views()).ok());
  EditSys(dir.str(), [](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* sys) {
    return db->Delete(rocksdb::WriteOptions(), sys, store_format::kFormatKey);
  });
  std::unique_ptr<BlockStore> store;
  Status s = OpenBlockStore(dir.str(), StoreOptions(), &store);
  REQUIRE(s.IsInvalidArgument());
  CHECK_THAT(s.message(), Catch::Contains("not a kvtier store") &&
                              Catch::Contains("no kvtier format version"));
}

TEST_CASE("a directory holding only the leftovers of a failed creation becomes a store") {
  test::TempDir dir;
  std::ofstream(dir.sub("LOG")) << "rocksdb log";
  std::ofstream(dir.sub("LOCK"));
  auto store = OpenStore(dir.str());
  Chain chain = MakeChain(SmallNs(), 1, 1);
  REQUIRE(store->Put(chain.views()).ok());
  CHECK(Stats(*store).records == 1);
}

TEST_CASE("a second read-write open in the same process is Busy") {
  test::TempDir dir;
  auto store = OpenStore(dir.str());
  std::unique_ptr<BlockStore> second;
  Status s = OpenBlockStore(dir.str(), StoreOptions(), &second);
  REQUIRE(s.IsBusy());
  CHECK_THAT(s.message(), Catch::Contains("already open in this process") &&
                              Catch::Contains("LOCK"));
  CHECK(second == nullptr);
}

TEST_CASE("an unwritable or unreachable path is an IOError naming it") {
  test::TempDir dir;
  std::unique_ptr<BlockStore> store;
  SECTION("a path below a regular file") {
    std::ofstream(dir.sub("file")) << "x";
    const std::string path = dir.sub("file") + "/store";
    Status s = OpenBlockStore(path, StoreOptions(), &store);
    REQUIRE(s.IsIOError());
    CHECK_THAT(s.message(), Catch::Contains(path));
  }
  SECTION("a parent directory without write permission") {
    if (geteuid() == 0) return;  // root writes anyway; the section above covers root
    REQUIRE(chmod(dir.str().c_str(), 0500) == 0);
    const std::string path = dir.sub("store");
    Status s = OpenBlockStore(path, StoreOptions(), &store);
    REQUIRE(s.IsIOError());
    CHECK_THAT(s.message(), Catch::Contains(path));
  }
}

TEST_CASE("RegisterNamespace refuses the same model with another layout, naming both") {
  test::TempDir dir;
  auto store = OpenStore(dir.str());
  Namespace ns = SmallNs();
  REQUIRE(store->RegisterNamespace(ns).ok());
  REQUIRE(store->RegisterNamespace(ns).ok());  // idempotent
  Namespace other = ns;
  other.layout.head_dim = 16;
  Status s = store->RegisterNamespace(other);
  REQUIRE(s.IsInvalidArgument());
  CHECK_THAT(s.message(), Catch::Contains(ns.layout.ToString()) &&
                              Catch::Contains(other.layout.ToString()));
  Namespace salted = other;
  salted.salt = "lora-7";  // another identity: allowed
  CHECK(store->RegisterNamespace(salted).ok());
  CHECK(Namespaces(*store).size() == 2);
}

TEST_CASE("Put registers an unknown namespace by fingerprint and RegisterNamespace fills it in") {
  test::TempDir dir;
  auto store = OpenStore(dir.str());
  Chain chain = MakeChain(SmallNs(), 1, 2);
  REQUIRE(store->Put(chain.views()).ok());
  auto entries = Namespaces(*store);
  REQUIRE(entries.size() == 1);
  const NamespaceEntry& unknown = entries.at(chain.ns.Fingerprint());
  CHECK(unknown.ns.model.empty());
  CHECK(unknown.blocks == 2);
  REQUIRE(store->RegisterNamespace(chain.ns).ok());
  const NamespaceEntry known = Namespaces(*store).at(chain.ns.Fingerprint());
  CHECK(known.ns.model == "test-model");
  CHECK(known.ns.layout == chain.ns.layout);
  CHECK(known.blocks == 2);
}

TEST_CASE("TrimOlderThan deletes records last used before the cutoff, with descendants") {
  test::TempDir dir;
  auto store = OpenStore(dir.str());
  Chain chain = MakeChain(SmallNs(), 1, 3);
  Chain fresh = MakeChain(SmallNs(), 2, 1);
  REQUIRE(store->Put(chain.views(0, 1)).ok());
  const int64_t cutoff = Meta(*store, chain.keys[0]).last_access_us + 1;
  while (NowMicros() <= cutoff) {
  }
  REQUIRE(store->Put(chain.views(1, 3)).ok());
  REQUIRE(store->Put(fresh.views()).ok());
  TrimResult result;
  REQUIRE(store->TrimOlderThan(cutoff, &result).ok());
  CHECK(result.records_deleted == 3);
  CHECK(result.orphans_collected == 2);
  CHECK(result.bytes_freed == chain.records[0].size() + chain.records[1].size() +
                                  chain.records[2].size());
  CHECK(Present(*store, chain.keys) == std::vector<uint8_t>{0, 0, 0});
  CHECK(Has(*store, fresh.keys[0]));
  CHECK(Stats(*store).records == 1);
}

TEST_CASE("TrimToBytes evicts down to the given size") {
  test::TempDir dir;
  auto store = OpenStore(dir.str());
  Chain chain = MakeChain(SmallNs(), 1, 4, RawCodec());
  REQUIRE(store->Put(chain.views()).ok());
  TrimResult result;
  REQUIRE(store->TrimToBytes(2 * chain.records[0].size(), &result).ok());
  CHECK(result.records_deleted == 2);
  CHECK(Present(*store, chain.keys) == std::vector<uint8_t>{1, 1, 0, 0});
  REQUIRE(store->TrimToBytes(0, &result).ok());
  CHECK(Stats(*store).records == 0);
  CHECK(Stats(*store).stored_bytes == 0);
}

TEST_CASE("DropNamespace deletes a namespace's records and its manifest entry") {
  test::TempDir dir;
  auto store = OpenStore(dir.str());
  Chain a = MakeChain(SmallNs("model-a"), 1, 3);
  Chain b = MakeChain(SmallNs("model-b"), 2, 2);
  REQUIRE(store->RegisterNamespace(a.ns).ok());
  REQUIRE(store->Put(a.views()).ok());
  REQUIRE(store->Put(b.views()).ok());
  TrimResult result;
  REQUIRE(store->DropNamespace(a.ns.Fingerprint(), &result).ok());
  CHECK(result.records_deleted == 3);
  CHECK(result.orphans_collected == 0);
  CHECK(Present(*store, a.keys) == std::vector<uint8_t>{0, 0, 0});
  CHECK(Present(*store, b.keys) == std::vector<uint8_t>{1, 1});
  auto entries = Namespaces(*store);
  CHECK(entries.size() == 1);
  CHECK(entries.count(b.ns.Fingerprint()) == 1);
  CHECK(Stats(*store).records == 2);
  Status s = store->DropNamespace(a.ns.Fingerprint(), &result);
  CHECK(s.IsNotFound());
  CHECK_THAT(s.message(), Catch::Contains(a.ns.Fingerprint().ToHex()));
}

TEST_CASE("Compact reclaims the files of deleted records") {
  test::TempDir dir;
  auto store = OpenStore(dir.str());
  Chain big = MakeChain(BlobNs(), 1, 48, RawCodec());  // 48 blobs of 64 KiB
  Chain kept = MakeChain(SmallNs(), 2, 2);
  REQUIRE(store->Put(big.views()).ok());
  REQUIRE(store->Put(kept.views()).ok());
  CompactResult first;
  REQUIRE(store->Compact(&first).ok());  // records now live in SST and blob files
  CHECK(first.files_bytes_after >= 48 * (64u << 10));
  TrimResult dropped;
  REQUIRE(store->DropNamespace(big.ns.Fingerprint(), &dropped).ok());
  CompactResult second;
  REQUIRE(store->Compact(&second).ok());
  INFO("before " << second.files_bytes_before << " after " << second.files_bytes_after);
  CHECK(second.files_bytes_after < second.files_bytes_before / 4);
  CHECK(Stats(*store).files_bytes == second.files_bytes_after);
  CHECK(Present(*store, kept.keys) == std::vector<uint8_t>{1, 1});
}

TEST_CASE("ForEachRecord visits every record with its metadata") {
  test::TempDir dir;
  auto store = OpenStore(dir.str());
  Chain a = MakeChain(SmallNs(), 1, 3);
  Chain b = MakeChain(BlobNs(), 2, 1, RawCodec());
  REQUIRE(store->Put(a.views()).ok());
  REQUIRE(store->Put(b.views()).ok());
  std::map<Hash128, RecordMeta> seen;
  REQUIRE(store->ForEachRecord([&](const RecordMeta& m) {
    seen[m.key] = m;
    return true;
  }).ok());
  REQUIRE(seen.size() == 4);
  for (const Chain* c : {&a, &b}) {
    for (size_t i = 0; i < c->keys.size(); ++i) {
      RecordHeader h;
      REQUIRE(ParseRecordHeader(c->records[i], &h).ok());
      const RecordMeta& m = seen.at(c->keys[i]);
      CHECK(m.depth == i);
      CHECK(m.parent == (i == 0 ? c->ns.Fingerprint() : c->keys[i - 1]));
      CHECK(m.namespace_fp == c->ns.Fingerprint());
      CHECK(m.num_tokens == c->ns.layout.block_size);
      CHECK(m.flags == h.flags);
      CHECK(m.dtype == c->ns.layout.dtype);
      CHECK(m.raw_bytes == c->ns.layout.block_bytes());
      CHECK(m.stored_bytes == c->records[i].size());
      CHECK(m.last_access_us > 0);
    }
  }
  CHECK(seen.at(b.keys[0]).access_seq > seen.at(a.keys[0]).access_seq);
  int visits = 0;
  REQUIRE(store->ForEachRecord([&](const RecordMeta&) { return ++visits < 2; }).ok());
  CHECK(visits == 2);
}

TEST_CASE("random puts, touches, deletes, trims and reopens keep the counters exact") {
  const uint64_t seed = std::random_device{}();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  test::TempDir dir;
  StoreOptions options;
  options.max_bytes = 15000;
  auto store = OpenStore(dir.str(), options);
  std::vector<Chain> chains;
  for (int step = 0; step < 120; ++step) {
    const int op = static_cast<int>(rng() % 10);
    if (op < 5 || chains.empty()) {
      chains.push_back(MakeChain(SmallNs(rng() % 2 ? "m1" : "m2"), rng(), 1 + rng() % 4));
      REQUIRE(store->Put(chains.back().views()).ok());
    } else if (op < 7) {
      const Chain& c = chains[rng() % chains.size()];
      REQUIRE(store->Touch(c.keys).ok());
    } else if (op < 8) {
      const Chain& c = chains[rng() % chains.size()];
      REQUIRE(store->Delete(std::vector<Hash128>{c.keys[rng() % c.keys.size()]}).ok());
    } else if (op < 9) {
      TrimResult r;
      REQUIRE(store->TrimToBytes(options.max_bytes / 2, &r).ok());
    } else {
      store.reset();
      store = OpenStore(dir.str(), options);
    }
    // The counters equal what the metadata says, in total and per namespace.
    StoreStats stats = Stats(*store);
    uint64_t records = 0, raw = 0, stored = 0;
    std::map<Hash128, std::pair<uint64_t, uint64_t>> per_ns;
    REQUIRE(store->ForEachRecord([&](const RecordMeta& m) {
      ++records;
      raw += m.raw_bytes;
      stored += m.stored_bytes;
      per_ns[m.namespace_fp].first += 1;
      per_ns[m.namespace_fp].second += m.stored_bytes;
      return true;
    }).ok());
    INFO("step " << step << " op " << op);
    REQUIRE(stats.records == records);
    REQUIRE(stats.raw_bytes == raw);
    REQUIRE(stats.stored_bytes == stored);
    REQUIRE(stats.stored_bytes <= options.max_bytes);
    for (const auto& [fp, entry] : Namespaces(*store)) {
      REQUIRE(entry.blocks == per_ns[fp].first);
      REQUIRE(entry.stored_bytes == per_ns[fp].second);
    }
  }
}

TEST_CASE("concurrent writers and readers keep the counters exact") {
  test::TempDir dir;
  auto store = OpenStore(dir.str());
  constexpr int kThreads = 4, kChains = 10;
  std::vector<Chain> chains;  // made up front: Catch2 assertions are not thread-safe
  for (int i = 0; i < kThreads * kChains; ++i) chains.push_back(MakeChain(SmallNs(), 1000 + i, 3));
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kChains; ++i) {
        const Chain& c = chains[t * kChains + i];
        if (!store->Put(c.views()).ok()) ++failures;
        if (!store->Put(c.views(0, 1)).ok()) ++failures;  // a re-put
        std::vector<std::string> values;
        std::vector<Status> statuses;
        store->MultiGet(c.keys, &values, &statuses);
        for (size_t k = 0; k < 3; ++k) {
          if (!statuses[k].ok() || values[k] != c.records[k]) ++failures;
        }
        if (!store->Touch(c.keys).ok()) ++failures;
        StoreStats stats;
        if (!store->GetStats(&stats).ok()) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(failures == 0);
  CHECK(Stats(*store).records == kThreads * kChains * 3);
}
