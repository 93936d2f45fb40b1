// Tests of the record log (src/store/record_log.h) and of the store's use of
// it: RecordLog on its own (appends read back by location, frame walks,
// segment rolling, removal, reopen, torn and damaged frames, location
// encoding); the segment collector keeping a small store's segment files
// near its live bytes through a long eviction workload, deletes and
// Compact(); and format-1 stores (records inline in the default column
// family) read as they are and upgraded to format 2 by a writing open.
// Everything runs against real files in temp directories.
#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <rocksdb/db.h>
#include <rocksdb/file_system.h>

#include "kvtier/record.h"
#include "kvtier/store.h"
#include "store/record_log.h"
#include "store/store_format.h"
#include "store_test_util.h"
#include "test_util.h"

using namespace kvtier;
using Chain = test::RecordChain;
using test::MakeChain;
using test::OpenStore;
using test::RawCodec;
using test::RawDb;
using test::Stats;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kFrame = RecordLog::kFrameHeaderBytes;

// ---- RecordLog helpers -------------------------------------------------------

Hash128 Key(uint64_t i) { return Hash128{0x9e3779b97f4a7c15ull * (i + 1), i}; }

// `n` bytes that are a deterministic function of `seed`.
std::string Bytes(uint64_t seed, size_t n) {
  std::mt19937_64 rng(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng());
  return out;
}

std::unique_ptr<RecordLog> OpenLog(const std::string& dir, uint64_t segment_bytes,
                                   bool read_only = false) {
  std::unique_ptr<RecordLog> log;
  Status s = RecordLog::Open(dir, rocksdb::FileSystem::Default(), read_only, segment_bytes, &log);
  INFO(s.ToString());
  REQUIRE(s.ok());
  return log;
}

RecordLocation Append(RecordLog& log, const Hash128& key, const std::string& record) {
  RecordLocation at;
  Status s = log.Append(key, record, &at);
  INFO(s.ToString());
  REQUIRE(s.ok());
  return at;
}

std::string Read(RecordLog& log, const RecordLocation& at) {
  std::string out = "stale";
  Status s = log.Read(at, &out);
  INFO(s.ToString());
  REQUIRE(s.ok());
  return out;
}

using Frame = std::pair<Hash128, RecordLocation>;

// Every frame ForEachFrame yields, and its status.
Status Frames(RecordLog& log, uint32_t segment, std::vector<Frame>* frames) {
  frames->clear();
  return log.ForEachFrame(segment, [&](const Hash128& key, const RecordLocation& at) {
    frames->emplace_back(key, at);
  });
}

// Bytes of the regular files in `dir` (0 if it does not exist).
uint64_t DirBytes(const std::string& dir) {
  std::error_code ec;
  uint64_t total = 0;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_regular_file()) total += entry.file_size();
  }
  return total;
}

void OverwriteAt(const std::string& path, uint64_t offset, const std::string& bytes) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  REQUIRE(f.is_open());
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(f.good());
}

// ---- store helpers -----------------------------------------------------------

// Records stored raw have a fixed size, so byte bounds can be exact.
Namespace SmallNs() { return test::TestNamespace(test::SmallLayout()); }

// 64 KiB blocks.
Namespace BigNs() { return test::LargeBlockNamespace("big-model"); }

// Every record of `expected` reads back bit-exact from `store`.
void CheckReadsBack(BlockStore& store, const std::map<Hash128, std::string>& expected) {
  std::vector<Hash128> keys;
  for (const auto& [key, record] : expected) keys.push_back(key);
  std::vector<std::string> values;
  std::vector<Status> statuses;
  store.MultiGet(keys, &values, &statuses);
  REQUIRE(values.size() == keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    INFO("record " << keys[i].ToHex() << ": " << statuses[i].ToString());
    REQUIRE(statuses[i].ok());
    REQUIRE(values[i] == expected.at(keys[i]));
  }
}

std::string SegmentsDir(const std::string& store_dir) { return store_dir + "/segments"; }

uint32_t RawFormatVersion(const std::string& dir) {
  RawDb raw(dir);
  std::string value;
  REQUIRE(raw.db()->Get(rocksdb::ReadOptions(), raw.family(store_format::kSysFamily),
                        store_format::kFormatKey, &value).ok());
  uint32_t version = 0;
  REQUIRE(store_format::DecodeFormatVersion(value, &version));
  return version;
}

void SetRawFormatVersion(RawDb& raw, uint32_t version) {
  REQUIRE(raw.db()->Put(rocksdb::WriteOptions(), raw.family(store_format::kSysFamily),
                        store_format::kFormatKey, store_format::EncodeFormatVersion(version))
              .ok());
}

// Turns a closed format-2 store holding exactly `records` into what format 1
// wrote: each record's bytes inline in the default family, format key 1, no
// segments.
void RewriteAsFormat1(const std::string& dir, const std::map<Hash128, std::string>& records) {
  {
    RawDb raw(dir);
    rocksdb::ColumnFamilyHandle* cf = raw.family(rocksdb::kDefaultColumnFamilyName);
    rocksdb::WriteBatch batch;
    size_t rewritten = 0;
    std::unique_ptr<rocksdb::Iterator> it(raw.db()->NewIterator(rocksdb::ReadOptions(), cf));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      Hash128 key;
      RecordLocation at;
      REQUIRE(store_format::DecodeKey(it->key().ToStringView(), &key));
      REQUIRE(DecodeLocation(it->value().ToStringView(), &at));  // format 2 before
      REQUIRE(records.count(key) == 1);
      REQUIRE(batch.Put(cf, it->key(), records.at(key)).ok());
      ++rewritten;
    }
    REQUIRE(it->status().ok());
    it.reset();
    REQUIRE(rewritten == records.size());
    REQUIRE(raw.db()->Write(rocksdb::WriteOptions(), &batch).ok());
    SetRawFormatVersion(raw, kInlineRecordsFormatVersion);
    REQUIRE(raw.db()->Flush(rocksdb::FlushOptions(), cf).ok());  // records in an SST, as format 1 had
  }
  REQUIRE(fs::remove_all(SegmentsDir(dir)) > 0);
}

}  // namespace

// ---- RecordLog ---------------------------------------------------------------

TEST_CASE("appended records read back bit-exact and frames walk in order while segments roll") {
  test::TempDir dir;
  const std::string log_dir = dir.sub("segments");
  constexpr uint64_t kSegmentBytes = 4096;
  auto log = OpenLog(log_dir, kSegmentBytes);
  CHECK(log->total_bytes() == 0);
  CHECK(log->SealedSegments().empty());
  CHECK(!fs::exists(log_dir));  // created by the first append

  // 1500-byte records (and one empty one): a segment seals with the frame
  // that brings it to 4096 bytes or more.
  std::vector<std::string> records;
  std::vector<RecordLocation> locations;
  uint64_t active_bytes = 0;
  size_t sealed = 0;
  for (uint64_t i = 0; i < 11; ++i) {
    records.push_back(i == 4 ? std::string() : Bytes(i, 1500));
    locations.push_back(Append(*log, Key(i), records.back()));
    active_bytes += kFrame + records.back().size();
    if (active_bytes >= kSegmentBytes) {
      ++sealed;
      active_bytes = 0;
    }
    CHECK(log->SealedSegments().size() == sealed);
  }
  CHECK(locations[0] == RecordLocation{1, kFrame, 1500});
  CHECK(locations[4] == RecordLocation{2, 2 * kFrame + 1500, 0});
  std::map<uint32_t, std::vector<size_t>> by_segment;
  for (size_t i = 0; i < records.size(); ++i) by_segment[locations[i].segment].push_back(i);
  REQUIRE(by_segment.size() == 4);
  CHECK(by_segment.at(1) == std::vector<size_t>{0, 1, 2});
  CHECK(by_segment.at(2) == std::vector<size_t>{3, 4, 5, 6});
  CHECK(by_segment.at(4) == std::vector<size_t>{10});  // the active one
  CHECK(log->SealedSegments() == std::vector<uint32_t>{1, 2, 3});

  uint64_t frames_bytes = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    INFO("record " << i);
    CHECK(locations[i].length == records[i].size());
    CHECK(Read(*log, locations[i]) == records[i]);
    frames_bytes += kFrame + records[i].size();
  }
  CHECK(log->total_bytes() == frames_bytes);
  CHECK(DirBytes(log_dir) == frames_bytes);

  for (const auto& [segment, members] : by_segment) {
    INFO("segment " << segment);
    std::vector<Frame> frames;
    REQUIRE(Frames(*log, segment, &frames).ok());
    std::vector<Frame> expected;
    for (size_t i : members) expected.emplace_back(Key(i), locations[i]);
    CHECK(frames == expected);
    CHECK(fs::exists(log->SegmentPath(segment)));
  }
}

TEST_CASE("Remove deletes a sealed segment, whose records then read NotFound, and refuses the active one") {
  test::TempDir dir;
  const std::string log_dir = dir.sub("segments");
  auto log = OpenLog(log_dir, 4096);
  std::vector<RecordLocation> at;
  for (uint64_t i = 0; i < 4; ++i) at.push_back(Append(*log, Key(i), Bytes(i, 1500)));
  REQUIRE(log->SealedSegments() == std::vector<uint32_t>{1});
  REQUIRE(at[0].segment == 1);
  REQUIRE(at[3].segment == 2);  // the active segment
  CHECK(Read(*log, at[0]) == Bytes(0, 1500));  // its reader is open when it goes

  const uint64_t before = log->total_bytes();
  REQUIRE(log->Remove(1).ok());
  CHECK(!fs::exists(log->SegmentPath(1)));
  CHECK(log->SealedSegments().empty());
  CHECK(log->total_bytes() == before - 3 * (kFrame + 1500));
  std::string out;
  for (int i = 0; i < 3; ++i) CHECK(log->Read(at[i], &out).IsNotFound());
  std::vector<Frame> frames;
  CHECK(!Frames(*log, 1, &frames).ok());

  Status s = log->Remove(2);
  CHECK(!s.ok());
  CHECK(fs::exists(log->SegmentPath(2)));
  CHECK(Read(*log, at[3]) == Bytes(3, 1500));
  CHECK(log->total_bytes() == kFrame + 1500);

  // Once sealed, it may go.
  REQUIRE(log->Seal().ok());
  CHECK(log->SealedSegments() == std::vector<uint32_t>{2});
  REQUIRE(log->Remove(2).ok());
  CHECK(log->total_bytes() == 0);
  CHECK(log->Read(at[3], &out).IsNotFound());
}

TEST_CASE("a reopened log lists the same segments, appends to a new one and removes empty ones") {
  test::TempDir dir;
  const std::string log_dir = dir.sub("segments");
  std::vector<RecordLocation> at;
  uint64_t total = 0;
  {
    auto log = OpenLog(log_dir, 4096);
    for (uint64_t i = 0; i < 5; ++i) at.push_back(Append(*log, Key(i), Bytes(i, 1500)));
    REQUIRE(at.back().segment == 2);  // active, unsealed when the log closes
    total = log->total_bytes();
  }
  // An empty segment, as a crash right after its creation leaves it.
  const std::string empty = log_dir + "/00000003.kvr";
  std::ofstream(empty).close();
  REQUIRE(fs::exists(empty));

  {
    auto log = OpenLog(log_dir, 4096, /*read_only=*/true);
    CHECK(fs::exists(empty));  // a read-only open removes nothing
    CHECK(log->total_bytes() == total);
    for (uint64_t i = 0; i < 5; ++i) CHECK(Read(*log, at[i]) == Bytes(i, 1500));
    RecordLocation unused;
    CHECK(!log->Append(Key(9), "x", &unused).ok());
  }

  auto log = OpenLog(log_dir, 4096);
  CHECK(!fs::exists(empty));
  CHECK(log->total_bytes() == total);
  CHECK(log->SealedSegments() == std::vector<uint32_t>{1, 2});
  for (uint64_t i = 0; i < 5; ++i) CHECK(Read(*log, at[i]) == Bytes(i, 1500));
  const RecordLocation fresh = Append(*log, Key(5), Bytes(5, 100));
  CHECK(fresh.segment > 2);  // never appended after a segment of an earlier open
  CHECK(fresh.offset == kFrame);
  CHECK(Read(*log, fresh) == Bytes(5, 100));
  CHECK(log->total_bytes() == total + kFrame + 100);
  std::vector<Frame> frames;
  REQUIRE(Frames(*log, 2, &frames).ok());
  CHECK(frames.size() == 2);  // segment 2 is as the first open left it
}

TEST_CASE("a torn final frame ends the frame walk, a damaged frame header before the end is Corruption") {
  test::TempDir dir;
  const std::string log_dir = dir.sub("segments");
  std::vector<RecordLocation> at;
  {
    auto log = OpenLog(log_dir, kMiB);
    for (uint64_t i = 0; i < 4; ++i) at.push_back(Append(*log, Key(i), Bytes(i, 1000)));
  }
  for (const RecordLocation& l : at) REQUIRE(l.segment == 1);
  const std::string path = log_dir + "/00000001.kvr";
  const uint64_t size = 4 * (kFrame + 1000);
  REQUIRE(fs::file_size(path) == size);
  auto first = [&](size_t n) {
    std::vector<Frame> expected;
    for (size_t i = 0; i < n; ++i) expected.emplace_back(Key(i), at[i]);
    return expected;
  };

  SECTION("the last frame's record cut short") {
    fs::resize_file(path, size - 5);
    auto log = OpenLog(log_dir, kMiB, /*read_only=*/true);
    std::vector<Frame> frames;
    REQUIRE(Frames(*log, 1, &frames).ok());
    CHECK(frames == first(3));
    std::string out;
    CHECK(!log->Read(at[3], &out).ok());  // never OK with short data
    CHECK(Read(*log, at[2]) == Bytes(2, 1000));
  }
  SECTION("the last frame's header cut short") {
    fs::resize_file(path, 3 * (kFrame + 1000) + 10);
    auto log = OpenLog(log_dir, kMiB, /*read_only=*/true);
    std::vector<Frame> frames;
    REQUIRE(Frames(*log, 1, &frames).ok());
    CHECK(frames == first(3));
  }
  SECTION("garbage over the second frame header") {
    OverwriteAt(path, kFrame + 1000, std::string(kFrame, '\x5a'));
    auto log = OpenLog(log_dir, kMiB, /*read_only=*/true);
    std::vector<Frame> frames;
    Status s = Frames(*log, 1, &frames);
    CHECK(s.IsCorruption());
    CHECK_THAT(s.message(), Catch::Contains(std::to_string(kFrame + 1000)));
    CHECK(frames == first(1));
  }
  SECTION("one flipped bit in the second frame header's length (its checksum fails)") {
    std::ifstream in(path, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(kFrame + 1000 + 4));
    char c = 0;
    in.read(&c, 1);
    in.close();
    OverwriteAt(path, kFrame + 1000 + 4, std::string(1, static_cast<char>(c ^ 0x01)));
    auto log = OpenLog(log_dir, kMiB, /*read_only=*/true);
    std::vector<Frame> frames;
    CHECK(Frames(*log, 1, &frames).IsCorruption());
    CHECK(frames == first(1));
  }
}

TEST_CASE("a Read past the end of a segment fails instead of returning short data") {
  test::TempDir dir;
  auto log = OpenLog(dir.sub("segments"), kMiB);
  const RecordLocation at = Append(*log, Key(0), Bytes(0, 1000));
  REQUIRE(log->Seal().ok());
  const uint64_t end = kFrame + 1000;
  std::string out;
  CHECK(!log->Read(RecordLocation{at.segment, end + 100, 10}, &out).ok());   // wholly past
  CHECK(!log->Read(RecordLocation{at.segment, end - 10, 100}, &out).ok());   // across the end
  CHECK(!log->Read(RecordLocation{at.segment, end, 1}, &out).ok());          // at the end
  CHECK(log->Read(RecordLocation{at.segment + 7, kFrame, 10}, &out).IsNotFound());  // no file
  CHECK(Read(*log, RecordLocation{at.segment, end - 10, 10}) == Bytes(0, 1000).substr(990));
}

TEST_CASE("locations round-trip through their 20-byte encoding and other values are rejected") {
  for (const RecordLocation& at :
       {RecordLocation{1, 32, 0}, RecordLocation{7, 123456789, 65536},
        RecordLocation{UINT32_MAX, (1ull << 40) + 3, UINT32_MAX}}) {
    const std::string encoded = EncodeLocation(at);
    CHECK(encoded.size() == 20);
    RecordLocation decoded;
    REQUIRE(DecodeLocation(encoded, &decoded));
    CHECK(decoded == at);
  }
  const std::string good = EncodeLocation(RecordLocation{3, 4096, 100});
  RecordLocation out;
  CHECK(!DecodeLocation("", &out));
  CHECK(!DecodeLocation(good.substr(0, 19), &out));
  CHECK(!DecodeLocation(good + '\0', &out));
  std::string bad_magic = good;
  bad_magic[0] ^= 0x01;
  CHECK(!DecodeLocation(bad_magic, &out));
  CHECK(!DecodeLocation(EncodeLocation(RecordLocation{0, 32, 1}), &out));  // no segment 0
  Chain chain = MakeChain(SmallNs(), 1, 1);
  CHECK(!DecodeLocation(chain.records[0], &out));  // a record stored inline (format 1)
}

// ---- the store's segments ----------------------------------------------------

TEST_CASE("the collector keeps a small store's segment files near its live bytes") {
  test::TempDir dir;
  StoreOptions options;
  options.max_bytes = 4 * kMiB;
  const uint64_t segment = std::clamp<uint64_t>(options.max_bytes / 16, kMiB, 64 * kMiB);
  const std::string segments = SegmentsDir(dir.str());

  // ~40 MiB of 64 KiB records, one per Put: ten times the budget.
  std::map<Hash128, std::string> all;
  std::vector<Hash128> order;
  uint64_t record_bytes = 0;
  auto store = OpenStore(dir.str(), options);
  for (uint64_t i = 0; i < 640; ++i) {
    Chain chain = MakeChain(BigNs(), 1000 + i, 1, RawCodec());
    record_bytes = std::max<uint64_t>(record_bytes, chain.records[0].size());
    REQUIRE(store->Put(chain.views()).ok());
    all[chain.keys[0]] = chain.records[0];
    order.push_back(chain.keys[0]);
    const StoreStats stats = Stats(*store);
    const uint64_t on_disk = DirBytes(segments);
    INFO("after Put " << i << ": " << on_disk << " segment bytes, " << stats.stored_bytes
                      << " stored in " << stats.records << " records");
    REQUIRE(stats.stored_bytes <= options.max_bytes);
    REQUIRE(on_disk <= stats.stored_bytes * 5 / 4 + 2 * segment + record_bytes);
  }
  REQUIRE(record_bytes > 64 * 1024);
  StoreStats stats = Stats(*store);
  CHECK(stats.evicted_records > 500);

  // Every record still stored reads back bit-exact.
  std::vector<uint8_t> present;
  REQUIRE(store->Exists(order, &present).ok());
  std::map<Hash128, std::string> live;
  for (size_t i = 0; i < order.size(); ++i) {
    if (present[i]) live[order[i]] = all.at(order[i]);
  }
  REQUIRE(live.size() == stats.records);
  REQUIRE(live.size() > 10);
  CheckReadsBack(*store, live);

  // Deleting most records shrinks the segments at once.
  std::vector<Hash128> doomed;
  std::map<Hash128, std::string> kept;
  size_t n = 0;
  for (const auto& [key, record] : live) {
    if (n++ % 8 == 0) {
      kept[key] = record;
    } else {
      doomed.push_back(key);
    }
  }
  const uint64_t before_delete = DirBytes(segments);
  REQUIRE(store->Delete(doomed).ok());
  stats = Stats(*store);
  REQUIRE(stats.records == kept.size());
  const uint64_t after_delete = DirBytes(segments);
  INFO("segment bytes " << before_delete << " before the delete, " << after_delete << " after; "
                        << stats.stored_bytes << " stored");
  CHECK(after_delete < before_delete);
  CHECK(after_delete <= stats.stored_bytes + stats.records * kFrame + 2 * segment);
  CheckReadsBack(*store, kept);

  // Compact leaves only the live records' frames.
  CompactResult compacted;
  REQUIRE(store->Compact(&compacted).ok());
  const uint64_t after_compact = DirBytes(segments);
  INFO("segment bytes after Compact: " << after_compact);
  CHECK(after_compact >= stats.stored_bytes);
  CHECK(after_compact <= stats.stored_bytes + stats.records * kFrame + 4096);
  CheckReadsBack(*store, kept);
  std::vector<std::string> values;
  std::vector<Status> statuses;
  store->MultiGet(doomed, &values, &statuses);
  for (const Status& s : statuses) CHECK(s.IsNotFound());

  store.reset();
  store = OpenStore(dir.str(), options);
  CHECK(Stats(*store).records == kept.size());
  CHECK(DirBytes(segments) == after_compact);
  CheckReadsBack(*store, kept);
  Chain extra = MakeChain(BigNs(), 99, 2, RawCodec());
  REQUIRE(store->Put(extra.views()).ok());
  for (size_t i = 0; i < extra.keys.size(); ++i) kept[extra.keys[i]] = extra.records[i];
  CheckReadsBack(*store, kept);
}

// ---- format 1 ----------------------------------------------------------------

TEST_CASE("a format-1 store (records inline) is read, and upgraded to format 2 by a writing open") {
  test::TempDir dir;
  std::map<Hash128, std::string> records;
  {
    auto store = OpenStore(dir.str());
    for (const Chain& chain : {MakeChain(BigNs(), 1, 3, RawCodec()), MakeChain(BigNs(), 2, 2),
                               MakeChain(SmallNs(), 3, 3)}) {  // large and small records
      REQUIRE(store->Put(chain.views()).ok());
      for (size_t i = 0; i < chain.keys.size(); ++i) records[chain.keys[i]] = chain.records[i];
    }
    REQUIRE(DirBytes(SegmentsDir(dir.str())) > 0);
  }
  RewriteAsFormat1(dir.str(), records);
  REQUIRE(RawFormatVersion(dir.str()) == kInlineRecordsFormatVersion);

  {
    StoreOptions read_only;
    read_only.read_only = true;
    auto store = OpenStore(dir.str(), read_only);
    CheckReadsBack(*store, records);
    CHECK(Stats(*store).records == records.size());
    CHECK(Stats(*store).format_version == kInlineRecordsFormatVersion);  // as on disk
  }
  CHECK(RawFormatVersion(dir.str()) == kInlineRecordsFormatVersion);  // a reader changes nothing
  CHECK(!fs::exists(SegmentsDir(dir.str())));

  Chain fresh = MakeChain(BigNs(), 4, 2, RawCodec());
  const Hash128 deleted = records.begin()->first;
  {
    auto store = OpenStore(dir.str());
    CHECK(Stats(*store).format_version == kStoreFormatVersion);
    CheckReadsBack(*store, records);
    REQUIRE(store->Put(fresh.views()).ok());
    for (size_t i = 0; i < fresh.keys.size(); ++i) records[fresh.keys[i]] = fresh.records[i];
    CheckReadsBack(*store, records);
    REQUIRE(DirBytes(SegmentsDir(dir.str())) > 0);  // new records go to segments

    REQUIRE(store->Delete(std::vector<Hash128>{deleted}).ok());  // an inline one
    records.erase(deleted);
    CompactResult compacted;
    REQUIRE(store->Compact(&compacted).ok());
    CheckReadsBack(*store, records);
    CHECK(Stats(*store).records == records.size());
  }
  CHECK(RawFormatVersion(dir.str()) == kStoreFormatVersion);

  auto store = OpenStore(dir.str());
  CheckReadsBack(*store, records);
  std::vector<uint8_t> present;
  REQUIRE(store->Exists(std::vector<Hash128>{deleted}, &present).ok());
  CHECK(present[0] == 0);
}

TEST_CASE("a store of format version 3 is refused with NotSupported") {
  test::TempDir dir;
  {
    auto store = OpenStore(dir.str());
    REQUIRE(store->Put(MakeChain(SmallNs(), 1, 2).views()).ok());
  }
  {
    RawDb raw(dir.str());
    SetRawFormatVersion(raw, 3);
  }
  for (bool read_only : {false, true}) {
    INFO("read_only " << read_only);
    StoreOptions options;
    options.read_only = read_only;
    std::unique_ptr<BlockStore> store;
    Status s = OpenBlockStore(dir.str(), options, &store);
    CHECK(s.IsNotSupported());
    CHECK_THAT(s.message(), Catch::Contains("format version 3"));
    CHECK(store == nullptr);
  }
  CHECK(RawFormatVersion(dir.str()) == 3);
}

TEST_CASE("a record cut short by a torn segment reads as a damaged record, not an I/O error") {
  test::TempDir dir;
  Chain chain = MakeChain(BigNs(), 7, 3, RawCodec());
  {
    auto store = OpenStore(dir.str());
    REQUIRE(store->Put(chain.views()).ok());
  }
  // A machine crash kept the locations but not the end of the segment.
  std::string segment;
  for (const auto& entry : fs::directory_iterator(SegmentsDir(dir.str()))) segment = entry.path();
  REQUIRE(!segment.empty());
  fs::resize_file(segment, fs::file_size(segment) - chain.records.back().size() / 2);

  auto store = OpenStore(dir.str());
  std::vector<std::string> values;
  std::vector<Status> statuses;
  store->MultiGet(chain.keys, &values, &statuses);
  REQUIRE(statuses[0].ok());
  CHECK(values[0] == chain.records[0]);
  REQUIRE(statuses[2].ok());  // not an I/O error met on every lookup ...
  CHECK(values[2].empty());   // ... but a record no decoder accepts
  RecordHeader header;
  std::vector<std::byte> payload;
  CHECK(DecodeRecord(values[2], &header, &payload).IsCorruption());
}
