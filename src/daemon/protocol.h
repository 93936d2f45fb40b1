// The kvtierd wire protocol: frames over a Unix-domain stream socket.
//
// Every message is one frame: a 16-byte header, then `body_bytes` of body.
// Integers are little-endian; keys are the 16 canonical bytes of a Hash128.
//
//   offset size  field
//   0      4     magic "KVTD"
//   4      1     op (Op)
//   5      1     status code (Status::Code) in responses, 0 in requests
//   6      2     flags (kFlagMore: more response frames follow)
//   8      4     request id (a response echoes it)
//   12     4     body bytes (header + body <= the negotiated frame limit)
//
// A connection starts with kHello (versions, client name); the daemon
// answers with the version it picked and its frame limit, then serves one
// request at a time, in order. A response with a non-OK status carries the
// Status message as its body. A frame the daemon cannot accept (bad magic,
// unknown op, oversized, malformed body, no hello first) is answered with
// op kProtocolError and the connection is closed; other connections never
// notice. Store errors (a bad record in a put) are ordinary responses.
//
// Bodies (requests -> OK responses):
//   kHello        u16 min_version, u16 max_version, u32 pid, u16 n, name[n]
//                 -> u16 version, u16 0, u32 max_frame_bytes, u32 pid,
//                    u16 n, store description[n]
//   kGet          u32 n, key[16]*n
//                 -> u32 n, n * {u8 code, u8[3] 0, u32 len}, then the n
//                    payloads back to back: the record (code OK), the
//                    message (other codes), nothing (kCodeDeferred: did not
//                    fit in this frame, ask again)
//   kExists       u32 n, key[16]*n -> u32 n, u8 present * n
//   kPut          u32 n, u32 len * n, the records back to back -> (empty)
//   kTouch/kDelete u32 n, key[16]*n -> (empty)
//   kFlush, kCompact            (empty) -> (empty) / CompactResult
//   kStoreStats, kDaemonStats   (empty) -> StoreStats / DaemonStats
//   kRegisterNamespace          Namespace -> (empty)
//   kListNamespaces             (empty) -> u32 n, NamespaceEntry * n
//   kGetMeta                    key[16] -> RecordMeta
//   kForEachRecord              (empty) -> frames of u32 n, RecordMeta * n,
//                               each but the last flagged kFlagMore
//   kTrimToBytes                u64 -> TrimResult
//   kTrimOlderThan              i64 -> TrimResult
//   kDropNamespace              fingerprint[16] -> TrimResult
// The structs are encoded field by field in declaration order (protocol.cc).
#ifndef KVTIER_DAEMON_PROTOCOL_H_
#define KVTIER_DAEMON_PROTOCOL_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "kvtier/daemon.h"
#include "kvtier/hash.h"
#include "kvtier/layout.h"
#include "kvtier/status.h"
#include "kvtier/store.h"

namespace kvtier::daemon {

inline constexpr uint32_t kFrameMagic = 0x4454564Bu;  // "KVTD" as little-endian bytes
inline constexpr uint16_t kProtocolVersion = 1;
inline constexpr size_t kFrameHeaderBytes = 16;
inline constexpr uint32_t kMinFrameBytes = 1u << 20;  // no daemon may go below this
inline constexpr uint32_t kMaxHelloBytes = 1024;
inline constexpr size_t kMaxClientNameBytes = 128;
// Keys in one get/exists/touch/delete request, records in one put.
inline constexpr uint32_t kMaxBatchKeys = 1u << 16;
// A kGet entry the daemon did not fit into this response.
inline constexpr uint8_t kCodeDeferred = 0xFE;
inline constexpr uint16_t kFlagMore = 1;

enum class Op : uint8_t {
  kHello = 1,
  kGet = 2,
  kExists = 3,
  kPut = 4,
  kTouch = 5,
  kDelete = 6,
  kFlush = 7,
  kStoreStats = 8,
  kDaemonStats = 9,
  kRegisterNamespace = 10,
  kListNamespaces = 11,
  kGetMeta = 12,
  kForEachRecord = 13,
  kTrimToBytes = 14,
  kTrimOlderThan = 15,
  kDropNamespace = 16,
  kCompact = 17,
  kProtocolError = 0x7F,  // daemon -> client only, then the connection closes
};

// "get", "put", ... ("op 200" for an unknown value).
std::string OpName(uint8_t op);
bool IsRequestOp(uint8_t op);

struct FrameHeader {
  uint8_t op = 0;
  uint8_t status = 0;
  uint16_t flags = 0;
  uint32_t request_id = 0;
  uint32_t body_bytes = 0;
};

void EncodeFrameHeader(const FrameHeader& h, uint8_t out[kFrameHeaderBytes]);
// Corruption naming the problem for a bad magic; the other fields are
// checked by whoever knows what to expect.
Status DecodeFrameHeader(const uint8_t in[kFrameHeaderBytes], FrameHeader* h);

// Status <-> (code byte, message) on the wire. An unknown code becomes
// Corruption naming it.
uint8_t StatusCodeByte(const Status& s);
Status StatusFromWire(uint8_t code, std::string_view message);

// Appends little-endian fields to a string.
class WireWriter {
 public:
  explicit WireWriter(std::string* out) : out_(out) {}
  void U8(uint8_t v) { out_->push_back(static_cast<char>(v)); }
  void U16(uint16_t v) { Raw(&v, 2); }
  void U32(uint32_t v) { Raw(&v, 4); }
  void U64(uint64_t v) { Raw(&v, 8); }
  void I64(int64_t v) { Raw(&v, 8); }
  void F64(double v) { Raw(&v, 8); }
  void Key(const Hash128& h);
  void Bytes(std::string_view s) { out_->append(s.data(), s.size()); }
  // u32 length, then the bytes.
  void String(std::string_view s);

 private:
  void Raw(const void* p, size_t n) { out_->append(static_cast<const char*>(p), n); }
  std::string* out_;
};

// Reads little-endian fields with bounds checks: once a read runs past the
// end, ok() is false and every later read yields zeros.
class WireReader {
 public:
  explicit WireReader(std::string_view in) : in_(in) {}
  uint8_t U8();
  uint16_t U16();
  uint32_t U32();
  uint64_t U64();
  int64_t I64();
  double F64();
  Hash128 Key();
  std::string_view Bytes(size_t n);
  std::string String();
  bool ok() const { return ok_; }
  size_t remaining() const { return in_.size() - pos_; }
  // ok() and every byte consumed.
  bool done() const { return ok_ && pos_ == in_.size(); }

 private:
  bool Take(size_t n, const char** p);
  std::string_view in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

// Little-endian helpers for fixed tables built in place.
inline void PutU32(char* p, uint32_t v) { std::memcpy(p, &v, 4); }
inline uint32_t GetU32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// The structured bodies. Decoders return false for a short or malformed
// body (the caller names the op in its error).
void EncodeNamespace(const Namespace& ns, WireWriter* w);
bool DecodeNamespace(WireReader* r, Namespace* ns);
void EncodeNamespaceEntry(const NamespaceEntry& e, WireWriter* w);
bool DecodeNamespaceEntry(WireReader* r, NamespaceEntry* e);
void EncodeStoreStats(const StoreStats& s, WireWriter* w);
bool DecodeStoreStats(WireReader* r, StoreStats* s);
void EncodeRecordMeta(const RecordMeta& m, WireWriter* w);
bool DecodeRecordMeta(WireReader* r, RecordMeta* m);
void EncodeTrimResult(const TrimResult& t, WireWriter* w);
bool DecodeTrimResult(WireReader* r, TrimResult* t);
void EncodeDaemonStats(const DaemonStats& s, WireWriter* w);
bool DecodeDaemonStats(WireReader* r, DaemonStats* s);

// Hello bodies.
struct Hello {
  uint16_t min_version = kProtocolVersion;
  uint16_t max_version = kProtocolVersion;
  uint32_t pid = 0;
  std::string name;
};
struct Welcome {
  uint16_t version = 0;
  uint32_t max_frame_bytes = 0;
  uint32_t pid = 0;
  std::string store;
};
std::string EncodeHello(const Hello& h);
bool DecodeHello(std::string_view body, Hello* h);
std::string EncodeWelcome(const Welcome& w);
bool DecodeWelcome(std::string_view body, Welcome* w);

}  // namespace kvtier::daemon

#endif  // KVTIER_DAEMON_PROTOCOL_H_
