// Fuzz target: the record decoder (kvtier/record.h), which every promote,
// the CLI and kvtierd run on bytes read from disk or a socket.
//
// The header checksum gates everything behind it, and random mutations
// almost never satisfy it. So the first input byte picks a mode: even, the
// rest is the record as is; odd, the harness first rewrites the header
// checksum to match (as a writer with a bug, or an attacker, would), so
// mutations reach the body: zstd frames, byte planes, the payload checksum.
//
// Besides "no crash, no sanitizer report", it checks what the decoder
// promises:
//  - a header it accepts describes exactly the input (sizes add up, the
//    layout is valid, raw size = layout.block_bytes());
//  - a record it decodes has the promised payload size, and encoding that
//    payload again under the same identity decodes to the same bytes.
#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "kvtier/record.h"

using namespace kvtier;

namespace {

// Rewrites the header checksum of `r` (XXH3-64 of bytes [0, 88) and the
// token ids; record.h) if the record is long enough to hold them.
void FixHeaderChecksum(std::string* r) {
  if (r->size() < kRecordFixedHeaderBytes) return;
  uint32_t block_size;
  std::memcpy(&block_size, r->data() + 24, 4);
  if (block_size > 4096 || r->size() < kRecordFixedHeaderBytes + 4ull * block_size) return;
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  XXH3_64bits_update(state, r->data(), 88);
  XXH3_64bits_update(state, r->data() + kRecordFixedHeaderBytes, 4ull * block_size);
  const uint64_t sum = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  std::memcpy(r->data() + 88, &sum, 8);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 1) FixHeaderChecksum(&bytes);
  const std::string_view record = bytes;
  size = record.size();
  RecordHeader h;
  if (!ParseRecordHeader(record, &h).ok()) return 0;
  if (h.record_size() != size) __builtin_trap();
  if (!h.layout.Validate().ok()) __builtin_trap();
  if (h.raw_size != h.layout.block_bytes()) __builtin_trap();
  if (h.tokens.size() != h.layout.block_size) __builtin_trap();
  (void)h.Key();
  std::vector<std::byte> payload;
  RecordHeader decoded;
  if (!DecodeRecord(record, &decoded, &payload).ok()) return 0;
  if (payload.size() != h.raw_size) __builtin_trap();
  // Round trip: what decodes re-encodes to a record that decodes the same.
  RecordIdentity id{h.layout, h.depth, h.namespace_fp, h.parent, h.tokens};
  CodecOptions options;
  options.shuffle = h.shuffled();
  std::string again;
  if (!EncodeRecord(id, payload, options, &again).ok()) __builtin_trap();
  std::vector<std::byte> payload2;
  RecordHeader h2;
  if (!DecodeRecord(again, &h2, &payload2).ok() || payload2 != payload || h2.Key() != h.Key()) {
    __builtin_trap();
  }
  return 0;
}
