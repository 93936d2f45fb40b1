// End-to-end tests of the `kvtier` tool: each runs the real binary against a
// real store built with the library in a temp directory.

#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <rocksdb/db.h>
#include <set>
#include <sstream>

#include "kvtier/record.h"
#include "kvtier/store.h"
#include "test_util.h"

extern char** environ;

namespace kvtier {
namespace {

using nlohmann::json;
using test::TempDir;

std::string KvtierBinary() {
  const char* dir = std::getenv("KVTIER_TEST_BINARY_DIR");
  std::filesystem::path base =
      dir != nullptr ? std::filesystem::path(dir) : std::filesystem::read_symlink("/proc/self/exe").parent_path();
  return (base / ".." / "tools" / "cli" / "kvtier").lexically_normal().string();
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

struct Run {
  int code = -1;
  std::string out, err;
  json Json() const { return json::parse(out); }
};

// Runs `kvtier args...` without a shell; stdout and stderr go to files (so
// no pipe can fill up), or stderr to `stderr_fd` (a terminal) when given.
Run Kvtier(const std::vector<std::string>& args, int stderr_fd = -1) {
  static TempDir scratch;
  static int n = 0;
  std::string out = scratch.sub("out" + std::to_string(n)), err = scratch.sub("err" + std::to_string(n++));
  std::vector<std::string> argv_s = {KvtierBinary()};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (stderr_fd >= 0)
    posix_spawn_file_actions_adddup2(&fa, stderr_fd, 2);
  else
    posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid;
  REQUIRE(posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ) == 0);
  posix_spawn_file_actions_destroy(&fa);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  Run r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = ReadFile(out);
  if (stderr_fd < 0) r.err = ReadFile(err);
  return r;
}

// The tool's error contract: exit 2, exactly one line "kvtier: ..." on stderr.
void RequireOneLineError(const Run& r, const std::string& needle) {
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.code == 2);
  REQUIRE(r.err.rfind("kvtier: ", 0) == 0);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  CHECK(r.err.find(needle) != std::string::npos);
}

// ls --json without the fields a copy cannot keep (when it was last used).
json Listing(const std::string& dir) {
  Run r = Kvtier({"ls", dir, "--sort", "key", "--json"});
  REQUIRE(r.code == 0);
  json doc = r.Json();
  for (auto& rec : doc["records"]) {
    rec.erase("last_access_us");
    rec.erase("access_seq");
  }
  return doc;
}

// --- Building stores --------------------------------------------------------

std::unique_ptr<BlockStore> OpenRW(const std::string& dir) {
  std::unique_ptr<BlockStore> store;
  StoreOptions o;
  o.max_bytes = 0;
  Status s = OpenBlockStore(dir, o, &store);
  INFO(s.ToString());
  REQUIRE(s.ok());
  return store;
}

std::string Encode(const Namespace& ns, uint32_t depth, const Hash128& parent,
                   std::span<const Token> tokens, const std::vector<std::byte>& payload) {
  RecordIdentity id{ns.layout, depth, ns.Fingerprint(), parent, tokens};
  std::string out;
  REQUIRE(EncodeRecord(id, payload, CodecOptions{}, &out).ok());
  return out;
}

// Puts every full block of `tokens` under `ns`; returns the chain's keys.
std::vector<Hash128> PutChain(BlockStore* store, const Namespace& ns, const std::vector<Token>& tokens,
                              uint64_t seed) {
  uint32_t bs = ns.layout.block_size;
  std::vector<std::string> records;
  std::vector<Hash128> keys;
  Hash128 parent = ns.Fingerprint();
  for (uint32_t i = 0; (i + 1) * bs <= tokens.size(); ++i) {
    std::span<const Token> block(tokens.data() + i * bs, bs);
    records.push_back(Encode(ns, i, parent, block, test::Payload(ns.layout, seed + i)));
    parent = ChainHash(parent, block);
    keys.push_back(parent);
  }
  std::vector<std::string_view> views(records.begin(), records.end());
  REQUIRE(store->Put(views).ok());
  return keys;
}

// Namespace A (f16): p1 = 6 blocks; p2 shares p1's first 3 blocks, then 2
// of its own; p3 = 2 blocks. Namespace B (f32): b = 3 blocks, block 0 with
// hand-made values (for show --stats). 13 records.
struct Fixture {
  TempDir tmp;
  std::string dir = tmp.sub("store");
  Namespace a = test::TestNamespace(test::SmallLayout(), "model-a");
  Namespace b = test::TestNamespace(test::SmallLayout(DType::kF32), "model-b");
  std::vector<Token> p1 = test::Tokens(24, 1), p2, p3 = test::Tokens(8, 3), bt = test::Tokens(12, 4);
  std::vector<Hash128> k1, k2, k3, kb;

  Fixture() {
    p2.assign(p1.begin(), p1.begin() + 12);
    auto tail = test::Tokens(8, 2);
    p2.insert(p2.end(), tail.begin(), tail.end());
    auto store = OpenRW(dir);
    REQUIRE(store->RegisterNamespace(a).ok());
    REQUIRE(store->RegisterNamespace(b).ok());
    k1 = PutChain(store.get(), a, p1, 100);
    k2 = PutChain(store.get(), a, p2, 100);
    k3 = PutChain(store.get(), a, p3, 300);
    kb = PutChain(store.get(), b, bt, 400);
    // Block 0 of b again, with known values: layer 0 K = {-3, 2, NaN, Inf, 0.25...},
    // layer 1 V = all -1, everything else 0.25. Re-Put keeps bytes, so
    // replace it by deleting first.
    REQUIRE(store->Delete(std::span<const Hash128>(&kb[0], 1)).ok());
    const BlockLayout& l = b.layout;
    std::vector<float> v(l.block_bytes() / 4, 0.25f);
    float specials[] = {-3.0f, 2.0f, NAN, INFINITY};
    std::copy(std::begin(specials), std::end(specials), v.begin() + l.key_offset(0) / 4);
    std::fill_n(v.begin() + l.value_offset(1) / 4, l.tensor_bytes() / 4, -1.0f);
    std::vector<std::byte> payload(l.block_bytes());
    std::memcpy(payload.data(), v.data(), payload.size());
    std::string rec = Encode(b, 0, b.Fingerprint(), std::span<const Token>(bt.data(), 4), payload);
    std::string_view view = rec;
    REQUIRE(store->Put(std::span<const std::string_view>(&view, 1)).ok());
    k2.erase(k2.begin(), k2.begin() + 3);  // p2's own blocks only
  }
};

// Overwrites the record bytes under `key` at the RocksDB level (the store
// itself never writes a record it cannot parse).
void CorruptRecordInRocksDB(const std::string& dir, const Hash128& key, const std::string& bytes) {
  rocksdb::Options options;
  std::vector<std::string> names;
  REQUIRE(rocksdb::DB::ListColumnFamilies(options, dir, &names).ok());
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  for (const auto& n : names) families.emplace_back(n, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  REQUIRE(rocksdb::DB::Open(options, dir, families, &handles, &db).ok());
  uint8_t k[16];
  key.ToBytes(k);
  REQUIRE(db->Put(rocksdb::WriteOptions(), rocksdb::Slice(reinterpret_cast<char*>(k), 16), bytes).ok());
  for (auto* h : handles) REQUIRE(db->DestroyColumnFamilyHandle(h).ok());
  delete db;
}

// --- Graphviz DOT, parsed back ----------------------------------------------

struct DotGraph {
  std::set<std::string> nodes;
  std::vector<std::pair<std::string, std::string>> edges;
};

// A strict reader for the subset of DOT the tool writes: `digraph NAME {`,
// statements `ID [a=b, ...];`, `ID -> ID;`, `name=value;`, quoted IDs with
// \" escapes, `}` last. Returns false on anything else.
bool ParseDot(const std::string& text, DotGraph* g) {
  std::vector<std::string> tok;
  for (size_t i = 0; i < text.size();) {
    char c = text[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
    } else if (c == '"') {
      std::string s = "\"";
      for (++i; i < text.size() && text[i] != '"'; ++i) {
        if (text[i] == '\\' && i + 1 < text.size()) s += text[i++];
        s += text[i];
      }
      if (i == text.size()) return false;
      tok.push_back(s + "\"");
      ++i;
    } else if (text.compare(i, 2, "->") == 0) {
      tok.push_back("->");
      i += 2;
    } else if (std::strchr("{}[];,=", c) != nullptr) {
      tok.push_back(std::string(1, c));
      ++i;
    } else if (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.') {
      size_t j = i;
      while (j < text.size() && (std::isalnum(static_cast<unsigned char>(text[j])) || text[j] == '_' || text[j] == '.')) ++j;
      tok.push_back(text.substr(i, j - i));
      i = j;
    } else {
      return false;
    }
  }
  auto is_id = [](const std::string& t) { return t[0] == '"' || std::isalnum(static_cast<unsigned char>(t[0])); };
  size_t p = 0;
  if (tok.size() < 4 || tok[p++] != "digraph" || !is_id(tok[p++]) || tok[p++] != "{") return false;
  auto attrs = [&]() {  // [a=b, c=d]
    if (p >= tok.size() || tok[p] != "[") return true;
    for (++p; p < tok.size() && tok[p] != "]";) {
      if (p + 2 >= tok.size() || !is_id(tok[p]) || tok[p + 1] != "=" || !is_id(tok[p + 2])) return false;
      p += 3;
      if (tok[p] == ",") ++p;
    }
    return p++ < tok.size();
  };
  while (p < tok.size() && tok[p] != "}") {
    std::string a = tok[p++];
    if (!is_id(a) || p >= tok.size()) return false;
    if (tok[p] == "=") {
      if (++p >= tok.size() || !is_id(tok[p++])) return false;
    } else if (tok[p] == "->") {
      if (++p >= tok.size() || !is_id(tok[p])) return false;
      g->edges.emplace_back(a, tok[p++]);
      if (!attrs()) return false;
    } else {
      if (!attrs()) return false;
      if (a != "node" && a != "edge" && a != "graph") g->nodes.insert(a);
    }
    if (p >= tok.size() || tok[p++] != ";") return false;
  }
  if (p + 1 != tok.size()) return false;  // "}" must be the last token
  for (const auto& [from, to] : g->edges)
    if (g->nodes.count(from) == 0 || g->nodes.count(to) == 0) return false;
  return true;
}

std::string Quoted(const Hash128& key) { return "\"" + key.ToHex() + "\""; }

// --- Archives, taken apart by hand (docs/CLI.md documents the format) -------

struct FrameAt {
  size_t offset;
  char type;
  uint32_t length;
};

uint64_t Le(const std::string& s, size_t at, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= uint64_t{static_cast<uint8_t>(s[at + i])} << (8 * i);
  return v;
}
void SetLe(std::string* s, size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) (*s)[at + i] = static_cast<char>(v >> (8 * i));
}

std::vector<FrameAt> Frames(const std::string& archive) {
  std::vector<FrameAt> frames;
  for (size_t at = 24; at + 24 <= archive.size();) {
    frames.push_back({at, archive[at], static_cast<uint32_t>(Le(archive, at + 4, 4))});
    at += 24 + frames.back().length;
  }
  return frames;
}

// Recomputes every checksum (body, frame header, end-frame digest), as a
// writer that had these bytes would have.
void Reseal(std::string* archive) {
  XXH3_state_t* digest = XXH3_createState();
  XXH3_64bits_reset(digest);
  for (const FrameAt& f : Frames(*archive)) {
    if (f.type == 'E') SetLe(archive, f.offset + 24 + 16, XXH3_64bits_digest(digest));
    SetLe(archive, f.offset + 8, XXH3_64bits(archive->data() + f.offset + 24, f.length));
    SetLe(archive, f.offset + 16, XXH3_64bits(archive->data() + f.offset, 16));
    if (f.type != 'E') XXH3_64bits_update(digest, archive->data() + f.offset, 24);
  }
  XXH3_freeState(digest);
}

// --- Read commands ----------------------------------------------------------

TEST_CASE("stats reports records, bytes, namespaces and a size histogram") {
  Fixture f;
  Run r = Kvtier({"stats", f.dir, "--json"});
  REQUIRE(r.code == 0);
  json doc = r.Json();
  CHECK(doc["records"] == 13);
  CHECK(doc["bytes_raw"] == 10 * f.a.layout.block_bytes() + 3 * f.b.layout.block_bytes());
  CHECK(doc["bytes_stored"].get<uint64_t>() > 0);
  CHECK(doc["format_version"] == kStoreFormatVersion);
  REQUIRE(doc["namespaces"].size() == 2);
  std::map<std::string, json> by_model;
  for (const auto& ns : doc["namespaces"]) by_model[ns["model"]] = ns;
  CHECK(by_model["model-a"]["blocks"] == 10);
  CHECK(by_model["model-a"]["fingerprint"] == f.a.Fingerprint().ToHex());
  CHECK(by_model["model-b"]["blocks"] == 3);
  CHECK(by_model["model-b"]["layout"]["dtype"] == "f32");
  uint64_t histogram_total = 0;
  for (const auto& b : doc["size_histogram"]) histogram_total += b["records"].get<uint64_t>();
  CHECK(histogram_total == 13);

  Run text = Kvtier({"stats", f.dir});
  REQUIRE(text.code == 0);
  CHECK(text.out.find("records        13") != std::string::npos);
  CHECK(text.out.find("model-a@rev1") != std::string::npos);
  CHECK(text.out.find("record sizes") != std::string::npos);
  CHECK(text.err.empty());
}

TEST_CASE("ls lists records with depth and tokens covered, filtered, sorted and limited") {
  Fixture f;
  json all = Kvtier({"ls", f.dir, "--json"}).Json();
  CHECK(all["total"] == 13);
  REQUIRE(all["records"].size() == 13);
  std::map<std::string, json> by_key;
  for (const auto& r : all["records"]) by_key[r["key"]] = r;
  json last = by_key[f.k1[5].ToHex()];
  CHECK(last["depth"] == 5);
  CHECK(last["tokens_covered"] == 24);
  CHECK(last["parent"] == f.k1[4].ToHex());
  CHECK(last["namespace"] == f.a.Fingerprint().ToHex());
  CHECK(last["bytes_raw"] == f.a.layout.block_bytes());
  // The tiny test blocks may not compress enough to be worth zstd.
  CHECK(std::set<std::string>{"raw", "zstd", "zstd+shuffle"}.count(last["codec"]) == 1);
  json shown = Kvtier({"show", f.dir, f.k1[5].ToHex(), "--json"}).Json();
  CHECK(shown["header"]["codec"] == last["codec"]);

  json only_b = Kvtier({"ls", f.dir, "--namespace", "model-b", "--json"}).Json();
  CHECK(only_b["total"] == 3);
  json by_fp = Kvtier({"ls", f.dir, "-n", f.b.Fingerprint().ToHex().substr(0, 6), "--json"}).Json();
  CHECK(by_fp["total"] == 3);

  json by_depth = Kvtier({"ls", f.dir, "--sort", "depth", "--json"}).Json();
  for (size_t i = 1; i < by_depth["records"].size(); ++i)
    CHECK(by_depth["records"][i - 1]["depth"] <= by_depth["records"][i]["depth"]);
  json by_size = Kvtier({"ls", f.dir, "--sort", "size", "--json"}).Json();
  for (size_t i = 1; i < by_size["records"].size(); ++i)
    CHECK(by_size["records"][i - 1]["bytes_stored"] >= by_size["records"][i]["bytes_stored"]);
  json recent = Kvtier({"ls", f.dir, "--limit", "2", "--json"}).Json();
  CHECK(recent["total"] == 13);
  REQUIRE(recent["shown"] == 2);
  CHECK(recent["records"][0]["key"] == f.kb[0].ToHex());  // the last one written

  Run text = Kvtier({"ls", f.dir, "--limit", "3"});
  REQUIRE(text.code == 0);
  CHECK(text.out.find(f.kb[0].ToHex()) != std::string::npos);
  CHECK(text.out.find("13 records") != std::string::npos);
  CHECK(text.out.find("showing 3") != std::string::npos);
}

TEST_CASE("tree shows which prefixes share blocks and what hangs under each node") {
  Fixture f;
  json doc = Kvtier({"tree", f.dir, "--json"}).Json();
  std::map<std::string, json> nodes;
  for (const auto& n : doc["nodes"]) nodes[n["key"]] = n;
  REQUIRE(nodes.size() == 13);
  json head = nodes[f.k1[0].ToHex()];
  CHECK(head["descendants"] == 7);  // p1[1..5] and p2's own 2 blocks
  CHECK(head["prefixes"] == 2);
  json fork = nodes[f.k1[2].ToHex()];
  CHECK(fork["children"].size() == 2);
  CHECK(fork["tokens_covered"] == 12);
  uint64_t subtree = 0;
  for (const Hash128& k : {f.k1[3], f.k1[4], f.k1[5], f.k2[0], f.k2[1]})
    subtree += nodes[k.ToHex()]["bytes_stored"].get<uint64_t>();
  CHECK(fork["subtree_bytes_stored"] == subtree + fork["bytes_stored"].get<uint64_t>());

  Run text = Kvtier({"tree", f.dir});
  REQUIRE(text.code == 0);
  CHECK(text.out.find("shared by 2 prefixes") != std::string::npos);
  CHECK(text.out.find("model-b@rev1") != std::string::npos);
  CHECK(text.out.find(f.k1[0].ToHex().substr(0, 8)) != std::string::npos);

  SECTION("--max-depth limits what is shown, not what is counted") {
    json cut = Kvtier({"tree", f.dir, "--max-depth", "2", "--json"}).Json();
    for (const auto& n : cut["nodes"]) CHECK(n["depth"] < 2);
    CHECK(cut["nodes"].size() == 6);  // p1[0..1], p3[0..1], b[0..1]
    for (const auto& n : cut["nodes"])
      if (n["key"] == f.k1[0].ToHex()) CHECK(n["descendants"] == 7);
    Run cut_text = Kvtier({"tree", f.dir, "--max-depth", "1"});
    CHECK(cut_text.out.find("blocks below depth 1") != std::string::npos);
  }
  SECTION("--namespace shows one namespace") {
    json one = Kvtier({"tree", f.dir, "-n", "model-b", "--json"}).Json();
    CHECK(one["namespaces"].size() == 1);
    CHECK(one["nodes"].size() == 3);
  }
}

TEST_CASE("tree --dot is Graphviz DOT whose nodes and edges match the store") {
  Fixture f;
  Run r = Kvtier({"tree", f.dir, "--dot"});
  REQUIRE(r.code == 0);
  DotGraph g;
  INFO(r.out);
  REQUIRE(ParseDot(r.out, &g));
  size_t namespace_nodes = 0;
  for (const auto& n : g.nodes) namespace_nodes += n.rfind("\"ns:", 0) == 0;
  CHECK(namespace_nodes == 2);
  CHECK(g.nodes.size() - namespace_nodes == 13);
  CHECK(g.edges.size() == 13);  // each record from its parent or its namespace
  std::set<std::pair<std::string, std::string>> edges(g.edges.begin(), g.edges.end());
  CHECK(edges.count({Quoted(f.k1[2]), Quoted(f.k2[0])}) == 1);
  CHECK(edges.count({"\"ns:" + f.a.Fingerprint().ToHex() + "\"", Quoted(f.k1[0])}) == 1);

  SECTION("an orphan is a node without an incoming edge") {
    OpenRW(f.dir)->Delete(std::span<const Hash128>(&f.k1[3], 1)).ok();
    DotGraph h;
    REQUIRE(ParseDot(Kvtier({"tree", f.dir, "--dot"}).out, &h));
    CHECK(h.nodes.size() - namespace_nodes == 12);
    CHECK(h.edges.size() == 11);
    std::set<std::string> targets;
    for (const auto& e : h.edges) targets.insert(e.second);
    CHECK(targets.count(Quoted(f.k1[4])) == 0);
    CHECK(targets.count(Quoted(f.k1[5])) == 1);
  }
}

TEST_CASE("show prints a record's header, tokens, parent chain and value statistics") {
  Fixture f;
  Run r = Kvtier({"show", f.dir, f.k1[3].ToHex(), "--tokens", "--stats", "--json"});
  REQUIRE(r.code == 0);
  json doc = r.Json();
  CHECK(doc["ok"] == true);
  CHECK(doc["header"]["depth"] == 3);
  CHECK(doc["header"]["parent"] == f.k1[2].ToHex());
  CHECK(doc["tokens"] == std::vector<Token>(f.p1.begin() + 12, f.p1.begin() + 16));
  REQUIRE(doc["chain"].size() == 3);
  for (int i = 0; i < 3; ++i) {
    CHECK(doc["chain"][i]["depth"] == 2 - i);
    CHECK(doc["chain"][i]["key"] == f.k1[2 - i].ToHex());
    CHECK(doc["chain"][i]["present"] == true);
  }
  REQUIRE(doc["layers"].size() == f.a.layout.num_layers);

  SECTION("value statistics are exact, NaN and Inf counted apart") {
    json b = Kvtier({"show", f.dir, f.kb[0].ToHex(), "--stats", "--json"}).Json();
    json k0 = b["layers"][0]["k"];
    CHECK(k0["min"] == -3.0);
    CHECK(k0["max"] == 2.0);
    CHECK(k0["abs_max"] == 3.0);
    CHECK(k0["nan"] == 1);
    CHECK(k0["inf"] == 1);
    size_t n = f.b.layout.tensor_bytes() / 4;
    CHECK(k0["mean"].get<double>() == Approx((-3.0 + 2.0 + 0.25 * (n - 4)) / (n - 2)));
    json v1 = b["layers"][1]["v"];
    CHECK(v1["min"] == -1.0);
    CHECK(v1["max"] == -1.0);
    CHECK(v1["mean"] == -1.0);
    CHECK(v1["nan"] == 0);
  }
  SECTION("a unique key prefix is enough, and the text view names the chain") {
    Run text = Kvtier({"show", f.dir, f.k1[3].ToHex().substr(0, 10), "--stats"});
    REQUIRE(text.code == 0);
    CHECK(text.out.find("check          ok") != std::string::npos);
    CHECK(text.out.find("parent chain   3 blocks") != std::string::npos);
    CHECK(text.out.find(f.k1[0].ToHex()) != std::string::npos);
    CHECK(text.out.find("abs-max") != std::string::npos);
  }
}

// --- verify -----------------------------------------------------------------

TEST_CASE("verify finds corrupt and orphaned records and --repair deletes them") {
  Fixture f;
  Run healthy = Kvtier({"verify", f.dir});
  CHECK(healthy.code == 0);
  CHECK(healthy.out == "verify: 13 records checked, all ok\n");

  // 1. A record whose body is damaged (its header is fine, so Put takes it).
  auto store = OpenRW(f.dir);
  std::vector<Token> more = f.p3;
  auto extra_tokens = test::Tokens(4, 9);
  more.insert(more.end(), extra_tokens.begin(), extra_tokens.end());
  std::string bad = Encode(f.a, 2, f.k3[1], std::span<const Token>(more.data() + 8, 4),
                           test::Payload(f.a.layout, 9));
  bad[bad.size() - 2] ^= 0x5a;
  std::string_view view = bad;
  REQUIRE(store->Put(std::span<const std::string_view>(&view, 1)).ok());
  Hash128 damaged_body = ChainHash(f.k3[1], std::span<const Token>(more.data() + 8, 4));
  // 2. An orphan: b[2] loses its parent.
  REQUIRE(store->Delete(std::span<const Hash128>(&f.kb[1], 1)).ok());
  store.reset();
  // 3. Garbage under p1[4]'s key, written below the store; p1[5] is orphaned by it.
  CorruptRecordInRocksDB(f.dir, f.k1[4], "not a record at all");

  Run found = Kvtier({"verify", f.dir, "--json"});
  CHECK(found.code == 1);
  json doc = found.Json();
  std::set<std::string> corrupt, orphaned;
  for (const auto& p : doc["corrupt"]) corrupt.insert(p["key"]);
  for (const auto& p : doc["orphaned"]) orphaned.insert(p["key"]);
  CHECK(corrupt == std::set<std::string>{damaged_body.ToHex(), f.k1[4].ToHex()});
  CHECK(orphaned == std::set<std::string>{f.kb[2].ToHex(), f.k1[5].ToHex()});
  CHECK(doc["problems"] == 4);
  CHECK(found.err.find("2 corrupt, 2 orphaned") != std::string::npos);  // the summary line
  Run text = Kvtier({"verify", f.dir});
  CHECK(text.code == 1);
  CHECK(text.out.find("orphaned  " + f.kb[2].ToHex() + "  parent " + f.kb[1].ToHex().substr(0, 8) +
                      " is missing") != std::string::npos);
  CHECK(text.out.find("orphaned  " + f.k1[5].ToHex() + "  parent " + f.k1[4].ToHex().substr(0, 8) +
                      " is corrupt") != std::string::npos);
  Run show = Kvtier({"show", f.dir, f.k1[4].ToHex()});
  CHECK(show.code == 1);
  CHECK(show.out.find("CORRUPT") != std::string::npos);

  Run repair = Kvtier({"verify", f.dir, "--repair"});
  CHECK(repair.code == 0);
  CHECK(repair.out.find("deleted 4 records") != std::string::npos);
  Run again = Kvtier({"verify", f.dir});
  CHECK(again.code == 0);
  CHECK(again.out == "verify: 9 records checked, all ok\n");
  CHECK(Kvtier({"ls", f.dir, "--json"}).Json()["total"] == 9);
}

// --- A store held by a live process ------------------------------------------

// A child process that opens the store read-write, writes one more record
// (left in the WAL, not flushed) and holds the store until Release().
class Holder {
 public:
  Holder(const std::string& dir, const std::string& record) {
    int ready[2], release[2];
    REQUIRE(pipe(ready) == 0);
    REQUIRE(pipe(release) == 0);
    pid_ = fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      close(ready[0]);
      close(release[1]);
      std::unique_ptr<BlockStore> store;
      StoreOptions o;
      o.max_bytes = 0;
      std::string_view view = record;
      char ok = OpenBlockStore(dir, o, &store).ok() &&
                        store->Put(std::span<const std::string_view>(&view, 1)).ok()
                    ? 'R'
                    : 'E';
      (void)!write(ready[1], &ok, 1);
      char c;
      (void)!read(release[0], &c, 1);
      _exit(0);  // the lock dies with the process
    }
    close(ready[1]);
    close(release[0]);
    release_fd_ = release[1];
    char c = 0;
    (void)!read(ready[0], &c, 1);
    close(ready[0]);
    REQUIRE(c == 'R');
  }
  ~Holder() { Release(); }
  void Release() {
    if (pid_ <= 0) return;
    close(release_fd_);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
  int release_fd_ = -1;
};

TEST_CASE("a store held by another process can be read but not written") {
  Fixture f;
  std::string archive = f.tmp.sub("a.kvtar");
  REQUIRE(Kvtier({"export", f.dir, archive}).code == 0);
  std::vector<Token> tokens = f.p3;
  auto extra = test::Tokens(4, 77);
  tokens.insert(tokens.end(), extra.begin(), extra.end());
  std::string record = Encode(f.a, 2, f.k3[1], std::span<const Token>(tokens.data() + 8, 4),
                              test::Payload(f.a.layout, 77));
  Hash128 new_key = ChainHash(f.k3[1], std::span<const Token>(tokens.data() + 8, 4));

  Holder holder(f.dir, record);
  // Read commands see a consistent view, including the holder's last write.
  Run stats = Kvtier({"stats", f.dir, "--json"});
  REQUIRE(stats.code == 0);
  CHECK(stats.Json()["records"] == 14);
  json held_listing = Listing(f.dir);
  CHECK(held_listing["total"] == 14);
  CHECK(Kvtier({"tree", f.dir}).code == 0);
  CHECK(Kvtier({"show", f.dir, new_key.ToHex()}).code == 0);
  CHECK(Kvtier({"verify", f.dir}).out == "verify: 14 records checked, all ok\n");
  CHECK(Kvtier({"export", f.dir, f.tmp.sub("b.kvtar")}).code == 0);

  // Write commands refuse, and say why and what to do.
  for (std::vector<std::string> args : {std::vector<std::string>{"trim", f.dir, "--max-bytes", "0"},
                                        {"trim", f.dir, "--older-than", "0s"},
                                        {"compact", f.dir},
                                        {"verify", f.dir, "--repair"},
                                        {"import", f.dir, archive}}) {
    INFO(args[0]);
    Run r = Kvtier(args);
    RequireOneLineError(r, "is held by another process");
    CHECK(r.err.find("stop that process") != std::string::npos);
  }
  holder.Release();
  CHECK(Listing(f.dir) == held_listing);
  Run trim = Kvtier({"trim", f.dir, "--max-bytes", "0", "--json"});
  CHECK(trim.code == 0);
  CHECK(trim.Json()["records"] == 0);
}

// --- export / import ------------------------------------------------------------

TEST_CASE("export then import into a fresh store gives an identical ls --json") {
  Fixture f;
  std::string archive = f.tmp.sub("cache.kvtar");
  Run e = Kvtier({"export", f.dir, archive, "--json"});
  REQUIRE(e.code == 0);
  CHECK(e.Json()["records"] == 13);
  CHECK(e.Json()["namespaces"] == 2);
  std::string copy = f.tmp.sub("copy");  // does not exist yet
  Run i = Kvtier({"import", copy, archive, "--json"});
  REQUIRE(i.code == 0);
  CHECK(i.Json()["records"] == 13);
  CHECK(i.Json()["already_present"] == 0);
  CHECK(Listing(copy) == Listing(f.dir));
  std::set<std::string> models;
  json copy_stats = Kvtier({"stats", copy, "--json"}).Json();
  for (const auto& ns : copy_stats["namespaces"]) models.insert(ns["model"]);
  CHECK(models == std::set<std::string>{"model-a", "model-b"});
  CHECK(Kvtier({"verify", copy}).code == 0);

  SECTION("importing the same archive again adds nothing") {
    Run again = Kvtier({"import", copy, archive, "--json"});
    CHECK(again.code == 0);
    CHECK(again.Json()["already_present"] == 13);
    CHECK(Listing(copy) == Listing(f.dir));
  }
  SECTION("export does not overwrite a file unless told to") {
    RequireOneLineError(Kvtier({"export", f.dir, archive}), "exists");
    CHECK(Kvtier({"export", f.dir, archive, "--force"}).code == 0);
  }
  SECTION("export --namespace takes one namespace") {
    std::string one = f.tmp.sub("one.kvtar"), dir = f.tmp.sub("one");
    REQUIRE(Kvtier({"export", f.dir, one, "-n", "model-b"}).code == 0);
    REQUIRE(Kvtier({"import", dir, one}).code == 0);
    CHECK(Kvtier({"ls", dir, "--json"}).Json()["total"] == 3);
  }
}

TEST_CASE("import skips and reports damaged records and imports the rest") {
  Fixture f;
  std::string archive = f.tmp.sub("cache.kvtar"), copy = f.tmp.sub("copy");
  REQUIRE(Kvtier({"export", f.dir, archive}).code == 0);
  std::string bytes = ReadFile(archive);
  std::vector<FrameAt> records;
  for (const auto& fr : Frames(bytes))
    if (fr.type == 'R') records.push_back(fr);
  REQUIRE(records.size() == 13);
  const FrameAt& r0 = records[0];
  std::string reason;

  SECTION("a record whose body fails the frame checksum") {
    bytes[r0.offset + 24 + r0.length / 2] ^= 0x01;
    reason = "checksum mismatch";
  }
  SECTION("a record that fails its own checks inside an intact frame") {
    bytes[r0.offset + 24 + 16 + kRecordFixedHeaderBytes] ^= 0x01;  // its first token
    Reseal(&bytes);
    reason = "record frame at byte " + std::to_string(r0.offset);
  }
  SECTION("a record under another record's key") {
    const FrameAt& r1 = records[1];
    std::copy_n(bytes.begin() + r1.offset + 24, 16, bytes.begin() + r0.offset + 24);
    Reseal(&bytes);
    reason = "hash to";
  }
  WriteFile(archive, bytes);
  Run r = Kvtier({"import", copy, archive, "--json"});
  INFO(r.out << r.err);
  CHECK(r.code == 1);
  json doc = r.Json();
  CHECK(doc["records"] == 12);
  CHECK(doc["skipped_records"] == 1);
  REQUIRE(doc["skipped"].size() == 1);
  CHECK(doc["skipped"][0].get<std::string>().find(reason) != std::string::npos);
  CHECK(Kvtier({"ls", copy, "--json"}).Json()["total"] == 12);
}

TEST_CASE("import skips the records of a namespace the target store refuses") {
  Fixture f;
  std::string archive = f.tmp.sub("cache.kvtar"), target = f.tmp.sub("target");
  REQUIRE(Kvtier({"export", f.dir, archive}).code == 0);
  // The same model, revision and tokenizer with another layout: a
  // misconfigured server, which the store refuses to mix.
  Namespace other = f.a;
  other.layout.block_size = 8;
  REQUIRE(OpenRW(target)->RegisterNamespace(other).ok());
  Run r = Kvtier({"import", target, archive, "--json"});
  CHECK(r.code == 1);
  json doc = r.Json();
  CHECK(doc["records"] == 3);
  CHECK(doc["skipped_records"] == 10);
  REQUIRE(doc["skipped"].size() == 1);
  CHECK(doc["skipped"][0].get<std::string>().find("refused by the store") != std::string::npos);
  json ls = Kvtier({"ls", target, "--json"}).Json();
  CHECK(ls["total"] == 3);
  for (const auto& rec : ls["records"]) CHECK(rec["namespace"] == f.b.Fingerprint().ToHex());
}

// --- Bad input ------------------------------------------------------------------

TEST_CASE("bad input gets one line on stderr, exit 2, and changes nothing") {
  Fixture f;
  json before = Listing(f.dir);
  std::string missing = f.tmp.sub("missing");
  std::string archive = f.tmp.sub("cache.kvtar");
  REQUIRE(Kvtier({"export", f.dir, archive}).code == 0);
  std::string good = ReadFile(archive);

  SECTION("a missing store directory") {
    for (std::vector<std::string> args :
         {std::vector<std::string>{"stats", missing}, {"ls", missing}, {"tree", missing},
          {"show", missing, std::string(32, 'a')}, {"verify", missing}, {"verify", missing, "--repair"},
          {"trim", missing, "--max-bytes", "1M"}, {"compact", missing}, {"export", missing, f.tmp.sub("x")}}) {
      INFO(args[0]);
      RequireOneLineError(Kvtier(args), "does not exist");
    }
    CHECK(!std::filesystem::exists(missing));
    CHECK(!std::filesystem::exists(f.tmp.sub("x")));
  }
  SECTION("a directory that is not a store") {
    std::string plain = f.tmp.sub("plain");
    std::filesystem::create_directories(plain);
    WriteFile(plain + "/notes.txt", "hello");
    for (std::vector<std::string> args : {std::vector<std::string>{"stats", plain}, {"verify", plain, "--repair"},
                                          {"trim", plain, "--older-than", "1d"}, {"import", plain, archive}}) {
      INFO(args[0]);
      RequireOneLineError(Kvtier(args), "is not a kvtier store");
    }
    CHECK(ReadFile(plain + "/notes.txt") == "hello");
    CHECK(std::distance(std::filesystem::directory_iterator(plain), {}) == 1);
  }
  SECTION("an unknown key") {
    RequireOneLineError(Kvtier({"show", f.dir, std::string(32, '0')}), "no record with key");
    RequireOneLineError(Kvtier({"show", f.dir, "00000000"}), "no record with a key starting");
    RequireOneLineError(Kvtier({"show", f.dir, "not-hex"}), "is not a record key");
  }
  SECTION("a malformed archive") {
    std::string bad = f.tmp.sub("bad.kvtar");
    WriteFile(bad, "this is not an archive, just some text that is long enough");
    RequireOneLineError(Kvtier({"import", f.dir, bad}), "is not a kvtier archive");
    RequireOneLineError(Kvtier({"import", missing, bad}), "is not a kvtier archive");
    CHECK(!std::filesystem::exists(missing));  // not even created

    std::string damaged = good;
    damaged[24 + 5] ^= 0x40;  // the first frame's length
    WriteFile(bad, damaged);
    RequireOneLineError(Kvtier({"import", f.dir, bad}), "damaged frame header");

    std::vector<FrameAt> frames = Frames(good);
    const FrameAt& r = frames[3];
    std::string dropped = good.substr(0, r.offset) + good.substr(r.offset + 24 + r.length);
    WriteFile(bad, dropped);
    RequireOneLineError(Kvtier({"import", f.dir, bad}), "its end frame lists 13 records");

    std::string newer = good;
    newer[8] = 2;  // format version 2, header checksum redone
    SetLe(&newer, 16, XXH3_64bits(newer.data(), 16));
    WriteFile(bad, newer);
    RequireOneLineError(Kvtier({"import", f.dir, bad}), "has format version 2; this kvtier reads version 1");

    WriteFile(bad, good + "junk");
    RequireOneLineError(Kvtier({"import", f.dir, bad}), "unexpected bytes after its end frame");
    RequireOneLineError(Kvtier({"import", f.dir, f.tmp.sub("nope.kvtar")}), "does not exist");
  }
  SECTION("a truncated archive") {
    std::string cut = f.tmp.sub("cut.kvtar");
    size_t end_frame = Frames(good).back().offset;
    for (size_t size : {size_t{30}, good.size() / 2, end_frame, good.size() - 1}) {
      INFO("cut at " << size << " of " << good.size());
      WriteFile(cut, good.substr(0, size));
      Run r = Kvtier({"import", f.dir, cut});
      RequireOneLineError(r, "truncated");
      CHECK(r.err.find("nothing was imported") != std::string::npos);
    }
    RequireOneLineError(Kvtier({"import", missing, cut}), "truncated");
    CHECK(!std::filesystem::exists(missing));
  }
  SECTION("usage errors") {
    RequireOneLineError(Kvtier({}), "A subcommand is required");
    RequireOneLineError(Kvtier({"ls"}), "DIR is required");
    RequireOneLineError(Kvtier({"ls", f.dir, "--sort", "color"}), "color");
    RequireOneLineError(Kvtier({"ls", f.dir, "--bogus"}), "--bogus");
    RequireOneLineError(Kvtier({"frobnicate", f.dir}), "unknown command 'frobnicate'");
    RequireOneLineError(Kvtier({"trim", f.dir}), "exactly one of");
    RequireOneLineError(Kvtier({"trim", f.dir, "--max-bytes", "1G", "--older-than", "1d"}), "excludes");
    RequireOneLineError(Kvtier({"trim", f.dir, "--max-bytes", "lots"}), "is not a size");
    RequireOneLineError(Kvtier({"trim", f.dir, "--older-than", "soon"}), "is not a duration");
    RequireOneLineError(Kvtier({"trim", f.dir, "-n", "no-such-model"}), "no namespace matches");
    RequireOneLineError(Kvtier({"ls", f.dir, "-n", "no-such-model"}), "no namespace matches");
  }
  CHECK(Listing(f.dir) == before);
}

// --- Write commands ---------------------------------------------------------------

TEST_CASE("trim evicts to a budget, drops old records, or drops a namespace") {
  Fixture f;
  uint64_t stored = Kvtier({"stats", f.dir, "--json"}).Json()["bytes_stored"];

  SECTION("--max-bytes evicts least recently used records, leaving no orphans") {
    Run r = Kvtier({"trim", f.dir, "--max-bytes", std::to_string(stored / 2), "--json"});
    REQUIRE(r.code == 0);
    json doc = r.Json();
    CHECK(doc["bytes_stored"] <= stored / 2);
    CHECK(doc["records_deleted"] == 13 - doc["records"].get<int>());
    CHECK(doc["records_deleted"] > 0);
    CHECK(Kvtier({"verify", f.dir}).code == 0);
    // The newest chain (b) survives an LRU trim.
    CHECK(Kvtier({"show", f.dir, f.kb[0].ToHex()}).code == 0);
  }
  SECTION("--max-bytes takes units") {
    Run r = Kvtier({"trim", f.dir, "--max-bytes", "1KiB", "--json"});
    REQUIRE(r.code == 0);
    CHECK(r.Json()["bytes_stored"] <= 1024);
  }
  SECTION("--older-than drops what was not used for that long") {
    Run none = Kvtier({"trim", f.dir, "--older-than", "1h", "--json"});
    REQUIRE(none.code == 0);
    CHECK(none.Json()["records_deleted"] == 0);
    Run all = Kvtier({"trim", f.dir, "--older-than", "0s"});
    REQUIRE(all.code == 0);
    CHECK(all.out.find("deleted 13 records") != std::string::npos);
  }
  SECTION("--namespace drops a whole namespace and forgets it") {
    Run r = Kvtier({"trim", f.dir, "--namespace", "model-b@rev1", "--json"});
    REQUIRE(r.code == 0);
    CHECK(r.Json()["records_deleted"] == 3);
    json stats = Kvtier({"stats", f.dir, "--json"}).Json();
    CHECK(stats["records"] == 10);
    REQUIRE(stats["namespaces"].size() == 1);
    CHECK(stats["namespaces"][0]["model"] == "model-a");
  }
}

TEST_CASE("compact reports the store's file space before and after") {
  Fixture f;
  REQUIRE(Kvtier({"trim", f.dir, "--max-bytes", "0"}).code == 0);
  Run r = Kvtier({"compact", f.dir, "--json"});
  REQUIRE(r.code == 0);
  json doc = r.Json();
  CHECK(doc["files_bytes_before"].get<uint64_t>() > 0);
  CHECK(doc["files_bytes_after"] <= doc["files_bytes_before"]);
  Run text = Kvtier({"compact", f.dir});
  CHECK(text.out.rfind("compact: files ", 0) == 0);
}

// --- Terminal behaviour and help ------------------------------------------------------

// Runs kvtier with stderr on a new pseudo-terminal; returns what it drew.
std::string OnTerminal(const std::vector<std::string>& args) {
  int master, slave;
  REQUIRE(openpty(&master, &slave, nullptr, nullptr, nullptr) == 0);
  Run r = Kvtier(args, slave);
  CHECK(r.code == 0);
  close(slave);
  fcntl(master, F_SETFL, O_NONBLOCK);
  std::string drawn;
  char buf[4096];
  for (ssize_t n; (n = read(master, buf, sizeof(buf))) > 0;) drawn.append(buf, static_cast<size_t>(n));
  close(master);
  return drawn;
}

TEST_CASE("progress bars are drawn on a terminal and never into a file or pipe") {
  Fixture f;
  std::string drawn = OnTerminal({"verify", f.dir});
  CHECK(drawn.find("verify [") != std::string::npos);
  CHECK(drawn.find("13/13") != std::string::npos);
  CHECK(drawn.find("rec/s") != std::string::npos);
  CHECK(drawn.find("ETA") != std::string::npos);
  CHECK(OnTerminal({"export", f.dir, f.tmp.sub("a.kvtar")}).find("export [") != std::string::npos);
  CHECK(OnTerminal({"import", f.tmp.sub("copy"), f.tmp.sub("a.kvtar")}).find("import: writing [") != std::string::npos);
  CHECK(OnTerminal({"trim", f.dir, "--namespace", "model-b"}).find("trim [") != std::string::npos);
  json trimmed = Kvtier({"stats", f.dir, "--json"}).Json();
  CHECK(trimmed["records"] == 10);
  CHECK(trimmed["namespaces"].size() == 1);
  CHECK(OnTerminal({"trim", f.dir, "--max-bytes", "1K"}).find("trim [") != std::string::npos);
  CHECK(Kvtier({"stats", f.dir, "--json"}).Json()["bytes_stored"] <= 1024);
  CHECK(OnTerminal({"trim", f.dir, "--older-than", "0s"}).find("trim [") != std::string::npos);
  CHECK(Kvtier({"stats", f.dir, "--json"}).Json()["records"] == 0);
  CHECK(OnTerminal({"verify", f.tmp.sub("copy"), "--no-progress"}).empty());
  // Not a terminal: nothing but the output itself.
  Run piped = Kvtier({"verify", f.tmp.sub("copy")});
  CHECK(piped.err.empty());
  CHECK(piped.out == "verify: 13 records checked, all ok\n");
}

TEST_CASE("every command has --help") {
  for (const char* cmd : {"stats", "ls", "tree", "show", "verify", "trim", "compact", "export", "import"}) {
    INFO(cmd);
    Run r = Kvtier({cmd, "--help"});
    CHECK(r.code == 0);
    CHECK(r.out.find(std::string("kvtier ") + cmd) != std::string::npos);
    CHECK(r.out.find("--json") != std::string::npos);
  }
  Run top = Kvtier({"--help"});
  CHECK(top.code == 0);
  CHECK(top.out.find("Exit codes") != std::string::npos);
}

}  // namespace
}  // namespace kvtier
