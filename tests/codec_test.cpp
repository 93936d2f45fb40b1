// Tests of the record codec: the byte-shuffle filter, EncodeRecord,
// ParseRecordHeader, DecodeRecord and DecodeRecordInto.
#include <xxhash.h>
#include <zstd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "codec/shuffle.h"
#include "kvtier/record.h"
#include "test_util.h"

using namespace kvtier;

namespace {

constexpr size_t kHeader = kRecordFixedHeaderBytes;

// A layout of exactly 1 MiB for 2-byte dtypes.
BlockLayout MiBLayout(DType dtype) {
  BlockLayout l;
  l.num_layers = 4;
  l.num_kv_heads = 8;
  l.head_dim = 128;
  l.block_size = 64;
  l.dtype = dtype;
  return l;
}

// Odd dimensions, so element counts are not multiples of the SIMD width.
BlockLayout OddLayout(DType dtype) {
  BlockLayout l;
  l.num_layers = 1;
  l.num_kv_heads = 1;
  l.head_dim = 3;
  l.block_size = 5;
  l.dtype = dtype;
  return l;
}

// A layout big enough to compress (4 KiB for f16), small enough to damage
// every byte of.
BlockLayout MediumLayout(DType dtype = DType::kF16) {
  BlockLayout l = test::SmallLayout(dtype, 16);
  l.head_dim = 16;
  return l;
}

struct Encoded {
  RecordIdentity id;
  std::vector<Token> tokens;
  std::vector<std::byte> payload;
  std::string record;
};

Encoded Encode(const BlockLayout& layout, uint64_t seed, const CodecOptions& options = {},
               uint32_t depth = 3) {
  Encoded e;
  e.tokens = test::Tokens(layout.block_size, seed);
  e.payload = test::Payload(layout, seed);
  e.id.layout = layout;
  e.id.depth = depth;
  e.id.namespace_fp = test::TestNamespace(layout).Fingerprint();
  e.id.parent = Hash128{0x1111 + seed, 0x2222 + seed};
  e.id.tokens = e.tokens;
  Status s = EncodeRecord(e.id, e.payload, options, &e.record);
  REQUIRE(s.ok());
  return e;
}

std::vector<std::byte> RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> out(n);
  for (auto& b : out) b = static_cast<std::byte>(rng());
  return out;
}

template <typename T>
void Put(std::string* record, size_t offset, T value) {
  std::memcpy(record->data() + offset, &value, sizeof(T));
}

template <typename T>
T Get(const std::string& record, size_t offset) {
  T v;
  std::memcpy(&v, record.data() + offset, sizeof(T));
  return v;
}

// Recomputes the header checksum after a test edits header fields, so the
// edit reaches the checks behind the checksum.
void Reseal(std::string* record) {
  const size_t token_bytes = 4 * size_t{Get<uint32_t>(*record, 24)};
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  XXH3_64bits_update(state, record->data(), 88);
  XXH3_64bits_update(state, record->data() + kHeader, token_bytes);
  Put<uint64_t>(record, 88, XXH3_64bits_digest(state));
  XXH3_freeState(state);
}

bool Contains(const Status& s, const std::string& text) {
  return s.message().find(text) != std::string::npos;
}

// Decodes `record`, expecting Corruption with a "record: " message.
void RequireCorruption(const std::string& record, const std::string& expected_text) {
  RecordHeader header;
  std::vector<std::byte> payload;
  Status s = DecodeRecord(record, &header, &payload);
  INFO(s.ToString());
  CHECK(s.IsCorruption());
  CHECK(s.message().rfind("record: ", 0) == 0);
  CHECK(Contains(s, expected_text));
}

uint64_t TestSeed() {
  if (const char* env = std::getenv("KVTIER_TEST_SEED")) return std::strtoull(env, nullptr, 10);
  return std::random_device{}();
}

}  // namespace

TEST_CASE("the shuffle filter is Blosc's byte transpose and unshuffle inverts it") {
  const size_t k = GENERATE(1, 2, 3, 4, 8);
  for (size_t size = 0; size <= 300; ++size) {
    INFO("element size " << k << ", " << size << " bytes");
    auto raw = RandomBytes(size, size * 31 + k);
    std::vector<std::byte> shuffled(size), back(size), expected(size);
    const size_t n = size / k;
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < k; ++j) expected[j * n + i] = raw[i * k + j];
    for (size_t t = n * k; t < size; ++t) expected[t] = raw[t];  // leftover bytes stay
    codec::ShuffleBytes(k, raw, shuffled);
    REQUIRE(shuffled == expected);
    codec::UnshuffleBytes(k, shuffled, back);
    REQUIRE(back == raw);
  }
}

TEST_CASE("records round-trip bit-exact for every dtype, with and without shuffle") {
  const DType dtype = GENERATE(DType::kF32, DType::kF16, DType::kBF16, DType::kInt8,
                               DType::kFP8E4M3, DType::kFP8E5M2);
  const bool shuffle = GENERATE(true, false);
  const BlockLayout layout = GENERATE_COPY(test::SmallLayout(dtype, 1), test::SmallLayout(dtype, 16),
                                           OddLayout(dtype), MiBLayout(dtype));
  INFO(layout.ToString() << (shuffle ? " shuffled" : " unshuffled"));
  CodecOptions options;
  options.shuffle = shuffle;
  Encoded e = Encode(layout, 7, options);

  RecordHeader header;
  std::vector<std::byte> payload;
  REQUIRE(DecodeRecord(e.record, &header, &payload).ok());
  CHECK(payload == e.payload);
  if (header.compressed()) {
    CHECK(header.shuffled() == (shuffle && layout.element_size() > 1));
  } else {
    CHECK(header.flags == 0);
  }
  if (layout == MiBLayout(dtype)) CHECK(header.compressed());  // real-looking data compresses

  std::vector<std::byte> into(header.raw_size);
  REQUIRE(DecodeRecordInto(e.record, header, into).ok());
  CHECK(into == e.payload);
}

TEST_CASE("an incompressible payload is stored raw and round-trips") {
  const DType dtype = GENERATE(DType::kF32, DType::kBF16, DType::kInt8);
  const BlockLayout layout = MediumLayout(dtype);
  auto payload = RandomBytes(layout.block_bytes(), 99);
  auto tokens = test::Tokens(layout.block_size, 1);
  RecordIdentity id{layout, 0, Hash128{1, 2}, Hash128{1, 2}, tokens};
  std::string record;
  REQUIRE(EncodeRecord(id, payload, CodecOptions{}, &record).ok());
  RecordHeader header;
  std::vector<std::byte> back;
  REQUIRE(DecodeRecord(record, &header, &back).ok());
  CHECK(header.flags == 0);
  CHECK(header.body_size == header.raw_size);
  CHECK(record.size() == kHeader + 4 * layout.block_size + layout.block_bytes());
  CHECK(back == payload);
}

TEST_CASE("real-looking payloads compress, and shuffle makes f16 and bf16 smaller") {
  const DType dtype = GENERATE(DType::kF16, DType::kBF16);
  // 1 MiB, and 64 KiB: smaller than one zstd block, where the byte planes
  // only compress apart if each plane ends a zstd block.
  const uint32_t block_size = GENERATE(64u, 4u);
  BlockLayout layout = MiBLayout(dtype);
  layout.block_size = block_size;
  CodecOptions plain;
  plain.shuffle = false;
  Encoded shuffled = Encode(layout, 11);
  Encoded unshuffled = Encode(layout, 11, plain);
  INFO(layout.ToString() << ": raw " << layout.block_bytes() << ", unshuffled "
                         << unshuffled.record.size() << ", shuffled " << shuffled.record.size());
  RecordHeader a, b;
  REQUIRE(ParseRecordHeader(shuffled.record, &a).ok());
  REQUIRE(ParseRecordHeader(unshuffled.record, &b).ok());
  CHECK(a.flags == (kRecordShuffled | kRecordCompressed));
  CHECK(b.flags == kRecordCompressed);
  CHECK(b.body_size < b.raw_size);
  CHECK(a.body_size * 105 < b.body_size * 100);  // measured: 7% (f16) and 12-13% (bf16) smaller
}

TEST_CASE("a compressed body is one zstd frame that states its content size") {
  const bool shuffle = GENERATE(true, false);
  CodecOptions options;
  options.shuffle = shuffle;
  Encoded e = Encode(MiBLayout(DType::kBF16), 12, options);
  RecordHeader header;
  REQUIRE(ParseRecordHeader(e.record, &header).ok());
  REQUIRE(header.compressed());
  const char* body = e.record.data() + kHeader + 4 * header.tokens.size();
  CHECK(ZSTD_getFrameContentSize(body, header.body_size) == header.raw_size);
  CHECK(ZSTD_findFrameCompressedSize(body, header.body_size) == header.body_size);
}

TEST_CASE("parsed header fields equal what was encoded") {
  const BlockLayout layout = MediumLayout(DType::kBF16);
  Encoded e = Encode(layout, 5, CodecOptions{}, 42);
  RecordHeader header;
  header.tokens.assign(999, 7);  // a reused header: stale contents are replaced
  REQUIRE(ParseRecordHeader(e.record, &header).ok());
  CHECK(header.version == kRecordFormatVersion);
  CHECK(header.layout == layout);
  CHECK(header.depth == 42);
  CHECK(header.namespace_fp == e.id.namespace_fp);
  CHECK(header.parent == e.id.parent);
  CHECK(header.tokens == e.tokens);
  CHECK(header.raw_size == layout.block_bytes());
  CHECK(header.body_size == e.record.size() - kHeader - 4 * layout.block_size);
  CHECK(header.record_size() == e.record.size());
  CHECK(header.payload_checksum == XXH3_64bits(e.payload.data(), e.payload.size()));
  CHECK(e.record.compare(0, 4, "KVTR") == 0);
  CHECK(Get<uint16_t>(e.record, 4) == 1);
}

TEST_CASE("a record's key is the chain hash of its parent and tokens") {
  Encoded e = Encode(test::SmallLayout(), 3);
  RecordHeader header;
  REQUIRE(ParseRecordHeader(e.record, &header).ok());
  CHECK(header.Key() == ChainHash(e.id.parent, e.tokens));
  header.tokens[0] ^= 1;
  CHECK(header.Key() != ChainHash(e.id.parent, e.tokens));
}

TEST_CASE("an output string and header reused across records hold only the last one") {
  std::string record;
  RecordHeader header;
  std::vector<std::byte> payload;
  for (uint32_t bs : {16u, 1u, 4u}) {
    const BlockLayout layout = test::SmallLayout(DType::kF16, bs);
    auto tokens = test::Tokens(bs, bs);
    auto data = test::Payload(layout, bs);
    RecordIdentity id{layout, bs, Hash128{bs, 0}, Hash128{0, bs}, tokens};
    REQUIRE(EncodeRecord(id, data, CodecOptions{}, &record).ok());
    REQUIRE(DecodeRecord(record, &header, &payload).ok());
    CHECK(header.tokens == tokens);
    CHECK(payload == data);
  }
}

TEST_CASE("a truncated record is Corruption at every length") {
  Encoded e = Encode(MediumLayout(), 2);
  const size_t prefix = kHeader + 4 * 16;
  const size_t full = e.record.size();
  REQUIRE(full > prefix + 1);
  for (size_t len : {size_t{0}, size_t{10}, size_t{95}, prefix - 1, full - 1}) {
    INFO("cut at " << len << " of " << full);
    RecordHeader header;
    Status s = ParseRecordHeader(std::string_view(e.record).substr(0, len), &header);
    CHECK(s.IsCorruption());
    CHECK(Contains(s, std::to_string(len)));
  }
  RecordHeader h;
  CHECK(Contains(ParseRecordHeader(std::string_view(e.record).substr(0, 95), &h),
                 "shorter than the 96-byte header"));
  CHECK(Contains(ParseRecordHeader(std::string_view(e.record).substr(0, prefix - 1), &h),
                 "cannot hold the header and 16 token ids"));
  Status cut = ParseRecordHeader(std::string_view(e.record).substr(0, full - 1), &h);
  CHECK(Contains(cut, "truncated: " + std::to_string(full - 1) + " bytes, header says " +
                          std::to_string(full)));
  for (size_t len = 0; len < full; ++len) {
    INFO("cut at " << len);
    RecordHeader header;
    std::vector<std::byte> payload;
    REQUIRE(DecodeRecord(std::string_view(e.record).substr(0, len), &header, &payload)
                .IsCorruption());
  }
}

TEST_CASE("trailing bytes after a record are Corruption naming both sizes") {
  Encoded e = Encode(MediumLayout(), 2);
  const size_t full = e.record.size();
  std::string longer = e.record + "xyz";
  RequireCorruption(longer, "3 trailing bytes: record is " + std::to_string(full + 3) +
                                " bytes, header says " + std::to_string(full));
}

TEST_CASE("a bad magic is Corruption") {
  Encoded e = Encode(test::SmallLayout(), 1);
  e.record[3] = 'X';
  RequireCorruption(e.record, "bad magic 4b565458");
}

TEST_CASE("version 0 is Corruption and a newer version is NotSupported before any checksum") {
  Encoded e = Encode(test::SmallLayout(), 1);
  std::string v0 = e.record;
  Put<uint16_t>(&v0, 4, 0);
  RequireCorruption(v0, "format version 0");

  std::string v2 = e.record;
  Put<uint16_t>(&v2, 4, 2);  // not resealed: a v2 header may be laid out differently
  RecordHeader header;
  Status s = ParseRecordHeader(v2, &header);
  CHECK(s.IsNotSupported());
  CHECK(s.message() == "record: format version 2, this build reads up to 1");
  std::vector<std::byte> payload;
  CHECK(DecodeRecord(v2, &header, &payload).IsNotSupported());
}

TEST_CASE("a flipped bit anywhere in the header or token ids is detected") {
  const bool compressed = GENERATE(true, false);
  const BlockLayout layout = MediumLayout();
  Encoded e = compressed ? Encode(layout, 4) : Encoded{};
  if (!compressed) {
    e.tokens = test::Tokens(layout.block_size, 4);
    e.payload = RandomBytes(layout.block_bytes(), 4);
    RecordIdentity id{layout, 1, Hash128{5, 6}, Hash128{7, 8}, e.tokens};
    REQUIRE(EncodeRecord(id, e.payload, CodecOptions{}, &e.record).ok());
  }
  RecordHeader header;
  REQUIRE(ParseRecordHeader(e.record, &header).ok());
  REQUIRE(header.compressed() == compressed);
  const size_t prefix = kHeader + 4 * layout.block_size;
  for (size_t pos = 0; pos < prefix; ++pos) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string damaged = e.record;
      damaged[pos] = static_cast<char>(damaged[pos] ^ (1 << bit));
      std::vector<std::byte> payload;
      Status s = DecodeRecord(damaged, &header, &payload);
      INFO("byte " << pos << " bit " << bit << ": " << s.ToString());
      REQUIRE_FALSE(s.ok());
      if (pos == 4 || pos == 5) {
        // A version field turned into a newer version is indistinguishable
        // from a newer record.
        REQUIRE((s.IsCorruption() || s.IsNotSupported()));
      } else {
        REQUIRE(s.IsCorruption());
      }
      REQUIRE(s.message().rfind("record: ", 0) == 0);
    }
  }
}

TEST_CASE("a damaged body is Corruption, compressed or raw") {
  const bool compressed = GENERATE(true, false);
  const BlockLayout layout = MediumLayout();
  std::string record;
  std::vector<std::byte> original =
      compressed ? test::Payload(layout, 8) : RandomBytes(layout.block_bytes(), 8);
  auto tokens = test::Tokens(layout.block_size, 8);
  RecordIdentity id{layout, 2, Hash128{1, 1}, Hash128{2, 2}, tokens};
  REQUIRE(EncodeRecord(id, original, CodecOptions{}, &record).ok());
  RecordHeader header;
  REQUIRE(ParseRecordHeader(record, &header).ok());
  REQUIRE(header.compressed() == compressed);
  const size_t prefix = kHeader + 4 * layout.block_size;

  // One flipped bit in the middle of the body.
  std::string damaged = record;
  damaged[prefix + header.body_size / 2] ^= 0x10;
  RequireCorruption(damaged, compressed ? "record: " : "payload checksum mismatch");

  // Every bit of the body. zstd ignores a few bits of a frame (an unused
  // frame-header flag, padding in entropy-table headers), so a flip there
  // decodes to the exact original bytes; that is harmless, because the
  // payload checksum proves the result. Any other flip must be Corruption.
  size_t flips = 0;
  size_t harmless = 0;
  for (size_t pos = prefix; pos < record.size(); ++pos) {
    for (int bit = 0; bit < 8; ++bit) {
      damaged = record;
      damaged[pos] = static_cast<char>(damaged[pos] ^ (1 << bit));
      REQUIRE(ParseRecordHeader(damaged, &header).ok());  // the header does not cover the body
      std::vector<std::byte> payload;
      Status s = DecodeRecord(damaged, &header, &payload);
      INFO("byte " << pos << " bit " << bit << ": " << s.ToString());
      ++flips;
      if (s.ok()) {
        REQUIRE(payload == original);
        ++harmless;
      } else {
        REQUIRE(s.IsCorruption());
        REQUIRE(s.message().rfind("record: ", 0) == 0);
      }
    }
  }
  INFO(harmless << " of " << flips << " flipped body bits decoded to the original bytes");
  if (compressed) {
    CHECK(harmless * 1000 < flips);  // measured: 7 of 28984
  } else {
    CHECK(harmless == 0);
  }
}

TEST_CASE("header fields that pass the checksum but disagree are Corruption") {
  Encoded e = Encode(MediumLayout(), 6);
  RecordHeader parsed;
  REQUIRE(ParseRecordHeader(e.record, &parsed).ok());
  REQUIRE(parsed.compressed());
  REQUIRE(parsed.shuffled());
  std::string r = e.record;

  SECTION("a raw size that does not match the layout") {
    Put<uint64_t>(&r, 64, 4097);
    Reseal(&r);
    RequireCorruption(r, "raw size 4097 does not match layout 2x2x16 bs16 f16 (4096 bytes)");
  }
  SECTION("unknown flag bits") {
    Put<uint16_t>(&r, 6, kRecordCompressed | 0x10);
    Reseal(&r);
    RequireCorruption(r, "unknown flag bits 0x0010");
  }
  SECTION("nonzero reserved bytes") {
    r[10] = 1;
    Reseal(&r);
    RequireCorruption(r, "reserved header bytes are not zero");
  }
  SECTION("an unknown dtype") {
    r[8] = 42;
    Reseal(&r);
    RequireCorruption(r, "unknown dtype code 42");
  }
  SECTION("an invalid layout") {
    Put<uint32_t>(&r, 16, 0);
    Reseal(&r);
    RequireCorruption(r, "num_kv_heads");
  }
  SECTION("a compressed body flagged as raw") {
    Put<uint16_t>(&r, 6, 0);
    Reseal(&r);
    RequireCorruption(r, "uncompressed body size " + std::to_string(parsed.body_size) +
                             " differs from the raw size 4096");
  }
  SECTION("a body size that disagrees with the record length") {
    Put<uint64_t>(&r, 72, parsed.body_size + 1);
    Reseal(&r);
    RequireCorruption(r, "truncated");
  }
  SECTION("a layout whose size differs from the zstd frame's") {
    Put<uint32_t>(&r, 12, 1);        // one layer: 2048 bytes
    Put<uint64_t>(&r, 64, 2048);
    Reseal(&r);
    RequireCorruption(r, "zstd frame holds 4096 bytes, header says 2048");
  }
  SECTION("a wrong payload checksum") {
    Put<uint64_t>(&r, 80, parsed.payload_checksum ^ 1);
    Reseal(&r);
    RequireCorruption(r, "payload checksum mismatch");
  }
  SECTION("a shuffled body flagged as unshuffled") {
    Put<uint16_t>(&r, 6, kRecordCompressed);
    Reseal(&r);
    RequireCorruption(r, "payload checksum mismatch");
  }
  SECTION("a body that is not a zstd frame") {
    std::memset(r.data() + kHeader + 64, 0, 8);
    RequireCorruption(r, "not a zstd frame");
  }
}

TEST_CASE("encoding rejects wrong sizes with InvalidArgument naming them") {
  const BlockLayout layout = test::SmallLayout(DType::kF16, 4);  // 512 bytes
  auto tokens = test::Tokens(4, 1);
  auto payload = test::Payload(layout, 1);
  std::string out;

  std::vector<std::byte> half(256);
  Status s = EncodeRecord(RecordIdentity{layout, 0, {}, {}, tokens}, half, CodecOptions{}, &out);
  CHECK(s.IsInvalidArgument());
  CHECK(s.message() == "record: payload is 256 bytes, layout 2x2x8 bs4 f16 needs 512");

  auto three = test::Tokens(3, 1);
  s = EncodeRecord(RecordIdentity{layout, 0, {}, {}, three}, payload, CodecOptions{}, &out);
  CHECK(s.IsInvalidArgument());
  CHECK(s.message() == "record: 3 token ids, layout 2x2x8 bs4 f16 needs 4");

  BlockLayout bad = layout;
  bad.head_dim = 0;
  s = EncodeRecord(RecordIdentity{bad, 0, {}, {}, tokens}, payload, CodecOptions{}, &out);
  CHECK(s.IsInvalidArgument());
  CHECK(Contains(s, "head_dim"));

  CodecOptions wild;
  wild.zstd_level = 1000;
  s = EncodeRecord(RecordIdentity{layout, 0, {}, {}, tokens}, payload, wild, &out);
  CHECK(s.IsInvalidArgument());
  CHECK(Contains(s, "zstd level 1000"));
}

TEST_CASE("codec options pick the level and the raw threshold") {
  const BlockLayout layout = MediumLayout(DType::kBF16);
  SECTION("other zstd levels round-trip") {
    const int level = GENERATE(-5, 0, 3, 19);
    CodecOptions options;
    options.zstd_level = level;
    Encoded e = Encode(layout, 9, options);
    RecordHeader header;
    std::vector<std::byte> payload;
    INFO("level " << level);
    REQUIRE(DecodeRecord(e.record, &header, &payload).ok());
    CHECK(payload == e.payload);
  }
  SECTION("a saving below min_saving stores the block raw") {
    CodecOptions options;
    options.min_saving = 0.99;
    Encoded e = Encode(layout, 9, options);
    RecordHeader header;
    REQUIRE(ParseRecordHeader(e.record, &header).ok());
    CHECK(header.flags == 0);
    options.min_saving = 0.0;
    e = Encode(layout, 9, options);
    REQUIRE(ParseRecordHeader(e.record, &header).ok());
    CHECK(header.compressed());
  }
}

TEST_CASE("DecodeRecordInto requires a buffer of exactly the raw size") {
  Encoded e = Encode(MediumLayout(), 10);
  RecordHeader header;
  REQUIRE(ParseRecordHeader(e.record, &header).ok());
  for (size_t size : {size_t{0}, size_t{4095}, size_t{4097}}) {
    std::vector<std::byte> buffer(size);
    Status s = DecodeRecordInto(e.record, header, buffer);
    CHECK(s.IsInvalidArgument());
    CHECK(s.message() == "record: payload buffer is " + std::to_string(size) +
                             " bytes, the record holds 4096");
  }
  // A header parsed from another record does not lead outside this one.
  Encoded other = Encode(MediumLayout(), 11);
  RecordHeader other_header;
  REQUIRE(ParseRecordHeader(other.record, &other_header).ok());
  std::vector<std::byte> buffer(4096);
  Status s = DecodeRecordInto(e.record.substr(0, e.record.size() - 1), header, buffer);
  CHECK(s.IsInvalidArgument());
  CHECK(Contains(s, "header describes a record of " + std::to_string(e.record.size())));
  REQUIRE(DecodeRecordInto(e.record, header, buffer).ok());
  CHECK(buffer == e.payload);
}

TEST_CASE("encoders and decoders on 4 threads give the same bytes as one thread") {
  struct Case {
    BlockLayout layout;
    uint64_t seed;
    bool shuffle;
    std::string record;
  };
  std::vector<Case> cases;
  for (DType d : {DType::kF32, DType::kF16, DType::kBF16, DType::kInt8}) {
    for (bool shuffle : {true, false}) {
      cases.push_back({MediumLayout(d), cases.size(), shuffle, ""});
      cases.push_back({test::SmallLayout(d, 16), cases.size(), shuffle, ""});
    }
  }
  std::vector<std::vector<std::byte>> payloads;
  for (auto& c : cases) {
    CodecOptions options;
    options.shuffle = c.shuffle;
    Encoded e = Encode(c.layout, c.seed, options);
    c.record = e.record;
    payloads.push_back(e.payload);
  }
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::string record;
      RecordHeader header;
      std::vector<std::byte> payload;
      for (int round = 0; round < 50; ++round) {
        for (size_t i = 0; i < cases.size(); ++i) {
          const Case& c = cases[(i + t) % cases.size()];
          const auto& data = payloads[(i + t) % cases.size()];
          auto tokens = test::Tokens(c.layout.block_size, c.seed);
          RecordIdentity id{c.layout, 3, test::TestNamespace(c.layout).Fingerprint(),
                            Hash128{0x1111 + c.seed, 0x2222 + c.seed}, tokens};
          CodecOptions options;
          options.shuffle = c.shuffle;
          if (!EncodeRecord(id, data, options, &record).ok() || record != c.record) ++mismatches;
          if (!DecodeRecord(c.record, &header, &payload).ok() || payload != data) ++mismatches;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(mismatches.load() == 0);
}

TEST_CASE("randomly damaged records never crash and never decode to other bytes") {
  const uint64_t seed = TestSeed();
  INFO("seed " << seed << " (rerun with KVTIER_TEST_SEED=" << seed << ")");
  std::mt19937_64 rng(seed);
  std::vector<Encoded> originals;
  originals.push_back(Encode(MediumLayout(), 1));
  originals.push_back(Encode(MediumLayout(DType::kF32), 2));
  originals.push_back(Encode(test::SmallLayout(DType::kInt8, 1), 3));
  CodecOptions plain;
  plain.shuffle = false;
  originals.push_back(Encode(MediumLayout(DType::kBF16), 4, plain));
  for (int iter = 0; iter < 3000; ++iter) {
    const Encoded& e = originals[rng() % originals.size()];
    std::string r = e.record;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < edits && !r.empty(); ++k) {
      switch (rng() % 5) {
        case 0: r[rng() % r.size()] ^= static_cast<char>(1 + rng() % 255); break;
        case 1: r.resize(rng() % r.size()); break;
        case 2: r.append(1 + rng() % 8, static_cast<char>(rng())); break;
        case 3: r.insert(rng() % r.size(), 1, static_cast<char>(rng())); break;
        case 4: r.erase(rng() % r.size(), 1); break;
      }
    }
    if (r.size() >= kHeader + 4 * size_t{Get<uint32_t>(r, 24)} && rng() % 2 == 0) Reseal(&r);
    RecordHeader header;
    std::vector<std::byte> payload;
    Status s = DecodeRecord(r, &header, &payload);
    INFO("iteration " << iter << ": " << s.ToString());
    if (s.ok()) {
      REQUIRE(payload == e.payload);
    } else {
      REQUIRE(s.message().rfind("record: ", 0) == 0);
    }
  }
}

TEST_CASE("random bytes are rejected without crashing") {
  const uint64_t seed = TestSeed();
  INFO("seed " << seed << " (rerun with KVTIER_TEST_SEED=" << seed << ")");
  std::mt19937_64 rng(seed);
  for (int iter = 0; iter < 2000; ++iter) {
    std::string r(rng() % 400, '\0');
    for (auto& c : r) c = static_cast<char>(rng());
    if (r.size() >= 8 && rng() % 2 == 0) {
      std::memcpy(r.data(), "KVTR", 4);
      Put<uint16_t>(&r, 4, 1);
      if (r.size() >= 28) Put<uint32_t>(&r, 24, static_cast<uint32_t>(rng() % 8));
    }
    RecordHeader header;
    std::vector<std::byte> payload;
    Status s = DecodeRecord(r, &header, &payload);
    INFO("iteration " << iter << ", " << r.size() << " bytes: " << s.ToString());
    REQUIRE_FALSE(s.ok());
  }
}
