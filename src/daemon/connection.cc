// One kvtierd client connection (see connection.h and protocol.h).
#include "daemon/connection.h"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>

namespace kvtier::daemon {

namespace {

// Keys read from the store per MultiGet while a get response is built.
constexpr size_t kGetChunk = 16;
// A body buffer larger than this is freed after its request.
constexpr size_t kRetainedBodyBytes = 16u << 20;
// Value buffers beyond this many bytes are freed after their request.
constexpr size_t kRetainedValueBytes = 16u << 20;
// Record metadata entries per kForEachRecord frame.
constexpr uint32_t kMetaPage = 4096;
// Error messages on the wire are cut to this length.
constexpr size_t kMaxMessageBytes = 4096;
constexpr int kRejectWriteMs = 1000;

bool IsRejection(const Status& s) {
  return s.IsCorruption() || s.IsInvalidArgument() || s.IsFull() || s.IsNotSupported();
}

// A client name made safe for logs and metric labels.
std::string CleanName(std::string_view raw, int32_t pid) {
  std::string name;
  for (char c : raw) {
    const bool safe = std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
                      c == '.' || c == ':' || c == '/' || c == '@';
    name += safe ? c : '_';
  }
  if (name.empty()) name = "pid" + std::to_string(pid);
  return name;
}

}  // namespace

Connection::Connection(int fd, const ucred& peer, std::string refusal,
                       const ConnectionContext* context)
    : fd_(fd), peer_(peer), refusal_(std::move(refusal)), context_(context) {}

Connection::~Connection() {
  if (counters_ != nullptr && context_->metrics->Disconnected(name_))
    context_->log(Who() + " disconnected (its last connection)");
}

std::string Connection::Who() const {
  return "client " + (name_.empty() ? std::string("(no hello yet)") : name_) + " (pid " +
         std::to_string(peer_.pid) + ", uid " + std::to_string(peer_.uid) + ")";
}

void Connection::Serve() {
  for (;;) {
    bool shutdown = false;
    if (!ReadRequest(&shutdown)) return;
    started_ = std::chrono::steady_clock::now();
    if (!Dispatch()) return;
    if (body_capacity_ > kRetainedBodyBytes) {
      body_.reset();
      body_capacity_ = 0;
    }
    if (values_.size() > kGetChunk) values_.resize(kGetChunk);
    size_t retained = 0;  // value buffers kept for the next get, in bytes
    for (std::string& v : values_) {
      if (retained + v.capacity() > kRetainedValueBytes) std::string().swap(v);
      retained += v.capacity();
    }
  }
}

bool Connection::ReadRequest(bool* shutdown) {
  const DaemonOptions& o = *context_->options;
  header_ = FrameHeader{};
  const IoOutcome idle = WaitReadable(fd_, Deadline::Never(), context_->stop_fd);
  if (idle == IoOutcome::kAborted) {
    *shutdown = true;
    return false;
  }
  if (idle != IoOutcome::kOk) return false;
  uint8_t head[kFrameHeaderBytes];
  const Deadline deadline = Deadline::In(o.io_timeout_ms);
  IoResult r = ReadExact(fd_, head, sizeof(head), deadline);
  if (!r.ok()) {
    if (r.outcome == IoOutcome::kClosed && r.bytes == 0) return false;  // hung up between requests
    return Reject(Status::Corruption("truncated frame header: " + r.Describe(sizeof(head))));
  }
  Status s = DecodeFrameHeader(head, &header_);
  if (!s.ok()) return Reject(s);
  if (!IsRequestOp(header_.op)) return Reject(Status::Corruption("unknown request " + OpName(header_.op)));
  if (header_.status != 0 || header_.flags != 0)
    return Reject(Status::Corruption("a request frame must have status and flags 0 (got " +
                                     std::to_string(header_.status) + ", " +
                                     std::to_string(header_.flags) + ")"));
  const uint64_t frame_bytes = kFrameHeaderBytes + uint64_t{header_.body_bytes};
  if (frame_bytes > o.max_frame_bytes)
    return Reject(Status::InvalidArgument(
        OpName(header_.op) + " frame of " + std::to_string(frame_bytes) +
        " bytes exceeds kvtierd's frame limit of " + std::to_string(o.max_frame_bytes) +
        " bytes (--max-frame-bytes)"));
  const bool hello = header_.op == static_cast<uint8_t>(Op::kHello);
  if (!greeted_ && !hello)
    return Reject(Status::InvalidArgument("the first frame must be hello, got " + OpName(header_.op)));
  if (greeted_ && hello) return Reject(Status::InvalidArgument("hello sent twice"));
  if (hello && header_.body_bytes > kMaxHelloBytes)
    return Reject(Status::InvalidArgument("hello of " + std::to_string(header_.body_bytes) +
                                          " bytes (at most " + std::to_string(kMaxHelloBytes) + ")"));
  if (header_.body_bytes > body_capacity_) {
    body_.reset(new char[header_.body_bytes]);  // no zero-fill: the socket fills it
    body_capacity_ = header_.body_bytes;
  }
  r = ReadExact(fd_, body_.get(), header_.body_bytes, deadline);
  if (!r.ok())
    return Reject(Status::Corruption("truncated " + OpName(header_.op) + " frame: body " +
                                     r.Describe(header_.body_bytes)));
  return true;
}

bool Connection::Respond(const Status& status, std::span<const iovec> body, uint16_t flags) {
  FrameHeader h;
  h.op = header_.op;
  h.status = StatusCodeByte(status);
  h.flags = flags;
  h.request_id = header_.request_id;
  std::string_view message;
  iovec message_iov;
  if (!status.ok()) {
    message = std::string_view(status.message()).substr(0, kMaxMessageBytes);
    message_iov = {const_cast<char*>(message.data()), message.size()};
    body = std::span<const iovec>(&message_iov, 1);
  }
  uint64_t total = 0;
  for (const iovec& v : body) total += v.iov_len;
  h.body_bytes = static_cast<uint32_t>(total);
  const IoResult r =
      WriteFrame(fd_, h, body, Deadline::In(context_->options->io_timeout_ms));
  if (!r.ok()) {
    context_->log(Who() + ": cannot answer " + OpName(header_.op) + ": " +
                  r.Describe(kFrameHeaderBytes + total) + "; closing the connection");
    return false;
  }
  return true;
}

bool Connection::Respond(const Status& status, std::string_view body, uint16_t flags) {
  const iovec piece{const_cast<char*>(body.data()), body.size()};
  return Respond(status, std::span<const iovec>(&piece, body.empty() ? 0 : 1), flags);
}

bool Connection::Reject(const Status& why) {
  context_->metrics->ProtocolError(counters_.get());
  context_->log(Who() + ": " + why.ToString() + "; closing the connection");
  FrameHeader h;
  h.op = static_cast<uint8_t>(Op::kProtocolError);
  h.status = StatusCodeByte(why);
  h.request_id = header_.request_id;
  const std::string_view message = std::string_view(why.message()).substr(0, kMaxMessageBytes);
  h.body_bytes = static_cast<uint32_t>(message.size());
  (void)WriteFrame(fd_, h, message, Deadline::In(kRejectWriteMs));  // best effort
  return false;
}

void Connection::Finish(RequestRecord record) {
  record.micros = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                            std::chrono::steady_clock::now() - started_)
                                            .count());
  context_->metrics->Record(counters_.get(), record);
}

bool Connection::Dispatch() {
  switch (static_cast<Op>(header_.op)) {
    case Op::kHello: return Hello();
    case Op::kGet: return Get();
    case Op::kExists: return Exists();
    case Op::kPut: return Put();
    case Op::kTouch: return KeysCall(&BlockStore::Touch);
    case Op::kDelete: return KeysCall(&BlockStore::Delete);
    case Op::kForEachRecord: return ForEachRecord();
    case Op::kTrimToBytes:
    case Op::kTrimOlderThan:
    case Op::kDropNamespace:
    case Op::kCompact: return Maintenance();
    default: return Other();
  }
}

bool Connection::Hello() {
  daemon::Hello hello;
  if (!DecodeHello(body(), &hello))
    return Reject(Status::Corruption("malformed hello body (" + std::to_string(body().size()) + " bytes)"));
  name_ = CleanName(hello.name, peer_.pid);
  if (!refusal_.empty()) {
    context_->log(Who() + " refused: " + refusal_);
    Respond(Status::IOError(refusal_));
    return false;
  }
  if (hello.min_version > kProtocolVersion || hello.max_version < kProtocolVersion) {
    context_->metrics->ProtocolError(nullptr);
    const Status s = Status::NotSupported(
        "client speaks kvtierd protocol versions " + std::to_string(hello.min_version) + "-" +
        std::to_string(hello.max_version) + ", this kvtierd speaks version " +
        std::to_string(kProtocolVersion));
    context_->log(Who() + ": " + s.ToString() + "; closing the connection");
    Respond(s);
    return false;
  }
  ClientIdentity who{name_, peer_.uid, peer_.gid, peer_.pid};
  bool first = false;
  counters_ = context_->metrics->Connected(who, &first);
  if (first) context_->log(Who() + " connected");
  greeted_ = true;
  Welcome welcome;
  welcome.version = kProtocolVersion;
  welcome.max_frame_bytes = context_->options->max_frame_bytes;
  welcome.pid = static_cast<uint32_t>(::getpid());
  welcome.store = context_->store->Describe();
  const bool ok = Respond(Status::OK(), EncodeWelcome(welcome));
  Finish(RequestRecord{Op::kHello});
  return ok;
}

bool Connection::ParseKeys() {
  WireReader r(body());
  const uint32_t n = r.U32();
  if (!r.ok() || n > kMaxBatchKeys || body().size() != 4 + 16ull * n) return false;
  keys_.resize(n);
  const auto* p = reinterpret_cast<const uint8_t*>(body().data()) + 4;
  for (uint32_t i = 0; i < n; ++i) keys_[i] = Hash128::FromBytes(p + 16 * i);
  return true;
}

bool Connection::Get() {
  if (!ParseKeys())
    return Reject(Status::Corruption("malformed get body (" + std::to_string(body().size()) +
                                     " bytes is not a key count and its keys)"));
  const size_t n = keys_.size();
  const uint64_t limit = context_->options->max_frame_bytes - kFrameHeaderBytes;
  scratch_.assign(4 + 8 * n, '\0');
  PutU32(scratch_.data(), static_cast<uint32_t>(n));
  if (values_.size() < n) values_.resize(n);
  std::vector<std::string> chunk;
  uint64_t size = scratch_.size();
  bool full = false;
  RequestRecord rec{Op::kGet};
  rec.keys = n;
  auto entry = [&](size_t i, uint8_t code, size_t len) {
    char* e = scratch_.data() + 4 + 8 * i;
    e[0] = static_cast<char>(code);
    PutU32(e + 4, static_cast<uint32_t>(len));
    size += len;
  };
  size_t processed = 0;
  for (size_t i = 0; i < n && !full; i += kGetChunk) {
    const size_t k = std::min(kGetChunk, n - i);
    processed = i + k;
    chunk.resize(k);
    for (size_t j = 0; j < k; ++j) chunk[j].swap(values_[i + j]);  // reuse the buffers
    context_->store->MultiGet(std::span<const Hash128>(keys_).subspan(i, k), &chunk, &statuses_);
    for (size_t j = 0; j < k; ++j) {
      const size_t idx = i + j;
      std::string& value = values_[idx];
      value.swap(chunk[j]);
      const Status& st = statuses_[j];
      if (full) {
        entry(idx, kCodeDeferred, 0);
        continue;
      }
      if (st.IsNotFound()) {
        entry(idx, StatusCodeByte(st), 0);
        continue;
      }
      if (st.ok() && size + value.size() > limit) {
        if (scratch_.size() + value.size() <= limit) {  // fits in a response of its own
          full = true;
          entry(idx, kCodeDeferred, 0);
          continue;
        }
        value = "record " + keys_[idx].ToHex() + " is " + std::to_string(value.size()) +
                " bytes, more than kvtierd's frame limit of " +
                std::to_string(context_->options->max_frame_bytes) + " bytes (--max-frame-bytes)";
        entry(idx, static_cast<uint8_t>(Status::Code::kIOError), value.size());
        rec.error = true;
        continue;
      }
      if (st.ok()) {
        ++rec.hits;
        rec.bytes += value.size();
        entry(idx, 0, value.size());
      } else {
        value = std::string(st.message()).substr(0, kMaxMessageBytes);
        entry(idx, StatusCodeByte(st), value.size());
        rec.error = true;
      }
    }
  }
  for (size_t idx = processed; idx < n; ++idx) entry(idx, kCodeDeferred, 0);
  std::vector<iovec> iov;
  iov.reserve(n + 1);
  iov.push_back({scratch_.data(), scratch_.size()});
  for (size_t idx = 0; idx < n; ++idx) {
    const uint32_t len = GetU32(scratch_.data() + 4 + 8 * idx + 4);
    if (len > 0) iov.push_back({values_[idx].data(), len});
  }
  Finish(rec);
  const bool ok = Respond(Status::OK(), iov);
  return ok;
}

bool Connection::Exists() {
  if (!ParseKeys())
    return Reject(Status::Corruption("malformed exists body (" + std::to_string(body().size()) + " bytes)"));
  std::vector<uint8_t> present;
  Status s = context_->store->Exists(keys_, &present);
  RequestRecord rec{Op::kExists};
  rec.keys = keys_.size();
  rec.error = !s.ok();
  Finish(rec);
  if (!s.ok()) return Respond(s);
  scratch_.clear();
  WireWriter w(&scratch_);
  w.U32(static_cast<uint32_t>(present.size()));
  w.Bytes(std::string_view(reinterpret_cast<const char*>(present.data()), present.size()));
  return Respond(s, scratch_);
}

bool Connection::Put() {
  WireReader r(body());
  const uint32_t n = r.U32();
  if (!r.ok() || n > kMaxBatchKeys || 4 + 4ull * n > body().size())
    return Reject(Status::Corruption("malformed put body (" + std::to_string(body().size()) +
                                     " bytes cannot hold the record count and lengths)"));
  std::vector<std::string_view> records(n);
  uint64_t offset = 4 + 4ull * n, total = 0;
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t len = r.U32();
    if (offset + len > body().size())
      return Reject(Status::Corruption("malformed put body: record " + std::to_string(i) +
                                       " of " + std::to_string(n) + " runs past the frame"));
    records[i] = body().substr(offset, len);
    offset += len;
    total += len;
  }
  if (offset != body().size())
    return Reject(Status::Corruption("malformed put body: " + std::to_string(body().size() - offset) +
                                     " bytes after the last record"));
  Status s = context_->store->Put(records);
  RequestRecord rec{Op::kPut};
  rec.keys = n;
  rec.bytes = total;
  rec.rejected = !s.ok() && IsRejection(s);
  rec.error = !s.ok() && !rec.rejected;
  if (!s.ok()) context_->log(Who() + ": put of " + std::to_string(n) + " records refused: " + s.ToString());
  Finish(rec);
  const bool ok = Respond(s);
  return ok;
}

bool Connection::KeysCall(Status (BlockStore::*call)(std::span<const Hash128>)) {
  if (!ParseKeys())
    return Reject(Status::Corruption("malformed " + OpName(header_.op) + " body (" +
                                     std::to_string(body().size()) + " bytes)"));
  Status s = (context_->store->*call)(keys_);
  RequestRecord rec{static_cast<Op>(header_.op)};
  rec.error = !s.ok();
  Finish(rec);
  const bool ok = Respond(s);
  return ok;
}

bool Connection::ForEachRecord() {
  if (!body().empty()) return Reject(Status::Corruption("for-each-record takes no body"));
  scratch_.assign(4, '\0');
  uint32_t count = 0;
  bool write_failed = false, stopped = false;
  auto page = [&](uint16_t flags) {
    PutU32(scratch_.data(), count);
    return Respond(Status::OK(), scratch_, flags);
  };
  Status s = context_->store->ForEachRecord([&](const RecordMeta& meta) {
    WireWriter w(&scratch_);
    EncodeRecordMeta(meta, &w);
    if (++count < kMetaPage) return true;
    pollfd p{context_->stop_fd, POLLIN, 0};
    if (::poll(&p, 1, 0) > 0) {
      stopped = true;
      return false;
    }
    if (!page(kFlagMore)) {
      write_failed = true;
      return false;
    }
    scratch_.assign(4, '\0');
    count = 0;
    return true;
  });
  if (write_failed) return false;
  if (stopped) s = Status::Unavailable("kvtierd is shutting down");
  RequestRecord rec{Op::kForEachRecord};
  rec.error = !s.ok();
  Finish(rec);
  const bool ok = s.ok() ? page(0) : Respond(s);
  return ok;
}

bool Connection::Maintenance() {
  BlockStore* store = context_->store;
  WireReader r(body());
  TrimResult trim;
  CompactResult compact;
  Status s;
  const Op op = static_cast<Op>(header_.op);
  if (op == Op::kTrimToBytes) {
    const uint64_t max_bytes = r.U64();
    if (!r.done()) return Reject(Status::Corruption("malformed trim-to-bytes body"));
    s = store->TrimToBytes(max_bytes, &trim);
  } else if (op == Op::kTrimOlderThan) {
    const int64_t unix_us = r.I64();
    if (!r.done()) return Reject(Status::Corruption("malformed trim-older-than body"));
    s = store->TrimOlderThan(unix_us, &trim);
  } else if (op == Op::kDropNamespace) {
    const Hash128 fp = r.Key();
    if (!r.done()) return Reject(Status::Corruption("malformed drop-namespace body"));
    s = store->DropNamespace(fp, &trim);
  } else {
    if (!body().empty()) return Reject(Status::Corruption("compact takes no body"));
    s = store->Compact(&compact);
  }
  scratch_.clear();
  WireWriter w(&scratch_);
  if (op == Op::kCompact) {
    w.U64(compact.files_bytes_before);
    w.U64(compact.files_bytes_after);
  } else {
    EncodeTrimResult(trim, &w);
  }
  context_->log(Who() + ": " + OpName(header_.op) + ": " + s.ToString());
  RequestRecord rec{op};
  rec.error = !s.ok();
  Finish(rec);
  const bool ok = s.ok() ? Respond(s, scratch_) : Respond(s);
  return ok;
}

bool Connection::Other() {
  BlockStore* store = context_->store;
  const Op op = static_cast<Op>(header_.op);
  scratch_.clear();
  WireWriter w(&scratch_);
  Status s;
  if (op == Op::kRegisterNamespace) {
    WireReader r(body());
    Namespace ns;
    if (!DecodeNamespace(&r, &ns) || !r.done())
      return Reject(Status::Corruption("malformed register-namespace body"));
    s = store->RegisterNamespace(ns);
  } else if (op == Op::kGetMeta) {
    if (body().size() != 16) return Reject(Status::Corruption("malformed get-meta body"));
    RecordMeta meta;
    s = store->GetMeta(Hash128::FromBytes(reinterpret_cast<const uint8_t*>(body().data())), &meta);
    if (s.ok()) EncodeRecordMeta(meta, &w);
  } else if (!body().empty()) {
    return Reject(Status::Corruption(OpName(header_.op) + " takes no body"));
  } else if (op == Op::kFlush) {
    s = store->Flush();
  } else if (op == Op::kStoreStats) {
    StoreStats stats;
    s = store->GetStats(&stats);
    if (s.ok()) EncodeStoreStats(stats, &w);
  } else if (op == Op::kDaemonStats) {
    EncodeDaemonStats(context_->stats(), &w);
  } else if (op == Op::kListNamespaces) {
    std::vector<NamespaceEntry> entries;
    s = store->ListNamespaces(&entries);
    w.U32(static_cast<uint32_t>(entries.size()));
    for (const NamespaceEntry& e : entries) EncodeNamespaceEntry(e, &w);
  } else {
    return Reject(Status::Corruption("unexpected " + OpName(header_.op)));
  }
  RequestRecord rec{op};
  rec.error = !s.ok() && !s.IsNotFound() && !s.IsInvalidArgument();
  Finish(rec);
  const bool ok = s.ok() ? Respond(s, scratch_) : Respond(s);
  return ok;
}

}  // namespace kvtier::daemon
