// Fuzz target: the export-archive reader of the kvtier CLI
// (tools/cli/archive.h), which `kvtier import` runs on files from other
// machines. ArchiveReader reads a path, so each input is written to a
// memfd and read through /proc/self/fd.
//
// Frame headers and bodies carry XXH3 checksums, which random mutations
// almost never satisfy. So the first input byte picks a mode:
//   even: the rest is the archive file as is (the checksum gates);
//   odd:  the rest is a list of frames (u8 type, u16 length, body) that
//         the harness wraps in a well-formed archive with valid checksums
//         (flags in the byte make the end frame lie), so mutations reach
//         the body decoders (namespace frames, record frames) behind them.
// Every frame body the reader accepts goes through what `kvtier import`
// does with it: DecodeNamespace, SplitRecordBody, record header parsing
// and decoding.
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "archive.h"
#include "kvtier/record.h"

using namespace kvtier;

namespace {

void PutLE(std::string* s, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) s->push_back(static_cast<char>(v >> (8 * i)));
}

void AppendFrame(std::string* out, char type, std::string_view body, XXH3_state_t* digest) {
  std::string h;
  h.push_back(type);
  h.append(3, '\0');
  PutLE(&h, body.size(), 4);
  PutLE(&h, XXH3_64bits(body.data(), body.size()), 8);
  PutLE(&h, XXH3_64bits(h.data(), h.size()), 8);
  if (digest != nullptr) XXH3_64bits_update(digest, h.data(), h.size());
  out->append(h);
  out->append(body);
}

// Mode odd: a well-formed archive around the frames described by `in`.
std::string BuildArchive(uint8_t flags, std::string_view in) {
  std::string out = "KVTARCHV";
  PutLE(&out, cli::kArchiveVersion, 4);
  PutLE(&out, 0, 4);
  PutLE(&out, XXH3_64bits(out.data(), 16), 8);
  XXH3_state_t* digest = XXH3_createState();
  XXH3_64bits_reset(digest);
  uint64_t namespaces = 0, records = 0;
  while (in.size() >= 3) {
    const char type = (in[0] & 1) ? 'R' : 'N';
    size_t len = static_cast<uint8_t>(in[1]) | (static_cast<size_t>(static_cast<uint8_t>(in[2])) << 8);
    in.remove_prefix(3);
    len = std::min(len, in.size());
    AppendFrame(&out, type, in.substr(0, len), digest);
    ++(type == 'R' ? records : namespaces);
    in.remove_prefix(len);
  }
  std::string end;
  PutLE(&end, namespaces + ((flags >> 1) & 1), 8);  // flag bit 1: a wrong count
  PutLE(&end, records, 8);
  PutLE(&end, XXH3_64bits_digest(digest) ^ ((flags >> 2) & 1), 8);  // bit 2: a wrong digest
  XXH3_freeState(digest);
  AppendFrame(&out, 'E', end, nullptr);
  if ((flags >> 3) & 1) out.push_back('x');  // bit 3: bytes after the end
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const int fd = memfd_create("kvtier-archive-fuzz", 0);
  if (fd < 0 || size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::string file = (data[0] & 1) ? BuildArchive(data[0], rest) : std::string(rest);
  if (ftruncate(fd, 0) != 0 || pwrite(fd, file.data(), file.size(), 0) != static_cast<ssize_t>(file.size())) {
    return 0;
  }
  std::unique_ptr<cli::ArchiveReader> reader;
  if (!cli::ArchiveReader::Open("/proc/self/fd/" + std::to_string(fd), &reader).ok()) return 0;
  for (int frames = 0; frames < 100000; ++frames) {
    cli::Frame frame;
    bool done = false;
    if (!reader->Next(&frame, &done).ok() || done) break;
    if (reader->offset() > reader->file_size()) __builtin_trap();
    if (!frame.body_ok) continue;
    if (frame.type == cli::FrameType::kNamespace) {
      Namespace ns;
      if (cli::DecodeNamespace(frame.body, &ns).ok() && ns.Fingerprint() != ns.Fingerprint()) __builtin_trap();
    } else if (frame.type == cli::FrameType::kRecord) {
      Hash128 key;
      std::string_view record;
      if (!cli::SplitRecordBody(frame.body, &key, &record).ok()) continue;
      RecordHeader h;
      std::vector<std::byte> payload;
      if (DecodeRecord(record, &h, &payload).ok() && payload.size() != h.raw_size) __builtin_trap();
    }
  }
  return 0;
}
