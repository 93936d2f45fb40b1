// DaemonBlockStore: a BlockStore served by kvtierd (see daemon_block_store.h).
#include "client/daemon_block_store.h"

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace kvtier {

using daemon::Deadline;
using daemon::FrameHeader;
using daemon::Op;
using daemon::WireReader;
using daemon::WireWriter;

namespace {

// Every promoted record arrives in a buffer of its size (64 KiB to a few
// MiB) that is freed once decoded. With glibc's defaults such buffers are
// mmap'd and unmapped each time, and every page faults in again: measured
// here (kvtier-bench shared), page faults were a fifth of a client's time.
// The same guarded tuning as the embedded store's (store_open.cc): once per
// process, skipped when the process tunes malloc itself or sets
// KVTIER_MALLOC_TUNING=0.
void TuneMallocForLargeRecords() {
  static std::once_flag once;
  std::call_once(once, [] {
    const char* opt_out = std::getenv("KVTIER_MALLOC_TUNING");
    const char* tunables = std::getenv("GLIBC_TUNABLES");
    if ((opt_out != nullptr && std::string_view(opt_out) == "0") ||
        (tunables != nullptr && std::string_view(tunables).find("malloc") != std::string_view::npos) ||
        std::getenv("MALLOC_MMAP_THRESHOLD_") != nullptr || std::getenv("MALLOC_TRIM_THRESHOLD_") != nullptr)
      return;
    mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's maximum
    mallopt(M_TRIM_THRESHOLD, 128 << 20);
  });
}

std::string DefaultClientName() {
  const char* env = std::getenv("KVTIER_CLIENT_NAME");
  if (env != nullptr && *env != '\0') return env;
  return std::string(program_invocation_short_name) + "-" + std::to_string(::getpid());
}

// "u32 n, key[16] * n" for keys[from, from + n).
std::string KeysBody(std::span<const Hash128> keys) {
  std::string body;
  body.reserve(4 + 16 * keys.size());
  WireWriter w(&body);
  w.U32(static_cast<uint32_t>(keys.size()));
  for (const Hash128& k : keys) w.Key(k);
  return body;
}

iovec Piece(std::string_view s) { return iovec{const_cast<char*>(s.data()), s.size()}; }

}  // namespace

DaemonBlockStore::DaemonBlockStore(DaemonClientOptions options) : options_(std::move(options)) {}

Status DaemonBlockStore::Open(const DaemonClientOptions& options, std::unique_ptr<BlockStore>* store) {
  store->reset();
  DaemonClientOptions o = options;
  if (o.client_name.empty()) o.client_name = DefaultClientName();
  if (o.max_connections < 1 || o.connect_timeout_ms < 1 || o.call_timeout_ms < 1 ||
      o.maintenance_timeout_ms < 1 || o.backoff_initial_ms < 1 || o.backoff_max_ms < o.backoff_initial_ms)
    return Status::InvalidArgument("kvtierd client options: connections, timeouts and backoff must be positive");
  TuneMallocForLargeRecords();
  std::unique_ptr<DaemonBlockStore> s(new DaemonBlockStore(std::move(o)));
  std::unique_ptr<DaemonConnection> c;
  bool fresh = false;
  Status st = s->Acquire(Deadline::In(s->options_.connect_timeout_ms), &c, &fresh);
  if (!st.ok()) return st;
  s->Return(std::move(c), st);
  *store = std::move(s);
  return Status::OK();
}

void DaemonBlockStore::Log(const std::string& message) const {
  if (options_.log) {
    options_.log(message);
  } else {
    std::fprintf(stderr, "kvtier: %s\n", message.c_str());
  }
}

Status DaemonBlockStore::Acquire(const Deadline& deadline, std::unique_ptr<DaemonConnection>* c,
                                 bool* fresh) {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (!idle_.empty()) {
      *c = std::move(idle_.back());
      idle_.pop_back();
      *fresh = false;
      return Status::OK();
    }
    if (open_ < options_.max_connections) {
      const auto now = std::chrono::steady_clock::now();
      if (now < retry_at_) {
        const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(retry_at_ - now).count();
        return Status::Unavailable(last_failure_ + " (next attempt in " + std::to_string(wait) + " ms)");
      }
      ++open_;
      lock.unlock();
      Status s = DaemonConnection::Open(options_.socket_path, options_.client_name,
                                        Deadline::Min(deadline, Deadline::In(options_.connect_timeout_ms)), c);
      lock.lock();
      if (!s.ok()) {
        --open_;
        cv_.notify_one();
        BackOffLocked(s);
        return s;
      }
      if (failures_ > 0) Log("connected to kvtierd at " + options_.socket_path + " again");
      failures_ = 0;
      backoff_ms_ = 0;
      retry_at_ = {};
      max_frame_bytes_.store((*c)->max_frame_bytes(), std::memory_order_relaxed);
      *fresh = true;
      return Status::OK();
    }
    if (cv_.wait_until(lock, deadline.at()) == std::cv_status::timeout && idle_.empty() &&
        open_ >= options_.max_connections)
      return Status::Unavailable("no connection to kvtierd at " + options_.socket_path +
                                 " became free in time (all " +
                                 std::to_string(options_.max_connections) + " busy)");
  }
}

void DaemonBlockStore::BackOffLocked(const Status& failure) {
  backoff_ms_ = backoff_ms_ == 0 ? options_.backoff_initial_ms
                                 : std::min(options_.backoff_max_ms, 2 * backoff_ms_);
  retry_at_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(backoff_ms_);
  last_failure_ = failure.message();
  ++failures_;
  if (failures_ <= 3 || (failures_ & (failures_ - 1)) == 0)
    Log(failure.ToString() + "; retrying in " + std::to_string(backoff_ms_) + " ms (failure " +
        std::to_string(failures_) + ")");
}

void DaemonBlockStore::Return(std::unique_ptr<DaemonConnection> c, const Status& outcome) {
  std::lock_guard<std::mutex> lock(mu_);
  if (c->broken()) {
    --open_;
    // The daemon closed this one: the other idle ones are likely dead too.
    if (c->peer_gone()) {
      open_ -= static_cast<int>(idle_.size());
      idle_.clear();
    }
    // A daemon that does not answer in time (stopped, stalled) is treated
    // as down: later calls fail fast instead of each waiting out a timeout.
    if (c->timed_out()) BackOffLocked(outcome);
  } else {
    idle_.push_back(std::move(c));
  }
  cv_.notify_one();
}

Status DaemonBlockStore::Run(int timeout_ms, const Call& call) {
  const Deadline deadline = Deadline::In(timeout_ms);
  for (int attempt = 0;; ++attempt) {
    std::unique_ptr<DaemonConnection> c;
    bool fresh = false;
    Status s = Acquire(deadline, &c, &fresh);
    if (!s.ok()) return s;
    s = call(c.get(), deadline);
    const bool retry = c->broken() && c->peer_gone() && !fresh && !c->answered() && attempt == 0;
    Return(std::move(c), s);
    if (!retry) return s;
  }
}

Status DaemonBlockStore::SimpleCall(Op op, std::string_view request, std::string* response,
                                    int timeout_ms) {
  return Run(timeout_ms, [&](DaemonConnection* c, const Deadline& deadline) {
    return c->Call(op, request, response, deadline);
  });
}

Status DaemonBlockStore::CheckWritable() const {
  if (options_.read_only) return Status::NotSupported("store opened read-only");
  return Status::OK();
}

void DaemonBlockStore::MultiGet(std::span<const Hash128> keys, std::vector<std::string>* values,
                                std::vector<Status>* statuses) {
  const size_t n = keys.size();
  values->resize(n);
  statuses->assign(n, Status::OK());
  if (n == 0) return;
  std::vector<size_t> pending(n);
  for (size_t i = 0; i < n; ++i) pending[i] = i;
  std::vector<Hash128> batch;
  std::string table;
  Status s = Run(options_.call_timeout_ms, [&](DaemonConnection* c, const Deadline& deadline) {
    while (!pending.empty()) {
      const size_t count = std::min<size_t>(pending.size(), daemon::kMaxBatchKeys);
      batch.clear();
      for (size_t j = 0; j < count; ++j) batch.push_back(keys[pending[j]]);
      const std::string body = KeysBody(batch);
      const iovec piece = Piece(body);
      Status st = c->Send(Op::kGet, std::span<const iovec>(&piece, 1), deadline);
      FrameHeader h;
      if (st.ok()) st = c->Receive(&h, deadline);
      if (!st.ok()) return st;
      table.resize(4 + 8 * count);
      if (h.body_bytes < table.size()) {
        c->Abandon();
        return Status::Corruption("kvtierd answered a get of " + std::to_string(count) + " keys with " +
                                  std::to_string(h.body_bytes) + " bytes");
      }
      st = c->Read(table.data(), table.size(), deadline);
      if (!st.ok()) return st;
      uint64_t payload = 0;
      for (size_t j = 0; j < count; ++j) payload += daemon::GetU32(table.data() + 4 + 8 * j + 4);
      if (daemon::GetU32(table.data()) != count || table.size() + payload != h.body_bytes) {
        c->Abandon();
        return Status::Corruption("kvtierd answered a get with an inconsistent entry table");
      }
      std::vector<size_t> deferred;
      for (size_t j = 0; j < count; ++j) {
        const size_t i = pending[j];
        const uint8_t code = static_cast<uint8_t>(table[4 + 8 * j]);
        const uint32_t len = daemon::GetU32(table.data() + 4 + 8 * j + 4);
        std::string& value = (*values)[i];
        if (code == daemon::kCodeDeferred) {
          deferred.push_back(i);
          continue;
        }
        value.resize(len);  // the record lands in the caller's string: no second copy
        st = c->Read(value.data(), len, deadline);
        if (!st.ok()) return st;
        if (code == 0) continue;
        Status entry = daemon::StatusFromWire(code, value);
        if (entry.IsNotFound() && value.empty()) entry = Status::NotFound("no record for key " + keys[i].ToHex());
        (*statuses)[i] = entry;
        value.clear();
      }
      if (deferred.size() == count) {
        c->Abandon();
        return Status::Corruption("kvtierd deferred every key of a get");
      }
      pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(count));
      pending.insert(pending.begin(), deferred.begin(), deferred.end());
    }
    return Status::OK();
  });
  if (!s.ok()) {
    for (size_t i : pending) {
      (*statuses)[i] = s;
      (*values)[i].clear();
    }
  }
}

Status DaemonBlockStore::Exists(std::span<const Hash128> keys, std::vector<uint8_t>* present) {
  present->assign(keys.size(), 0);
  for (size_t from = 0; from < keys.size(); from += daemon::kMaxBatchKeys) {
    const auto batch = keys.subspan(from, std::min<size_t>(daemon::kMaxBatchKeys, keys.size() - from));
    std::string response;
    Status s = SimpleCall(Op::kExists, KeysBody(batch), &response, options_.call_timeout_ms);
    if (!s.ok()) return s;
    WireReader r(response);
    if (r.U32() != batch.size() || r.remaining() != batch.size())
      return Status::Corruption("kvtierd answered exists of " + std::to_string(batch.size()) +
                                " keys with " + std::to_string(response.size()) + " bytes");
    const std::string_view bits = r.Bytes(batch.size());
    for (size_t j = 0; j < batch.size(); ++j) (*present)[from + j] = bits[j] != 0 ? 1 : 0;
  }
  return Status::OK();
}

Status DaemonBlockStore::Put(std::span<const std::string_view> records) {
  Status s = CheckWritable();
  if (!s.ok() || records.empty()) return s;
  // One frame per run of records that fits; each frame is one atomic batch.
  const uint64_t limit = max_frame_bytes_.load(std::memory_order_relaxed) - daemon::kFrameHeaderBytes;
  size_t from = 0;
  while (from < records.size()) {
    uint64_t size = 4;
    size_t to = from;
    while (to < records.size() && to - from < daemon::kMaxBatchKeys &&
           size + 4 + records[to].size() <= limit) {
      size += 4 + records[to].size();
      ++to;
    }
    if (to == from)
      return Status::InvalidArgument("record " + std::to_string(from) + " of the batch is " +
                                     std::to_string(records[from].size()) +
                                     " bytes, more than kvtierd's frame limit of " +
                                     std::to_string(limit + daemon::kFrameHeaderBytes) +
                                     " bytes (kvtierd --max-frame-bytes)");
    std::string table;
    WireWriter w(&table);
    w.U32(static_cast<uint32_t>(to - from));
    for (size_t i = from; i < to; ++i) w.U32(static_cast<uint32_t>(records[i].size()));
    std::vector<iovec> iov;
    iov.reserve(to - from + 1);
    iov.push_back(Piece(table));
    for (size_t i = from; i < to; ++i) iov.push_back(Piece(records[i]));  // sent from where they lie
    s = Run(options_.call_timeout_ms, [&](DaemonConnection* c, const Deadline& deadline) {
      std::string response;
      return c->Call(Op::kPut, iov, &response, deadline);
    });
    if (!s.ok()) return s;
    from = to;
  }
  return Status::OK();
}

Status DaemonBlockStore::KeysCall(Op op, std::span<const Hash128> keys) {
  Status s = CheckWritable();
  if (!s.ok()) return s;
  for (size_t from = 0; from < keys.size(); from += daemon::kMaxBatchKeys) {
    const auto batch = keys.subspan(from, std::min<size_t>(daemon::kMaxBatchKeys, keys.size() - from));
    std::string response;
    s = SimpleCall(op, KeysBody(batch), &response, options_.call_timeout_ms);
    if (!s.ok()) return s;
  }
  return Status::OK();
}

Status DaemonBlockStore::Touch(std::span<const Hash128> keys) { return KeysCall(Op::kTouch, keys); }
Status DaemonBlockStore::Delete(std::span<const Hash128> keys) { return KeysCall(Op::kDelete, keys); }

Status DaemonBlockStore::Flush() {
  if (options_.read_only) return Status::OK();
  std::string response;
  return SimpleCall(Op::kFlush, {}, &response, options_.call_timeout_ms);
}

Status DaemonBlockStore::GetStats(StoreStats* stats) {
  std::string response;
  Status s = SimpleCall(Op::kStoreStats, {}, &response, options_.call_timeout_ms);
  if (!s.ok()) return s;
  WireReader r(response);
  if (!daemon::DecodeStoreStats(&r, stats) || !r.done())
    return Status::Corruption("kvtierd sent malformed store stats");
  return Status::OK();
}

Status DaemonBlockStore::RegisterNamespace(const Namespace& ns) {
  Status s = CheckWritable();
  if (!s.ok()) return s;
  std::string body, response;
  WireWriter w(&body);
  daemon::EncodeNamespace(ns, &w);
  return SimpleCall(Op::kRegisterNamespace, body, &response, options_.call_timeout_ms);
}

Status DaemonBlockStore::ListNamespaces(std::vector<NamespaceEntry>* out) {
  out->clear();
  std::string response;
  Status s = SimpleCall(Op::kListNamespaces, {}, &response, options_.call_timeout_ms);
  if (!s.ok()) return s;
  WireReader r(response);
  const uint32_t n = r.U32();
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    NamespaceEntry e;
    if (daemon::DecodeNamespaceEntry(&r, &e)) out->push_back(std::move(e));
  }
  if (!r.done()) return Status::Corruption("kvtierd sent a malformed namespace list");
  return Status::OK();
}

Status DaemonBlockStore::GetMeta(const Hash128& key, RecordMeta* meta) {
  std::string body, response;
  WireWriter w(&body);
  w.Key(key);
  Status s = SimpleCall(Op::kGetMeta, body, &response, options_.call_timeout_ms);
  if (!s.ok()) return s;
  WireReader r(response);
  if (!daemon::DecodeRecordMeta(&r, meta) || !r.done())
    return Status::Corruption("kvtierd sent malformed record metadata");
  return Status::OK();
}

Status DaemonBlockStore::ForEachRecord(const std::function<bool(const RecordMeta&)>& fn) {
  std::string page;
  return Run(options_.maintenance_timeout_ms, [&](DaemonConnection* c, const Deadline& deadline) {
    Status s = c->Send(Op::kForEachRecord, {}, deadline);
    for (bool more = true; s.ok() && more;) {
      FrameHeader h;
      s = c->Receive(&h, deadline);
      if (!s.ok()) return s;
      more = (h.flags & daemon::kFlagMore) != 0;
      page.resize(h.body_bytes);
      s = c->Read(page.data(), page.size(), deadline);
      if (!s.ok()) return s;
      WireReader r(page);
      const uint32_t n = r.U32();
      for (uint32_t i = 0; i < n; ++i) {
        RecordMeta meta;
        if (!daemon::DecodeRecordMeta(&r, &meta)) break;
        if (!fn(meta)) {
          if (more) c->Abandon();  // the rest of the stream is not read
          return Status::OK();
        }
      }
      if (!r.done()) {
        c->Abandon();
        return Status::Corruption("kvtierd sent a malformed page of record metadata");
      }
    }
    return s;
  });
}

Status DaemonBlockStore::TrimCall(Op op, std::string_view request, TrimResult* result) {
  *result = TrimResult{};
  Status s = CheckWritable();
  if (!s.ok()) return s;
  std::string response;
  s = SimpleCall(op, request, &response, options_.maintenance_timeout_ms);
  if (!s.ok()) return s;
  WireReader r(response);
  if (!daemon::DecodeTrimResult(&r, result) || !r.done())
    return Status::Corruption("kvtierd sent a malformed trim result");
  return Status::OK();
}

Status DaemonBlockStore::TrimToBytes(uint64_t max_bytes, TrimResult* result) {
  std::string body;
  WireWriter(&body).U64(max_bytes);
  return TrimCall(Op::kTrimToBytes, body, result);
}

Status DaemonBlockStore::TrimOlderThan(int64_t unix_us, TrimResult* result) {
  std::string body;
  WireWriter(&body).I64(unix_us);
  return TrimCall(Op::kTrimOlderThan, body, result);
}

Status DaemonBlockStore::DropNamespace(const Hash128& fingerprint, TrimResult* result) {
  std::string body;
  WireWriter(&body).Key(fingerprint);
  return TrimCall(Op::kDropNamespace, body, result);
}

Status DaemonBlockStore::Compact(CompactResult* result) {
  *result = CompactResult{};
  Status s = CheckWritable();
  if (!s.ok()) return s;
  std::string response;
  s = SimpleCall(Op::kCompact, {}, &response, options_.maintenance_timeout_ms);
  if (!s.ok()) return s;
  WireReader r(response);
  result->files_bytes_before = r.U64();
  result->files_bytes_after = r.U64();
  if (!r.done()) return Status::Corruption("kvtierd sent a malformed compact result");
  return Status::OK();
}

}  // namespace kvtier
