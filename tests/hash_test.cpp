#include <catch2/catch.hpp>

#include "kvtier/hash.h"
#include "kvtier/layout.h"
#include "test_util.h"

using namespace kvtier;

TEST_CASE("a prefix hash chain matches fixed vectors across builds and machines") {
  // Pinned values: if these change, every store on disk becomes unreadable.
  // h0 was cross-checked with `xxhsum -H2` over 16 zero bytes + LE u32 1..4.
  Hash128 seed{0, 0};
  std::vector<uint32_t> tokens = {1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<Hash128> h;
  PrefixHashes(seed, tokens, 4, &h);
  REQUIRE(h.size() == 2);
  const std::string h0 = h[0].ToHex();
  const std::string h1 = h[1].ToHex();
  INFO("h0=" << h0 << " h1=" << h1);
  CHECK(h0 == "4e7b4f6b8cadfb2a1b1a20c2457494c4");
  CHECK(h1 == "bad84e898fec8dace6ba4906880b0aa0");
}

TEST_CASE("each block hash depends on the whole path before it") {
  Hash128 seed{1, 2};
  auto a = test::Tokens(8, 1);
  auto b = a;
  b[0] ^= 1;  // differ only in block 0
  std::vector<Hash128> ha, hb;
  PrefixHashes(seed, a, 4, &ha);
  PrefixHashes(seed, b, 4, &hb);
  CHECK(ha[0] != hb[0]);
  CHECK(ha[1] != hb[1]);  // same block-1 tokens, other parent
}

TEST_CASE("a partial trailing block gets no hash") {
  std::vector<Hash128> h;
  PrefixHashes(Hash128{}, test::Tokens(11, 3), 4, &h);
  CHECK(h.size() == 2);
}

TEST_CASE("blocks larger than the stack buffer hash deterministically") {
  auto t = test::Tokens(300, 5);
  Hash128 a = ChainHash(Hash128{3, 4}, t);
  Hash128 b = ChainHash(Hash128{3, 4}, t);
  CHECK(a == b);
  t[299] ^= 1;
  CHECK(ChainHash(Hash128{3, 4}, t) != a);
}

TEST_CASE("hashes round-trip through hex and canonical bytes") {
  Hash128 h{0x0123456789abcdefull, 0xfedcba9876543210ull};
  CHECK(h.ToHex() == "fedcba98765432100123456789abcdef");
  Hash128 back;
  REQUIRE(Hash128::FromHex(h.ToHex(), &back));
  CHECK(back == h);
  CHECK(Hash128::FromHex("FEDCBA98765432100123456789ABCDEF", &back));
  CHECK(back == h);
  CHECK_FALSE(Hash128::FromHex("xyz", &back));
  CHECK_FALSE(Hash128::FromHex(std::string(32, 'g'), &back));
  uint8_t bytes[16];
  h.ToBytes(bytes);
  CHECK(Hash128::FromBytes(bytes) == h);
}

TEST_CASE("namespace fingerprints separate models, revisions, shards and salts") {
  Namespace base = test::TestNamespace(test::SmallLayout());
  const Hash128 fp = base.Fingerprint();
  CHECK(base.Fingerprint() == fp);  // deterministic
  auto differs = [&](auto mutate) {
    Namespace n = base;
    mutate(n);
    return n.Fingerprint() != fp;
  };
  CHECK(differs([](Namespace& n) { n.model = "other"; }));
  CHECK(differs([](Namespace& n) { n.revision = "rev2"; }));
  CHECK(differs([](Namespace& n) { n.tokenizer = "tok2"; }));
  CHECK(differs([](Namespace& n) { n.tp_size = 2; }));
  CHECK(differs([](Namespace& n) { n.tp_rank = 1; n.tp_size = 2; }));
  CHECK(differs([](Namespace& n) { n.salt = "lora-a"; }));
  CHECK(differs([](Namespace& n) { n.layout.dtype = DType::kBF16; }));
  CHECK(differs([](Namespace& n) { n.layout.block_size = 8; }));
  // Length prefixes: moving a character between fields changes the hash.
  Namespace a = base, b = base;
  a.model = "ab"; a.revision = "c";
  b.model = "a"; b.revision = "bc";
  CHECK(a.Fingerprint() != b.Fingerprint());
}

TEST_CASE("layouts and namespaces reject bad values with a clear message") {
  BlockLayout l = test::SmallLayout();
  CHECK(l.Validate().ok());
  CHECK(l.block_bytes() == 2 * 2 * 4 * 2 * 8 * 2);
  l.num_layers = 0;
  Status s = l.Validate();
  CHECK(s.IsInvalidArgument());
  CHECK(s.message().find("num_layers") != std::string::npos);
  l = test::SmallLayout();
  l.dtype = static_cast<DType>(99);
  CHECK(l.Validate().IsInvalidArgument());
  l = test::SmallLayout();
  l.num_layers = 1u << 20;
  l.head_dim = 1u << 20;
  CHECK(l.Validate().message().find("256 MiB") != std::string::npos);
  Namespace ns = test::TestNamespace(test::SmallLayout());
  ns.model.clear();
  CHECK(ns.Validate().message().find("model") != std::string::npos);
  ns = test::TestNamespace(test::SmallLayout());
  ns.tp_rank = 2;
  ns.tp_size = 2;
  CHECK(ns.Validate().IsInvalidArgument());
}

TEST_CASE("dtype names round-trip") {
  for (DType d : {DType::kF32, DType::kF16, DType::kBF16, DType::kInt8, DType::kFP8E4M3,
                  DType::kFP8E5M2}) {
    DType back;
    REQUIRE(ParseDType(DTypeName(d), &back));
    CHECK(back == d);
  }
  DType x;
  CHECK_FALSE(ParseDType("f64", &x));
}
