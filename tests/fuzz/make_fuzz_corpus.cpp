// make_fuzz_corpus: writes the checked-in seed corpus of the fuzz targets
// (tests/fuzz/corpus/<target>/): a few valid inputs of each kind, small
// layouts so the whole corpus stays a few KB. Regenerate after a format
// change:
//
//   build-fuzz/tests/fuzz/make_fuzz_corpus tests/fuzz/corpus
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "archive.h"
#include "daemon/protocol.h"
#include "kvtier/record.h"

using namespace kvtier;

namespace {

std::string g_root;

void Write(const std::string& target, const std::string& name, const std::string& bytes) {
  const std::filesystem::path dir = std::filesystem::path(g_root) / target;
  std::filesystem::create_directories(dir);
  std::FILE* f = std::fopen((dir / name).c_str(), "wb");
  if (f == nullptr || std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) {
    std::fprintf(stderr, "make_fuzz_corpus: cannot write %s\n", (dir / name).c_str());
    std::exit(1);
  }
  std::fclose(f);
}

Namespace SmallNamespace(DType dtype, uint32_t block_size = 4) {
  Namespace ns;
  ns.layout = {2, 2, 8, block_size, dtype};
  ns.model = "fuzz-model";
  ns.revision = "r1";
  ns.tokenizer = "tok";
  return ns;
}

// A record for block `depth` of a small prompt, with K/V-like payload bytes.
std::string MakeRecord(const Namespace& ns, uint32_t depth, const CodecOptions& codec) {
  std::vector<Token> tokens(ns.layout.block_size * (depth + 1));
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<Token>(1000 + 7 * i);
  std::vector<Hash128> h;
  PrefixHashes(ns.Fingerprint(), tokens, ns.layout.block_size, &h);
  std::vector<std::byte> payload(ns.layout.block_bytes());
  for (size_t i = 0; i < payload.size(); ++i)
    payload[i] = static_cast<std::byte>((i % 2) ? 0x3c + (i % 5) : (i * 37) & 0xff);
  RecordIdentity id{ns.layout, depth, ns.Fingerprint(), depth == 0 ? ns.Fingerprint() : h[depth - 1],
                    std::span<const Token>(tokens).subspan(depth * ns.layout.block_size,
                                                           ns.layout.block_size)};
  std::string record;
  if (!EncodeRecord(id, payload, codec, &record).ok()) std::exit(1);
  return record;
}

std::string KeyOf(const std::string& record) {
  RecordHeader h;
  if (!ParseRecordHeader(record, &h).ok()) std::exit(1);
  uint8_t k[16];
  h.Key().ToBytes(k);
  return std::string(reinterpret_cast<const char*>(k), 16);
}

void PutLE(std::string* s, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) s->push_back(static_cast<char>(v >> (8 * i)));
}

std::string Frame(daemon::Op op, const std::string& body, uint32_t id) {
  daemon::FrameHeader h;
  h.op = static_cast<uint8_t>(op);
  h.request_id = id;
  h.body_bytes = static_cast<uint32_t>(body.size());
  uint8_t head[daemon::kFrameHeaderBytes];
  daemon::EncodeFrameHeader(h, head);
  return std::string(reinterpret_cast<const char*>(head), sizeof(head)) + body;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_fuzz_corpus OUT_DIR\n");
    return 2;
  }
  g_root = argv[1];
  CodecOptions shuffled, zstd_only, raw;
  zstd_only.shuffle = false;
  raw.min_saving = 1.0;
  const Namespace f16 = SmallNamespace(DType::kF16), bf16 = SmallNamespace(DType::kBF16),
                  int8 = SmallNamespace(DType::kInt8), f32 = SmallNamespace(DType::kF32, 2);
  const std::string r1 = MakeRecord(f16, 0, shuffled), r2 = MakeRecord(f16, 1, shuffled);

  // record_decoder_fuzz: a mode byte (0: as is, 1: the harness fixes the
  // header checksum), then the record.
  Write("record_decoder_fuzz", "f16-shuffle-zstd", std::string(1, '\0') + r1);
  Write("record_decoder_fuzz", "bf16-zstd-depth1", std::string(1, '\1') + MakeRecord(bf16, 1, zstd_only));
  Write("record_decoder_fuzz", "int8-raw", std::string(1, '\1') + MakeRecord(int8, 0, raw));
  Write("record_decoder_fuzz", "f32-shuffle-zstd", std::string(1, '\0') + MakeRecord(f32, 2, shuffled));

  // archive_reader_fuzz: mode byte 0 = a file as written by `kvtier export`.
  {
    const std::string path = (std::filesystem::temp_directory_path() / "kvtier-corpus.kvtar").string();
    std::unique_ptr<cli::ArchiveWriter> w;
    if (!cli::ArchiveWriter::Create(path, /*overwrite=*/true, &w).ok() || !w->AddNamespace(f16).ok() ||
        !w->AddRecord(Hash128::FromBytes(reinterpret_cast<const uint8_t*>(KeyOf(r1).data())), r1).ok() ||
        !w->AddRecord(Hash128::FromBytes(reinterpret_cast<const uint8_t*>(KeyOf(r2).data())), r2).ok() ||
        !w->Finish().ok()) {
      return 1;
    }
    std::FILE* f = std::fopen(path.c_str(), "rb");
    std::string file;
    char buf[4096];
    size_t n;
    while (f != nullptr && (n = std::fread(buf, 1, sizeof(buf), f)) > 0) file.append(buf, n);
    if (f != nullptr) std::fclose(f);
    std::filesystem::remove(path);
    Write("archive_reader_fuzz", "export-file", std::string(1, '\0') + file);
  }
  {  // mode byte 1: frames the harness wraps with valid checksums
    std::string frames(1, '\x01');
    auto add = [&](char type, const std::string& body) {
      frames.push_back(type == 'R' ? 1 : 0);
      PutLE(&frames, body.size(), 2);
      frames += body;
    };
    add('N', cli::EncodeNamespace(f16));
    add('R', KeyOf(r1) + r1);
    add('R', KeyOf(r2) + r2);
    Write("archive_reader_fuzz", "frames", frames);
  }

  // daemon_frame_fuzz: a client session touching every request type.
  {
    daemon::Hello hello;
    hello.pid = 4242;
    hello.name = "fuzz-client";
    std::string keys2;
    PutLE(&keys2, 2, 4);
    keys2 += KeyOf(r1) + KeyOf(r2);
    std::string put;
    PutLE(&put, 2, 4);
    PutLE(&put, r1.size(), 4);
    PutLE(&put, r2.size(), 4);
    put += r1 + r2;
    std::string ns_body;
    daemon::WireWriter nw(&ns_body);
    daemon::EncodeNamespace(f16, &nw);
    std::string trim;
    PutLE(&trim, 1 << 20, 8);
    std::string fp(16, '\0');
    f16.Fingerprint().ToBytes(reinterpret_cast<uint8_t*>(fp.data()));
    uint32_t id = 1;
    std::string s;
    s += Frame(daemon::Op::kHello, daemon::EncodeHello(hello), id++);
    s += Frame(daemon::Op::kRegisterNamespace, ns_body, id++);
    s += Frame(daemon::Op::kPut, put, id++);
    s += Frame(daemon::Op::kGet, keys2, id++);
    s += Frame(daemon::Op::kExists, keys2, id++);
    s += Frame(daemon::Op::kTouch, keys2, id++);
    s += Frame(daemon::Op::kGetMeta, KeyOf(r1), id++);
    s += Frame(daemon::Op::kListNamespaces, "", id++);
    s += Frame(daemon::Op::kForEachRecord, "", id++);
    s += Frame(daemon::Op::kStoreStats, "", id++);
    s += Frame(daemon::Op::kDaemonStats, "", id++);
    s += Frame(daemon::Op::kFlush, "", id++);
    s += Frame(daemon::Op::kDelete, keys2, id++);
    s += Frame(daemon::Op::kTrimToBytes, trim, id++);
    s += Frame(daemon::Op::kTrimOlderThan, trim, id++);
    s += Frame(daemon::Op::kDropNamespace, fp, id++);
    s += Frame(daemon::Op::kCompact, "", id++);
    Write("daemon_frame_fuzz", "session", s);
    Write("daemon_frame_fuzz", "hello-get",
          Frame(daemon::Op::kHello, daemon::EncodeHello(hello), 1) + Frame(daemon::Op::kGet, keys2, 2));
  }
  std::printf("make_fuzz_corpus: seeds written under %s\n", g_root.c_str());
  return 0;
}
