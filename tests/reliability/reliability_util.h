// Helpers shared by the reliability tests (crash, fault injection,
// corruption sweep, stress, disk full): payloads that are a function of the
// block's key, so any record found anywhere can be checked bit for bit, and
// an audit of a whole store.
#ifndef KVTIER_TESTS_RELIABILITY_RELIABILITY_UTIL_H_
#define KVTIER_TESTS_RELIABILITY_RELIABILITY_UTIL_H_

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "kvtier/cache.h"
#include "kvtier/hash.h"
#include "kvtier/record.h"
#include "kvtier/store.h"
#include "test_util.h"

namespace kvtier::test {

// The payload every test inserts for the block whose prefix hash is `key`.
inline std::vector<std::byte> KeyedPayload(const BlockLayout& layout, const Hash128& key) {
  return Payload(layout, key.lo ^ key.hi);
}

// The prefix hashes of `tokens` in namespace `ns`.
inline std::vector<Hash128> Chain(const Namespace& ns, std::span<const Token> tokens) {
  std::vector<Hash128> h;
  PrefixHashes(ns.Fingerprint(), tokens, ns.layout.block_size, &h);
  return h;
}

// Blocks first..last-1 of `tokens`, keyed payloads, as owned buffers.
inline std::vector<std::vector<std::byte>> KeyedBlocks(const Namespace& ns,
                                                       std::span<const Token> tokens,
                                                       size_t first, size_t last) {
  const std::vector<Hash128> h = Chain(ns, tokens);
  std::vector<std::vector<std::byte>> out;
  for (size_t i = first; i < last; ++i) out.push_back(KeyedPayload(ns.layout, h[i]));
  return out;
}

inline std::vector<std::span<const std::byte>> Spans(const std::vector<std::vector<std::byte>>& v) {
  return std::vector<std::span<const std::byte>>(v.begin(), v.end());
}

// True when every block of `lease` holds the keyed payload of its position
// in `tokens` and carries the right prefix hash.
inline bool LeaseExact(const Namespace& ns, const Lease& lease, std::span<const Token> tokens) {
  const std::vector<Hash128> h = Chain(ns, tokens);
  if (lease.num_blocks() > h.size()) return false;
  for (size_t i = 0; i < lease.num_blocks(); ++i) {
    if (lease.block_hash(i) != h[i]) return false;
    const std::vector<std::byte> expect = KeyedPayload(ns.layout, h[i]);
    const std::span<const std::byte> got = lease.block(i);
    if (!std::equal(expect.begin(), expect.end(), got.begin(), got.end())) return false;
  }
  return true;
}

// Ends the process with a message if it is still alive `seconds` after
// construction: a hang (a deadlock under faults) becomes a clear failure
// instead of a stuck CI job.
class Watchdog {
 public:
  Watchdog(std::string what, int seconds) : what_(std::move(what)) {
    thread_ = std::thread([this, seconds] {
      std::unique_lock<std::mutex> lock(mu_);
      if (!cv_.wait_for(lock, std::chrono::seconds(seconds), [this] { return done_; })) {
        std::fprintf(stderr, "watchdog: %s did not finish within %d s (a hang); aborting\n",
                     what_.c_str(), seconds);
        std::fflush(stderr);
        _exit(86);
      }
    });
  }
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  std::string what_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

// What a full scan of a store found.
struct StoreAudit {
  uint64_t records = 0;       // metadata entries visited
  uint64_t stored_bytes = 0;  // sum of their stored sizes
  uint64_t verified = 0;      // records that decode, verify and hold the keyed payload
  uint64_t damaged = 0;       // records that do not
  uint64_t unreadable = 0;    // records the store could not read
  bool counters_match = false;  // StoreStats agree with the scan
  uint64_t max_access_seq = 0;  // the newest record's recency sequence number
  std::string first_problem;

  bool clean() const { return damaged == 0 && unreadable == 0 && counters_match; }
};

// Reads every record of `store` and checks it against namespace `ns`:
// header, payload checksum, key recomputed from parent and tokens, and the
// keyed payload bit for bit. `only_newer_than` > 0 limits the payload checks
// to records used after that access sequence number (the metadata and the
// counters are always checked in full).
inline StoreAudit AuditStore(BlockStore* store, const Namespace& ns, uint64_t only_newer_than = 0) {
  StoreAudit a;
  std::vector<RecordMeta> metas;
  Status s = store->ForEachRecord([&](const RecordMeta& m) {
    metas.push_back(m);
    return true;
  });
  if (!s.ok()) {
    a.first_problem = "ForEachRecord: " + s.ToString();
    ++a.unreadable;
    return a;
  }
  a.records = metas.size();
  for (const RecordMeta& m : metas) {
    a.stored_bytes += m.stored_bytes;
    a.max_access_seq = std::max(a.max_access_seq, m.access_seq);
  }
  StoreStats stats;
  s = store->GetStats(&stats);
  a.counters_match = s.ok() && stats.records == a.records && stats.stored_bytes == a.stored_bytes;
  if (!a.counters_match && a.first_problem.empty()) {
    a.first_problem = "counters say " + std::to_string(stats.records) + " records / " +
                      std::to_string(stats.stored_bytes) + " bytes, the scan found " +
                      std::to_string(a.records) + " / " + std::to_string(a.stored_bytes);
  }
  const Hash128 fp = ns.Fingerprint();
  std::vector<Hash128> keys;
  for (const RecordMeta& m : metas) {
    if (m.access_seq > only_newer_than) keys.push_back(m.key);
  }
  constexpr size_t kBatch = 64;
  std::vector<std::string> values;
  std::vector<Status> statuses;
  for (size_t at = 0; at < keys.size(); at += kBatch) {
    const auto batch = std::span<const Hash128>(keys).subspan(at, std::min(kBatch, keys.size() - at));
    store->MultiGet(batch, &values, &statuses);
    for (size_t i = 0; i < batch.size(); ++i) {
      std::string problem;
      if (!statuses[i].ok()) {
        ++a.unreadable;
        problem = "record " + batch[i].ToHex() + " unreadable: " + statuses[i].ToString();
      } else {
        RecordHeader h;
        std::vector<std::byte> payload;
        Status d = DecodeRecord(values[i], &h, &payload);
        if (d.ok() && h.Key() != batch[i]) d = Status::Corruption("stored under another key");
        if (d.ok() && h.namespace_fp != fp) d = Status::Corruption("another namespace");
        if (d.ok() && payload != KeyedPayload(ns.layout, batch[i])) d = Status::Corruption("wrong payload");
        if (d.ok()) {
          ++a.verified;
        } else {
          ++a.damaged;
          problem = "record " + batch[i].ToHex() + ": " + d.ToString();
        }
      }
      if (!problem.empty() && a.first_problem.empty()) a.first_problem = problem;
    }
  }
  return a;
}

}  // namespace kvtier::test

#endif  // KVTIER_TESTS_RELIABILITY_RELIABILITY_UTIL_H_
