// Encoding and decoding of kvtierd frames and bodies (see protocol.h).
#include "daemon/protocol.h"

#include <cstdio>

namespace kvtier::daemon {

namespace {

void EncodeLatency(const LatencySummary& l, WireWriter* w) {
  w->U64(l.count);
  w->F64(l.sum_seconds);
  w->F64(l.p50_seconds);
  w->F64(l.p90_seconds);
  w->F64(l.p99_seconds);
  w->F64(l.p999_seconds);
}

void DecodeLatency(WireReader* r, LatencySummary* l) {
  l->count = r->U64();
  l->sum_seconds = r->F64();
  l->p50_seconds = r->F64();
  l->p90_seconds = r->F64();
  l->p99_seconds = r->F64();
  l->p999_seconds = r->F64();
}

// The counters in one fixed order, shared by encoder and decoder.
template <typename Counters, typename Fn>
void ForEachCounter(Counters& c, Fn&& fn) {
  for (auto* v : {&c.requests, &c.get_requests, &c.get_keys, &c.get_hits, &c.get_bytes,
                  &c.put_requests, &c.put_records, &c.put_bytes, &c.put_rejected,
                  &c.exists_requests, &c.exists_keys, &c.touch_requests, &c.delete_requests,
                  &c.flush_requests, &c.other_requests, &c.errors, &c.protocol_errors}) {
    fn(v);
  }
}

void EncodeCounters(const DaemonCounters& c, WireWriter* w) {
  ForEachCounter(c, [w](const uint64_t* v) { w->U64(*v); });
  for (const LatencySummary* l : {&c.get_latency, &c.put_latency, &c.exists_latency, &c.other_latency})
    EncodeLatency(*l, w);
}

void DecodeCounters(WireReader* r, DaemonCounters* c) {
  ForEachCounter(*c, [r](uint64_t* v) { *v = r->U64(); });
  for (LatencySummary* l : {&c->get_latency, &c->put_latency, &c->exists_latency, &c->other_latency})
    DecodeLatency(r, l);
}

void EncodeLayout(const BlockLayout& l, WireWriter* w) {
  w->U32(l.num_layers);
  w->U32(l.num_kv_heads);
  w->U32(l.head_dim);
  w->U32(l.block_size);
  w->U8(static_cast<uint8_t>(l.dtype));
}

void DecodeLayout(WireReader* r, BlockLayout* l) {
  l->num_layers = r->U32();
  l->num_kv_heads = r->U32();
  l->head_dim = r->U32();
  l->block_size = r->U32();
  l->dtype = static_cast<DType>(r->U8());
}

}  // namespace

std::string OpName(uint8_t op) {
  switch (static_cast<Op>(op)) {
    case Op::kHello: return "hello";
    case Op::kGet: return "get";
    case Op::kExists: return "exists";
    case Op::kPut: return "put";
    case Op::kTouch: return "touch";
    case Op::kDelete: return "delete";
    case Op::kFlush: return "flush";
    case Op::kStoreStats: return "store-stats";
    case Op::kDaemonStats: return "daemon-stats";
    case Op::kRegisterNamespace: return "register-namespace";
    case Op::kListNamespaces: return "list-namespaces";
    case Op::kGetMeta: return "get-meta";
    case Op::kForEachRecord: return "for-each-record";
    case Op::kTrimToBytes: return "trim-to-bytes";
    case Op::kTrimOlderThan: return "trim-older-than";
    case Op::kDropNamespace: return "drop-namespace";
    case Op::kCompact: return "compact";
    case Op::kProtocolError: return "protocol-error";
  }
  return "op " + std::to_string(op);
}

bool IsRequestOp(uint8_t op) {
  return op >= static_cast<uint8_t>(Op::kHello) && op <= static_cast<uint8_t>(Op::kCompact);
}

void EncodeFrameHeader(const FrameHeader& h, uint8_t out[kFrameHeaderBytes]) {
  const uint32_t magic = kFrameMagic;
  std::memcpy(out, &magic, 4);
  out[4] = h.op;
  out[5] = h.status;
  std::memcpy(out + 6, &h.flags, 2);
  std::memcpy(out + 8, &h.request_id, 4);
  std::memcpy(out + 12, &h.body_bytes, 4);
}

Status DecodeFrameHeader(const uint8_t in[kFrameHeaderBytes], FrameHeader* h) {
  uint32_t magic;
  std::memcpy(&magic, in, 4);
  if (magic != kFrameMagic) {
    char hex[9];
    std::snprintf(hex, sizeof(hex), "%02x%02x%02x%02x", in[0], in[1], in[2], in[3]);
    return Status::Corruption(std::string("frame does not start with the magic \"KVTD\" (got bytes ") +
                              hex + ")");
  }
  h->op = in[4];
  h->status = in[5];
  std::memcpy(&h->flags, in + 6, 2);
  std::memcpy(&h->request_id, in + 8, 4);
  std::memcpy(&h->body_bytes, in + 12, 4);
  return Status::OK();
}

uint8_t StatusCodeByte(const Status& s) { return static_cast<uint8_t>(s.code()); }

Status StatusFromWire(uint8_t code, std::string_view message) {
  std::string m(message);
  switch (static_cast<Status::Code>(code)) {
    case Status::Code::kOk: return Status::OK();
    case Status::Code::kNotFound: return Status::NotFound(m);
    case Status::Code::kCorruption: return Status::Corruption(m);
    case Status::Code::kInvalidArgument: return Status::InvalidArgument(m);
    case Status::Code::kIOError: return Status::IOError(m);
    case Status::Code::kBusy: return Status::Busy(m);
    case Status::Code::kFull: return Status::Full(m);
    case Status::Code::kNotSupported: return Status::NotSupported(m);
    case Status::Code::kUnavailable: return Status::Unavailable(m);
  }
  return Status::Corruption("kvtierd answered with unknown status code " + std::to_string(code) +
                            " (" + m + ")");
}

void WireWriter::Key(const Hash128& h) {
  uint8_t b[16];
  h.ToBytes(b);
  Raw(b, 16);
}

void WireWriter::String(std::string_view s) {
  U32(static_cast<uint32_t>(s.size()));
  Bytes(s);
}

bool WireReader::Take(size_t n, const char** p) {
  if (!ok_ || n > in_.size() - pos_) {
    ok_ = false;
    return false;
  }
  *p = in_.data() + pos_;
  pos_ += n;
  return true;
}

#define KVTIER_WIRE_READ(type, n)     \
  type v{};                           \
  const char* p;                      \
  if (Take(n, &p)) std::memcpy(&v, p, n); \
  return v

uint8_t WireReader::U8() { KVTIER_WIRE_READ(uint8_t, 1); }
uint16_t WireReader::U16() { KVTIER_WIRE_READ(uint16_t, 2); }
uint32_t WireReader::U32() { KVTIER_WIRE_READ(uint32_t, 4); }
uint64_t WireReader::U64() { KVTIER_WIRE_READ(uint64_t, 8); }
int64_t WireReader::I64() { KVTIER_WIRE_READ(int64_t, 8); }
double WireReader::F64() { KVTIER_WIRE_READ(double, 8); }
#undef KVTIER_WIRE_READ

Hash128 WireReader::Key() {
  const char* p;
  if (!Take(16, &p)) return Hash128{};
  return Hash128::FromBytes(reinterpret_cast<const uint8_t*>(p));
}

std::string_view WireReader::Bytes(size_t n) {
  const char* p;
  if (!Take(n, &p)) return {};
  return {p, n};
}

std::string WireReader::String() {
  const uint32_t n = U32();
  return std::string(Bytes(n));
}

void EncodeNamespace(const Namespace& ns, WireWriter* w) {
  EncodeLayout(ns.layout, w);
  w->String(ns.model);
  w->String(ns.revision);
  w->String(ns.tokenizer);
  w->U32(ns.tp_rank);
  w->U32(ns.tp_size);
  w->String(ns.salt);
}

bool DecodeNamespace(WireReader* r, Namespace* ns) {
  DecodeLayout(r, &ns->layout);
  ns->model = r->String();
  ns->revision = r->String();
  ns->tokenizer = r->String();
  ns->tp_rank = r->U32();
  ns->tp_size = r->U32();
  ns->salt = r->String();
  return r->ok();
}

void EncodeNamespaceEntry(const NamespaceEntry& e, WireWriter* w) {
  w->Key(e.fingerprint);
  EncodeNamespace(e.ns, w);
  w->U64(e.blocks);
  w->U64(e.raw_bytes);
  w->U64(e.stored_bytes);
  w->I64(e.last_use_us);
}

bool DecodeNamespaceEntry(WireReader* r, NamespaceEntry* e) {
  e->fingerprint = r->Key();
  DecodeNamespace(r, &e->ns);
  e->blocks = r->U64();
  e->raw_bytes = r->U64();
  e->stored_bytes = r->U64();
  e->last_use_us = r->I64();
  return r->ok();
}

void EncodeStoreStats(const StoreStats& s, WireWriter* w) {
  w->U32(s.format_version);
  for (uint64_t v : {s.records, s.raw_bytes, s.stored_bytes, s.max_bytes, s.files_bytes,
                     s.evicted_records, s.orphans_collected})
    w->U64(v);
  w->I64(s.oldest_access_us);
  w->I64(s.newest_access_us);
  w->U8(s.read_only ? 1 : 0);
}

bool DecodeStoreStats(WireReader* r, StoreStats* s) {
  s->format_version = r->U32();
  for (uint64_t* v : {&s->records, &s->raw_bytes, &s->stored_bytes, &s->max_bytes, &s->files_bytes,
                      &s->evicted_records, &s->orphans_collected})
    *v = r->U64();
  s->oldest_access_us = r->I64();
  s->newest_access_us = r->I64();
  s->read_only = r->U8() != 0;
  return r->ok();
}

void EncodeRecordMeta(const RecordMeta& m, WireWriter* w) {
  w->Key(m.key);
  w->Key(m.parent);
  w->Key(m.namespace_fp);
  w->U32(m.depth);
  w->U32(m.num_tokens);
  w->U16(m.flags);
  w->U8(static_cast<uint8_t>(m.dtype));
  w->U64(m.raw_bytes);
  w->U64(m.stored_bytes);
  w->U64(m.access_seq);
  w->I64(m.last_access_us);
}

bool DecodeRecordMeta(WireReader* r, RecordMeta* m) {
  m->key = r->Key();
  m->parent = r->Key();
  m->namespace_fp = r->Key();
  m->depth = r->U32();
  m->num_tokens = r->U32();
  m->flags = r->U16();
  m->dtype = static_cast<DType>(r->U8());
  m->raw_bytes = r->U64();
  m->stored_bytes = r->U64();
  m->access_seq = r->U64();
  m->last_access_us = r->I64();
  return r->ok();
}

void EncodeTrimResult(const TrimResult& t, WireWriter* w) {
  w->U64(t.records_deleted);
  w->U64(t.bytes_freed);
  w->U64(t.orphans_collected);
}

bool DecodeTrimResult(WireReader* r, TrimResult* t) {
  t->records_deleted = r->U64();
  t->bytes_freed = r->U64();
  t->orphans_collected = r->U64();
  return r->ok();
}

void EncodeDaemonStats(const DaemonStats& s, WireWriter* w) {
  w->U32(s.protocol_version);
  w->U32(static_cast<uint32_t>(s.pid));
  w->F64(s.uptime_seconds);
  w->String(s.store);
  EncodeStoreStats(s.store_stats, w);
  w->U32(s.connections);
  w->U64(s.connections_accepted);
  w->U64(s.connections_rejected);
  EncodeCounters(s.total, w);
  w->U32(static_cast<uint32_t>(s.clients.size()));
  for (const DaemonClientStats& c : s.clients) {
    w->String(c.name);
    w->U32(c.uid);
    w->U32(c.gid);
    w->U32(static_cast<uint32_t>(c.pid));
    w->U32(c.connections);
    EncodeCounters(c.counters, w);
  }
}

bool DecodeDaemonStats(WireReader* r, DaemonStats* s) {
  s->protocol_version = r->U32();
  s->pid = static_cast<int32_t>(r->U32());
  s->uptime_seconds = r->F64();
  s->store = r->String();
  DecodeStoreStats(r, &s->store_stats);
  s->connections = r->U32();
  s->connections_accepted = r->U64();
  s->connections_rejected = r->U64();
  DecodeCounters(r, &s->total);
  const uint32_t n = r->U32();
  s->clients.clear();
  for (uint32_t i = 0; i < n && r->ok(); ++i) {
    DaemonClientStats c;
    c.name = r->String();
    c.uid = r->U32();
    c.gid = r->U32();
    c.pid = static_cast<int32_t>(r->U32());
    c.connections = r->U32();
    DecodeCounters(r, &c.counters);
    s->clients.push_back(std::move(c));
  }
  return r->ok();
}

std::string EncodeHello(const Hello& h) {
  std::string out;
  WireWriter w(&out);
  w.U16(h.min_version);
  w.U16(h.max_version);
  w.U32(h.pid);
  const std::string_view name = std::string_view(h.name).substr(0, kMaxClientNameBytes);
  w.U16(static_cast<uint16_t>(name.size()));
  w.Bytes(name);
  return out;
}

bool DecodeHello(std::string_view body, Hello* h) {
  WireReader r(body);
  h->min_version = r.U16();
  h->max_version = r.U16();
  h->pid = r.U32();
  const uint16_t n = r.U16();
  if (n > kMaxClientNameBytes) return false;
  h->name = std::string(r.Bytes(n));
  return r.done();
}

std::string EncodeWelcome(const Welcome& welcome) {
  std::string out;
  WireWriter w(&out);
  w.U16(welcome.version);
  w.U16(0);
  w.U32(welcome.max_frame_bytes);
  w.U32(welcome.pid);
  const std::string_view store = std::string_view(welcome.store).substr(0, 4096);
  w.U16(static_cast<uint16_t>(store.size()));
  w.Bytes(store);
  return out;
}

bool DecodeWelcome(std::string_view body, Welcome* welcome) {
  WireReader r(body);
  welcome->version = r.U16();
  r.U16();
  welcome->max_frame_bytes = r.U32();
  welcome->pid = r.U32();
  const uint16_t n = r.U16();
  welcome->store = std::string(r.Bytes(n));
  return r.done();
}

}  // namespace kvtier::daemon
