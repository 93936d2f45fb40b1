// The C ABI (include/kvtier/kvtier.h): every entry point, its bad
// arguments (NULL handles, wrong sizes, wrong handle types, a released
// lease used again), error ownership, and a restart through a disk store.
#include <catch2/catch.hpp>

#include <cstring>
#include <string>
#include <vector>

#include "kvtier/kvtier.h"
#include "test_util.h"

namespace {

// Owns an error out-param for one call at a time.
struct Err {
  kvtier_error* e = nullptr;
  ~Err() { kvtier_error_free(e); }
  kvtier_error** operator&() { return &e; }
  std::string msg() const { return kvtier_error_message(e); }
  kvtier_code code() const { return kvtier_error_code(e); }
};

kvtier_options SmallOptions(const char* store = nullptr) {
  kvtier_options o;
  kvtier_options_init(&o);
  o.num_layers = 2;
  o.num_kv_heads = 2;
  o.head_dim = 8;
  o.block_size = 4;
  o.dtype = KVTIER_F16;
  o.model = "capi-test-model";
  o.revision = "rev1";
  o.memory_bytes = 64 * 2 * 2 * 2 * 8 * 4 * 2;  // 64 blocks
  o.store = store;
  return o;
}

kvtier_cache* Open(const kvtier_options& o) {
  kvtier_cache* c = nullptr;
  Err err;
  INFO(err.msg());
  REQUIRE(kvtier_open(&o, &c, &err) == KVTIER_OK);
  REQUIRE(c != nullptr);
  return c;
}

std::vector<std::vector<std::byte>> Payloads(kvtier_cache* c, size_t n, uint64_t seed) {
  kvtier::BlockLayout l = kvtier::test::SmallLayout(kvtier::DType::kF16, 4);
  REQUIRE(l.block_bytes() == kvtier_block_bytes(c));
  std::vector<std::vector<std::byte>> out;
  for (size_t i = 0; i < n; ++i) out.push_back(kvtier::test::Payload(l, seed + i));
  return out;
}

std::vector<kvtier_block> Blocks(const std::vector<std::vector<std::byte>>& p) {
  std::vector<kvtier_block> b;
  for (const auto& v : p) b.push_back({v.data(), v.size()});
  return b;
}

}  // namespace

TEST_CASE("kvtier_open refuses bad options with a code and a message") {
  kvtier_cache* c = reinterpret_cast<kvtier_cache*>(0x1);
  Err err;
  SECTION("NULL options or out-pointer") {
    CHECK(kvtier_open(nullptr, &c, &err) == KVTIER_INVALID_ARGUMENT);
    CHECK(err.msg() == "options is NULL");
    CHECK(c == nullptr);
    kvtier_options o = SmallOptions();
    CHECK(kvtier_open(&o, nullptr, &err) == KVTIER_INVALID_ARGUMENT);
    CHECK(err.msg() == "cache out-pointer is NULL");
  }
  SECTION("a struct_size smaller than version 1's") {
    kvtier_options o = SmallOptions();
    o.struct_size = 8;
    CHECK(kvtier_open(&o, &c, &err) == KVTIER_INVALID_ARGUMENT);
    CHECK(err.msg().find("struct_size is 8") != std::string::npos);
  }
  SECTION("no model, a zero dimension, an unknown dtype, policy or zero threads") {
    kvtier_options o = SmallOptions();
    o.model = nullptr;
    CHECK(kvtier_open(&o, &c, &err) == KVTIER_INVALID_ARGUMENT);
    CHECK(err.msg().find("model") != std::string::npos);
    o = SmallOptions();
    o.num_layers = 0;
    CHECK(kvtier_open(&o, &c, &err) == KVTIER_INVALID_ARGUMENT);
    CHECK(err.msg().find("num_layers") != std::string::npos);
    o = SmallOptions();
    o.dtype = 99;
    CHECK(kvtier_open(&o, &c, &err) == KVTIER_INVALID_ARGUMENT);
    CHECK(err.msg().find("dtype") != std::string::npos);
    o = SmallOptions();
    o.spill_policy = 7;
    CHECK(kvtier_open(&o, &c, &err) == KVTIER_INVALID_ARGUMENT);
    CHECK(err.msg().find("spill_policy 7") != std::string::npos);
    o = SmallOptions();
    o.spill_threads = 0;
    CHECK(kvtier_open(&o, &c, &err) == KVTIER_INVALID_ARGUMENT);
    CHECK(c == nullptr);
  }
  SECTION("an error out-param may be NULL") {
    CHECK(kvtier_open(nullptr, &c, nullptr) == KVTIER_INVALID_ARGUMENT);
  }
}

TEST_CASE("a newer, larger options struct is accepted only with a zero tail") {
  struct Newer {
    kvtier_options v1;
    uint64_t future_field;
  } n;
  std::memset(&n, 0, sizeof(n));
  n.v1 = SmallOptions();
  n.v1.struct_size = sizeof(Newer);
  kvtier_cache* c = nullptr;
  Err err;
  REQUIRE(kvtier_open(&n.v1, &c, &err) == KVTIER_OK);
  CHECK(kvtier_close(c, &err) == KVTIER_OK);
  n.future_field = 1;
  CHECK(kvtier_open(&n.v1, &c, &err) == KVTIER_NOT_SUPPORTED);
  CHECK(err.msg().find("does not know") != std::string::npos);
  CHECK(c == nullptr);
}

TEST_CASE("insert, lookup and lease blocks round-trip the bytes") {
  kvtier_cache* c = Open(SmallOptions());
  std::vector<uint32_t> tokens = kvtier::test::Tokens(14, 7);  // 3 full blocks
  auto payloads = Payloads(c, 3, 100);
  auto blocks = Blocks(payloads);
  Err err;
  CHECK(kvtier_block_size(c) == 4);
  REQUIRE(kvtier_insert_blocks(c, tokens.data(), tokens.size(), 0, blocks.data(), 3, &err) ==
          KVTIER_OK);
  // An empty insert is a no-op.
  CHECK(kvtier_insert_blocks(c, tokens.data(), tokens.size(), 3, nullptr, 0, &err) == KVTIER_OK);

  kvtier_lease* lease = nullptr;
  REQUIRE(kvtier_lookup(c, tokens.data(), tokens.size(), &lease, &err) == KVTIER_OK);
  size_t matched = 0, n = 0, disk = 9;
  REQUIRE(kvtier_lease_info(lease, &matched, &n, &disk, &err) == KVTIER_OK);
  CHECK(matched == 12);
  CHECK(n == 3);
  CHECK(disk == 0);
  for (size_t i = 0; i < n; ++i) {
    kvtier_block b{};
    REQUIRE(kvtier_lease_block(lease, i, &b, &err) == KVTIER_OK);
    REQUIRE(b.size == payloads[i].size());
    CHECK(std::memcmp(b.data, payloads[i].data(), b.size) == 0);
  }
  std::vector<kvtier_block> table(3);
  REQUIRE(kvtier_lease_blocks(lease, 1, table.data(), 2, &err) == KVTIER_OK);
  for (size_t j = 0; j < 2; ++j) {
    kvtier_block b{};
    REQUIRE(kvtier_lease_block(lease, 1 + j, &b, &err) == KVTIER_OK);
    CHECK(table[j].data == b.data);
    CHECK(table[j].size == b.size);
  }
  CHECK(kvtier_lease_blocks(lease, 3, nullptr, 0, &err) == KVTIER_OK);
  CHECK(kvtier_lease_blocks(lease, 2, table.data(), 2, &err) == KVTIER_INVALID_ARGUMENT);
  CHECK(err.msg() == "blocks [2, 2 + 2) out of range: lease has 3 blocks");
  CHECK(kvtier_lease_blocks(lease, 0, table.data(), SIZE_MAX, &err) == KVTIER_INVALID_ARGUMENT);
  CHECK(kvtier_lease_blocks(lease, 0, nullptr, 1, &err) == KVTIER_INVALID_ARGUMENT);
  CHECK(kvtier_lease_blocks(nullptr, 0, table.data(), 1, &err) == KVTIER_INVALID_ARGUMENT);
  kvtier_stats st;
  std::memset(&st, 0, sizeof(st));
  st.struct_size = sizeof(st);
  REQUIRE(kvtier_stats_get(c, &st, &err) == KVTIER_OK);
  CHECK(st.inserts == 3);
  CHECK(st.pinned_blocks == 3);
  CHECK(st.memory_hits == 3);
  CHECK(kvtier_lease_release(lease, &err) == KVTIER_OK);

  // A lookup of a different prompt misses; a lookup of nothing is empty.
  std::vector<uint32_t> other = kvtier::test::Tokens(8, 8);
  REQUIRE(kvtier_lookup(c, other.data(), other.size(), &lease, &err) == KVTIER_OK);
  CHECK(kvtier_lease_info(lease, &matched, &n, nullptr, &err) == KVTIER_OK);
  CHECK(n == 0);
  CHECK(kvtier_lease_release(lease, &err) == KVTIER_OK);
  REQUIRE(kvtier_lookup(c, nullptr, 0, &lease, &err) == KVTIER_OK);
  CHECK(kvtier_lease_release(lease, &err) == KVTIER_OK);

  // Clear drops unpinned blocks.
  CHECK(kvtier_clear(c, &err) == KVTIER_OK);
  REQUIRE(kvtier_stats_get(c, &st, &err) == KVTIER_OK);
  CHECK(st.resident_blocks == 0);
  CHECK(kvtier_close(c, &err) == KVTIER_OK);
}

TEST_CASE("a disk store makes a restart warm through the C ABI") {
  kvtier::test::TempDir dir;
  std::string path = dir.sub("store");
  kvtier_options o = SmallOptions(path.c_str());
  std::vector<uint32_t> tokens = kvtier::test::Tokens(8, 3);
  std::vector<std::vector<std::byte>> payloads;
  Err err;
  {
    kvtier_cache* c = Open(o);
    payloads = Payloads(c, 2, 5);
    auto blocks = Blocks(payloads);
    REQUIRE(kvtier_insert_blocks(c, tokens.data(), 8, 0, blocks.data(), 2, &err) == KVTIER_OK);
    CHECK(kvtier_flush(c, &err) == KVTIER_OK);
    // The store is held: a second cache on it is Busy.
    kvtier_cache* second = nullptr;
    CHECK(kvtier_open(&o, &second, &err) == KVTIER_BUSY);
    CHECK_FALSE(err.msg().empty());
    CHECK(kvtier_close(c, &err) == KVTIER_OK);
  }
  kvtier_cache* c = Open(o);
  kvtier_lease* lease = nullptr;
  REQUIRE(kvtier_lookup(c, tokens.data(), 8, &lease, &err) == KVTIER_OK);
  size_t n = 0, disk = 0;
  REQUIRE(kvtier_lease_info(lease, nullptr, &n, &disk, &err) == KVTIER_OK);
  CHECK(n == 2);
  CHECK(disk == 2);
  kvtier_block b{};
  REQUIRE(kvtier_lease_block(lease, 1, &b, &err) == KVTIER_OK);
  CHECK(std::memcmp(b.data, payloads[1].data(), b.size) == 0);
  CHECK(kvtier_close(c, &err) == KVTIER_OK);
  // The lease outlives the cache.
  REQUIRE(kvtier_lease_block(lease, 0, &b, &err) == KVTIER_OK);
  CHECK(std::memcmp(b.data, payloads[0].data(), b.size) == 0);
  CHECK(kvtier_lease_release(lease, &err) == KVTIER_OK);
}

TEST_CASE("every entry point refuses NULL handles and bad arrays") {
  kvtier_cache* c = Open(SmallOptions());
  std::vector<uint32_t> tokens = kvtier::test::Tokens(8, 1);
  kvtier_lease* lease = nullptr;
  kvtier_block b{};
  kvtier_stats st;
  std::memset(&st, 0, sizeof(st));
  st.struct_size = sizeof(st);
  Err err;
  CHECK(kvtier_lookup(nullptr, tokens.data(), 8, &lease, &err) == KVTIER_INVALID_ARGUMENT);
  CHECK(err.msg() == "cache is NULL");
  CHECK(kvtier_lookup(c, tokens.data(), 8, nullptr, &err) == KVTIER_INVALID_ARGUMENT);
  CHECK(kvtier_lookup(c, nullptr, 8, &lease, &err) == KVTIER_INVALID_ARGUMENT);
  CHECK(err.msg() == "tokens is NULL but num_tokens is 8");
  CHECK(kvtier_insert_blocks(nullptr, tokens.data(), 8, 0, &b, 1, &err) == KVTIER_INVALID_ARGUMENT);
  CHECK(kvtier_insert_blocks(c, nullptr, 8, 0, &b, 1, &err) == KVTIER_INVALID_ARGUMENT);
  CHECK(kvtier_insert_blocks(c, tokens.data(), 8, 0, nullptr, 1, &err) == KVTIER_INVALID_ARGUMENT);
  CHECK(err.msg() == "blocks is NULL but num_blocks is 1");
  b = {nullptr, 16};
  CHECK(kvtier_insert_blocks(c, tokens.data(), 8, 0, &b, 1, &err) == KVTIER_INVALID_ARGUMENT);
  CHECK(err.msg() == "blocks[0].data is NULL");
  CHECK(kvtier_flush(nullptr, &err) == KVTIER_INVALID_ARGUMENT);
  CHECK(kvtier_clear(nullptr, &err) == KVTIER_INVALID_ARGUMENT);
  CHECK(kvtier_stats_get(nullptr, &st, &err) == KVTIER_INVALID_ARGUMENT);
  CHECK(kvtier_stats_get(c, nullptr, &err) == KVTIER_INVALID_ARGUMENT);
  CHECK(kvtier_lease_info(nullptr, nullptr, nullptr, nullptr, &err) == KVTIER_INVALID_ARGUMENT);
  CHECK(err.msg() == "lease is NULL");
  CHECK(kvtier_lease_block(nullptr, 0, &b, &err) == KVTIER_INVALID_ARGUMENT);
  CHECK(kvtier_block_size(nullptr) == 0);
  CHECK(kvtier_block_bytes(nullptr) == 0);
  CHECK(kvtier_close(nullptr, &err) == KVTIER_OK);
  CHECK(kvtier_lease_release(nullptr, &err) == KVTIER_OK);

  // A handle of the wrong type is named as such.
  CHECK(kvtier_lease_info(reinterpret_cast<kvtier_lease*>(c), nullptr, nullptr, nullptr, &err) ==
        KVTIER_INVALID_ARGUMENT);
  CHECK(err.msg() == "not a kvtier_lease handle");

  REQUIRE(kvtier_lookup(c, tokens.data(), 8, &lease, &err) == KVTIER_OK);
  CHECK(kvtier_lease_block(lease, 0, &b, &err) == KVTIER_INVALID_ARGUMENT);
  CHECK(err.msg() == "block index 0 out of range: lease has 0 blocks");
  CHECK(kvtier_lease_block(lease, 0, nullptr, &err) == KVTIER_INVALID_ARGUMENT);
  CHECK(kvtier_lease_release(lease, &err) == KVTIER_OK);
  CHECK(kvtier_close(c, &err) == KVTIER_OK);
}

TEST_CASE("wrong payload sizes and uncovered blocks are refused, nothing cached") {
  kvtier_cache* c = Open(SmallOptions());
  std::vector<uint32_t> tokens = kvtier::test::Tokens(8, 2);
  auto payloads = Payloads(c, 2, 1);
  auto blocks = Blocks(payloads);
  Err err;
  blocks[0].size -= 1;
  CHECK(kvtier_insert_blocks(c, tokens.data(), 8, 0, blocks.data(), 1, &err) ==
        KVTIER_INVALID_ARGUMENT);
  CHECK(err.msg().find(std::to_string(blocks[0].size)) != std::string::npos);
  blocks = Blocks(payloads);
  // Block 2 needs 12 tokens.
  CHECK(kvtier_insert_blocks(c, tokens.data(), 8, 2, blocks.data(), 1, &err) ==
        KVTIER_INVALID_ARGUMENT);
  kvtier_stats st;
  std::memset(&st, 0, sizeof(st));
  st.struct_size = sizeof(st);
  REQUIRE(kvtier_stats_get(c, &st, &err) == KVTIER_OK);
  CHECK(st.inserts == 0);
  // An absurd block count fails inside the library: no exception escapes.
  CHECK(kvtier_insert_blocks(c, tokens.data(), 8, 0, blocks.data(), SIZE_MAX / 4, &err) ==
        KVTIER_INTERNAL);
  CHECK(err.msg().find("unexpected exception") == 0);
  CHECK(kvtier_close(c, &err) == KVTIER_OK);
}

TEST_CASE("an insert with every resident block pinned is Full") {
  kvtier_options o = SmallOptions();
  o.memory_bytes = 2 * 2 * 2 * 2 * 8 * 4 * 2;  // 2 blocks
  kvtier_cache* c = Open(o);
  std::vector<uint32_t> tokens = kvtier::test::Tokens(12, 4);
  auto payloads = Payloads(c, 3, 9);
  auto blocks = Blocks(payloads);
  Err err;
  REQUIRE(kvtier_insert_blocks(c, tokens.data(), 12, 0, blocks.data(), 2, &err) == KVTIER_OK);
  kvtier_lease* lease = nullptr;
  REQUIRE(kvtier_lookup(c, tokens.data(), 12, &lease, &err) == KVTIER_OK);
  CHECK(kvtier_insert_blocks(c, tokens.data(), 12, 2, &blocks[2], 1, &err) == KVTIER_FULL);
  CHECK(err.code() == KVTIER_FULL);
  CHECK(kvtier_lease_release(lease, &err) == KVTIER_OK);
  CHECK(kvtier_insert_blocks(c, tokens.data(), 12, 2, &blocks[2], 1, &err) == KVTIER_OK);
  CHECK(kvtier_close(c, &err) == KVTIER_OK);
}

TEST_CASE("stats fill only the caller's struct_size bytes") {
  kvtier_cache* c = Open(SmallOptions());
  Err err;
  kvtier_stats st;
  std::memset(&st, 0xab, sizeof(st));
  st.struct_size = 16;  // header + lookups: an old caller
  REQUIRE(kvtier_stats_get(c, &st, &err) == KVTIER_OK);
  CHECK(st.struct_size == 16);
  CHECK(st.lookups == 0);
  CHECK(st.lookup_blocks == 0xababababababababull);  // untouched
  st.struct_size = 8;
  CHECK(kvtier_stats_get(c, &st, &err) == KVTIER_INVALID_ARGUMENT);
  CHECK(err.msg() == "stats.struct_size is 8, at least 16 expected");
  CHECK(kvtier_close(c, &err) == KVTIER_OK);
}

TEST_CASE("a released lease used again is detected in checked builds") {
  if (!kvtier_lease_checks_enabled()) {
    WARN("lease checks are off in this build (Release): not tested");
    return;
  }
  kvtier_cache* c = Open(SmallOptions());
  std::vector<uint32_t> tokens = kvtier::test::Tokens(8, 1);
  kvtier_lease* lease = nullptr;
  Err err;
  REQUIRE(kvtier_lookup(c, tokens.data(), 8, &lease, &err) == KVTIER_OK);
  REQUIRE(kvtier_lease_release(lease, &err) == KVTIER_OK);
  size_t n = 0;
  kvtier_block b{};
  CHECK(kvtier_lease_info(lease, nullptr, &n, nullptr, &err) == KVTIER_INVALID_ARGUMENT);
  CHECK(err.msg() == "lease was already released");
  CHECK(kvtier_lease_block(lease, 0, &b, &err) == KVTIER_INVALID_ARGUMENT);
  CHECK(kvtier_lease_blocks(lease, 0, &b, 0, &err) == KVTIER_INVALID_ARGUMENT);
  CHECK(kvtier_lease_release(lease, &err) == KVTIER_INVALID_ARGUMENT);
  CHECK(err.msg() == "lease was already released");
  CHECK(kvtier_close(c, &err) == KVTIER_OK);
}

TEST_CASE("errors carry codes, messages and names, and a previous error is freed") {
  Err err;
  CHECK(kvtier_flush(nullptr, &err) == KVTIER_INVALID_ARGUMENT);
  kvtier_error* first = err.e;
  CHECK(kvtier_clear(nullptr, &err) == KVTIER_INVALID_ARGUMENT);  // frees `first`
  CHECK(err.e != nullptr);
  (void)first;
  CHECK(err.code() == KVTIER_INVALID_ARGUMENT);
  CHECK(kvtier_error_code(nullptr) == KVTIER_OK);
  CHECK(std::string(kvtier_error_message(nullptr)).empty());
  CHECK(std::string(kvtier_code_name(KVTIER_OK)) == "OK");
  CHECK(std::string(kvtier_code_name(KVTIER_BUSY)) == "Busy");
  CHECK(std::string(kvtier_code_name(KVTIER_INTERNAL)) == "Internal");
  CHECK(std::string(kvtier_code_name(static_cast<kvtier_code>(42))) == "Unknown");
  CHECK(kvtier_abi_version() == KVTIER_ABI_VERSION);
  kvtier_options_init(nullptr);
}
