// Corruption sweep: many random records are damaged behind the store's
// back (flipped bits, truncation, extension, a zeroed sector, records
// swapped between keys, a record of another namespace or of another layout
// under a key), then looked up by a fresh cache. Every case must be
// detected on promote (100%): the lookup stops exactly before the damaged
// block and serves the blocks before it bit-exact, the damage is counted
// (corrupt_records) and the record is removed.
//
//   KVTIER_CORRUPTION_ROUNDS=N   rounds of 48 prompts per codec (default 12)
//   KVTIER_CORRUPTION_SEED=S     replay a run (the seed is printed)
#include <catch2/catch.hpp>
#include <rocksdb/db.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <set>

#include "kvtier/cache.h"
#include "kvtier/record.h"
#include "reliability/reliability_util.h"
#include "store/record_log.h"
#include "store_test_util.h"
#include "test_util.h"

using namespace kvtier;

namespace {

constexpr size_t kBlocks = 3;    // per prompt
constexpr size_t kPrompts = 48;  // per round: one damaged block each

Namespace SweepNamespace(DType dtype) {
  BlockLayout l;
  l.num_layers = 2;
  l.num_kv_heads = 2;
  l.head_dim = 64;
  l.block_size = 8;
  l.dtype = dtype;
  return test::TestNamespace(l, "sweep-model");
}

uint64_t EnvNumber(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : fallback;
}

std::string KeyBytes(const Hash128& key) {
  uint8_t k[16];
  key.ToBytes(k);
  return std::string(reinterpret_cast<const char*>(k), 16);
}

// The store's records, reached behind its back: the records column family
// opened directly, and the record segments its locations point into. Get
// reads a record's bytes; Put appends new bytes to a segment of its own
// (through RecordLog, as the store writes) and points the key at them.
class RawRecords {
 public:
  explicit RawRecords(const std::string& dir)
      : raw_(dir), records_(raw_.family(rocksdb::kDefaultColumnFamilyName)) {
    REQUIRE(RecordLog::Open(dir + "/segments", rocksdb::FileSystem::Default(), /*read_only=*/false,
                            64ull << 20, &log_)
                .ok());
  }
  ~RawRecords() { REQUIRE(log_->Seal().ok()); }
  std::string Get(const Hash128& key) {
    std::string v;
    REQUIRE(raw_.db()->Get(rocksdb::ReadOptions(), records_, KeyBytes(key), &v).ok());
    RecordLocation at;
    REQUIRE(DecodeLocation(v, &at));
    REQUIRE(log_->Read(at, &v).ok());
    return v;
  }
  void Put(const Hash128& key, const std::string& value) {
    RecordLocation at;
    REQUIRE(log_->Append(key, value, &at).ok());
    REQUIRE(raw_.db()->Put(rocksdb::WriteOptions(), records_, KeyBytes(key), EncodeLocation(at)).ok());
  }

 private:
  test::RawDb raw_;
  rocksdb::ColumnFamilyHandle* records_;
  std::unique_ptr<RecordLog> log_;
};

enum class Damage {
  kBitFlips,
  kTruncated,
  kExtended,
  kZeroedSector,
  kSwapped,
  kForeignNamespace,
  kOtherLayout,
  kEmpty,
};
constexpr int kDamageKinds = 8;

const char* DamageName(Damage d) {
  switch (d) {
    case Damage::kBitFlips: return "flipped bits";
    case Damage::kTruncated: return "truncated";
    case Damage::kExtended: return "extended";
    case Damage::kZeroedSector: return "zeroed 512-byte sector";
    case Damage::kSwapped: return "swapped with another key's record";
    case Damage::kForeignNamespace: return "another namespace's record";
    case Damage::kOtherLayout: return "same prefix, another layout";
    case Damage::kEmpty: return "empty value";
  }
  return "?";
}

struct Tally {
  uint64_t tried = 0, detected = 0;
};

struct Codec {
  const char* name;
  DType dtype;
  CodecOptions options;
};

// One round: a store of kPrompts prompts, one damaged block in each, then a
// fresh cache looks every prompt up.
void Round(const Codec& codec, std::mt19937_64& rng, std::map<Damage, Tally>* tally,
           uint64_t* wrong_served, uint64_t* counted) {
  test::TempDir tmp;
  const std::string dir = tmp.sub("store");
  CacheOptions o;
  o.ns = SweepNamespace(codec.dtype);
  o.codec = codec.options;
  o.memory_bytes = 4 * kBlocks * o.ns.layout.block_bytes();
  o.store = dir;
  o.store_options.max_bytes = 0;
  o.log = [](std::string_view) {};
  o.store_options.log = o.log;
  std::vector<std::vector<Token>> prompts;
  for (size_t i = 0; i < kPrompts; ++i) prompts.push_back(test::Tokens(kBlocks * o.ns.layout.block_size, rng()));
  {
    std::unique_ptr<Cache> cache;
    REQUIRE(Cache::Open(o, &cache).ok());
    for (const auto& t : prompts) {
      auto blocks = test::KeyedBlocks(o.ns, t, 0, kBlocks);
      REQUIRE(cache->InsertBlocks(t, 0, test::Spans(blocks)).ok());
    }
    REQUIRE(cache->Close().ok());
  }

  // Damage one block of every prompt (swaps damage two prompts at once).
  std::vector<size_t> damaged_depth(kPrompts, kBlocks);  // kBlocks = not yet
  std::vector<Damage> kind(kPrompts);
  {
    RawRecords raw(dir);
    for (size_t i = 0; i < kPrompts; ++i) {
      if (damaged_depth[i] != kBlocks) continue;  // a swap partner already
      const size_t d = rng() % kBlocks;
      const std::vector<Hash128> h = test::Chain(o.ns, prompts[i]);
      std::string record = raw.Get(h[d]);
      Damage k = static_cast<Damage>(rng() % kDamageKinds);
      size_t partner = kPrompts;
      if (k == Damage::kSwapped) {
        for (size_t j = i + 1; j < kPrompts && partner == kPrompts; ++j)
          if (damaged_depth[j] == kBlocks) partner = j;
        if (partner == kPrompts) k = Damage::kBitFlips;  // no one left to swap with
      }
      switch (k) {
        case Damage::kBitFlips: {
          std::set<size_t> bits;  // distinct: two flips of one bit would undo each other
          for (size_t flips = 1 + rng() % 8; bits.size() < flips;) bits.insert(rng() % (record.size() * 8));
          for (size_t bit : bits) record[bit / 8] = static_cast<char>(record[bit / 8] ^ (1 << (bit % 8)));
          break;
        }
        case Damage::kTruncated:
          record.resize(rng() % record.size());
          break;
        case Damage::kExtended:
          for (size_t n = 1 + rng() % 64; n > 0; --n) record.push_back(static_cast<char>(rng()));
          break;
        case Damage::kZeroedSector: {
          const size_t at = (rng() % (record.size() / 512 + 1)) * 512;
          for (size_t b = at; b < std::min(record.size(), at + 512); ++b) record[b] = 0;
          if (at >= record.size()) record.back() ^= 1;  // a short record: damage its end
          break;
        }
        case Damage::kSwapped: {
          const size_t pd = rng() % kBlocks;
          const std::vector<Hash128> ph = test::Chain(o.ns, prompts[partner]);
          const std::string other = raw.Get(ph[pd]);
          raw.Put(ph[pd], record);
          record = other;
          damaged_depth[partner] = pd;
          kind[partner] = Damage::kSwapped;
          break;
        }
        case Damage::kForeignNamespace: {
          Namespace other = o.ns;
          other.salt = "tenant-b";  // same model, tokens and layout: another tenant
          const std::vector<Hash128> oh = test::Chain(other, prompts[i]);
          const auto bs = o.ns.layout.block_size;
          RecordIdentity id{other.layout, static_cast<uint32_t>(d), other.Fingerprint(),
                            d == 0 ? other.Fingerprint() : oh[d - 1],
                            std::span<const Token>(prompts[i]).subspan(d * bs, bs)};
          REQUIRE(EncodeRecord(id, test::KeyedPayload(other.layout, oh[d]), o.codec, &record).ok());
          break;
        }
        case Damage::kOtherLayout: {
          // The same fingerprint, parent and tokens (so the same key), but
          // the header describes another layout: a store shared by servers
          // configured differently.
          BlockLayout layout = o.ns.layout;
          layout.head_dim *= 2;
          const auto bs = o.ns.layout.block_size;
          RecordIdentity id{layout, static_cast<uint32_t>(d), o.ns.Fingerprint(),
                            d == 0 ? o.ns.Fingerprint() : h[d - 1],
                            std::span<const Token>(prompts[i]).subspan(d * bs, bs)};
          REQUIRE(EncodeRecord(id, test::Payload(layout, rng()), o.codec, &record).ok());
          break;
        }
        case Damage::kEmpty:
          record.clear();
          break;
      }
      // Damage that changes nothing a reader gets is no case: a sector that
      // was zero already, or bits zstd ignores (a few per record, see the
      // single-bit test below). Damage more until it matters.
      const std::vector<std::byte> expect = test::KeyedPayload(o.ns.layout, h[d]);
      for (;;) {
        RecordHeader hh;
        std::vector<std::byte> out;
        const bool harmless = DecodeRecord(record, &hh, &out).ok() && hh.Key() == h[d] &&
                              hh.namespace_fp == o.ns.Fingerprint() && hh.layout == o.ns.layout &&
                              out == expect;
        if (!harmless) break;
        const size_t bit = rng() % (record.size() * 8);
        record[bit / 8] = static_cast<char>(record[bit / 8] ^ (1 << (bit % 8)));
      }
      raw.Put(h[d], record);
      damaged_depth[i] = d;
      kind[i] = k;
    }
  }

  // A fresh cache (nothing in memory) promotes from the damaged store.
  std::unique_ptr<Cache> cache;
  REQUIRE(Cache::Open(o, &cache).ok());
  for (size_t i = 0; i < kPrompts; ++i) {
    const uint64_t before = cache->Stats().corrupt_records;
    Lease l = cache->Lookup(prompts[i]);
    const bool exact = test::LeaseExact(o.ns, l, prompts[i]);
    if (!exact) ++*wrong_served;
    const bool stopped_before = l.num_blocks() == damaged_depth[i];
    const bool was_counted = cache->Stats().corrupt_records == before + 1;
    const size_t served = l.num_blocks();
    l.Release();
    const std::vector<Hash128> h = test::Chain(o.ns, prompts[i]);
    std::vector<uint8_t> present;
    REQUIRE(cache->store()->Exists(std::span<const Hash128>(&h[damaged_depth[i]], 1), &present).ok());
    const bool removed = present[0] == 0;
    INFO("prompt " << i << ", damage '" << DamageName(kind[i]) << "' at block " << damaged_depth[i]
                   << ": served " << served << " blocks, counted " << was_counted
                   << ", removed " << removed);
    CHECK(exact);
    CHECK(stopped_before);
    CHECK(was_counted);
    CHECK(removed);
    Tally& t = (*tally)[kind[i]];
    ++t.tried;
    if (exact && stopped_before && was_counted && removed) ++t.detected;
  }
  *counted += cache->Stats().corrupt_records;
  REQUIRE(cache->Close().ok());
}

}  // namespace

TEST_CASE("every damaged, truncated, swapped or foreign record is detected on promote, counted and removed") {
  const uint64_t seed = EnvNumber("KVTIER_CORRUPTION_SEED", std::random_device{}());
  const uint64_t rounds = EnvNumber("KVTIER_CORRUPTION_ROUNDS", 12);
  std::printf("corruption sweep: seed %llu (KVTIER_CORRUPTION_SEED to replay)\n",
              static_cast<unsigned long long>(seed));
  INFO("seed " << seed);
  test::Watchdog watchdog("corruption sweep", static_cast<int>(120 + 30 * rounds));
  CodecOptions zstd_only;
  zstd_only.shuffle = false;
  CodecOptions raw;
  raw.min_saving = 1.0;  // never worth compressing: records stored raw
  const Codec codec = GENERATE_COPY(Codec{"f16, shuffle + zstd", DType::kF16, CodecOptions{}},
                                    Codec{"bf16, zstd", DType::kBF16, zstd_only},
                                    Codec{"int8, raw", DType::kInt8, raw});
  INFO("codec " << codec.name);
  std::mt19937_64 rng(seed ^ std::hash<std::string>{}(codec.name));
  std::map<Damage, Tally> tally;
  uint64_t wrong = 0, counted = 0;
  for (uint64_t r = 0; r < rounds; ++r) Round(codec, rng, &tally, &wrong, &counted);
  uint64_t tried = 0, detected = 0;
  std::string by_kind;
  for (const auto& [kind, t] : tally) {
    tried += t.tried;
    detected += t.detected;
    by_kind += std::string(", ") + DamageName(kind) + " " + std::to_string(t.detected) + "/" +
               std::to_string(t.tried);
  }
  CHECK(detected == tried);
  CHECK(wrong == 0);
  std::printf("corruption sweep (%s): %llu cases tried, %llu detected on promote (%.1f%%), counted "
              "and removed; %llu wrong blocks served (must be 0)%s\n",
              codec.name, static_cast<unsigned long long>(tried),
              static_cast<unsigned long long>(detected),
              tried == 0 ? 0.0 : 100.0 * static_cast<double>(detected) / static_cast<double>(tried),
              static_cast<unsigned long long>(wrong), by_kind.c_str());
  std::fflush(stdout);
}

TEST_CASE("every single-bit flip anywhere in a record is refused by the decoder or changes nothing it returns") {
  CodecOptions zstd_only;
  zstd_only.shuffle = false;
  CodecOptions raw;
  raw.min_saving = 1.0;
  const Codec codec = GENERATE_COPY(Codec{"f16, shuffle + zstd", DType::kF16, CodecOptions{}},
                                    Codec{"bf16, zstd", DType::kBF16, zstd_only},
                                    Codec{"int8, raw", DType::kInt8, raw});
  INFO("codec " << codec.name);
  const Namespace ns = SweepNamespace(codec.dtype);
  const std::vector<Token> tokens = test::Tokens(2 * ns.layout.block_size, 77);
  const std::vector<Hash128> h = test::Chain(ns, tokens);
  const std::vector<std::byte> payload = test::KeyedPayload(ns.layout, h[1]);
  RecordIdentity id{ns.layout, 1, ns.Fingerprint(), h[0],
                    std::span<const Token>(tokens).subspan(ns.layout.block_size, ns.layout.block_size)};
  std::string record;
  REQUIRE(EncodeRecord(id, payload, codec.options, &record).ok());
  uint64_t refused = 0, harmless = 0, wrong = 0;
  RecordHeader header;
  std::vector<std::byte> out;
  for (size_t bit = 0; bit < record.size() * 8; ++bit) {
    std::string damaged = record;
    damaged[bit / 8] = static_cast<char>(damaged[bit / 8] ^ (1 << (bit % 8)));
    Status s = DecodeRecord(damaged, &header, &out);
    if (s.ok() && header.Key() != h[1]) s = Status::Corruption("key");  // what a promote checks too
    if (!s.ok()) {
      ++refused;
    } else if (out == payload) {
      ++harmless;  // decoded to exactly the original bytes
    } else {
      ++wrong;
      INFO("bit " << bit << " of " << record.size() * 8);
      CHECK(false);
    }
  }
  CHECK(wrong == 0);
  std::printf("single-bit flips (%s): %llu bits of a %zu-byte record, %llu refused by the decoder, "
              "%llu decoded to the original bytes, %llu wrong payloads (must be 0)\n",
              codec.name, static_cast<unsigned long long>(record.size() * 8), record.size(),
              static_cast<unsigned long long>(refused), static_cast<unsigned long long>(harmless),
              static_cast<unsigned long long>(wrong));
  std::fflush(stdout);
}
