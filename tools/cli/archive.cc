#include "archive.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstring>

namespace kvtier::cli {

namespace {

constexpr char kMagic[8] = {'K', 'V', 'T', 'A', 'R', 'C', 'H', 'V'};

void PutU32(std::string* s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s->push_back(static_cast<char>(v >> (8 * i)));
}
void PutU64(std::string* s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s->push_back(static_cast<char>(v >> (8 * i)));
}
uint64_t GetLE(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t{static_cast<uint8_t>(p[i])} << (8 * i);
  return v;
}

uint64_t Xxh(std::string_view s) { return XXH3_64bits(s.data(), s.size()); }

// Reads length-prefixed fields off the front of a body.
class BodyCursor {
 public:
  explicit BodyCursor(std::string_view s) : rest_(s) {}
  bool U32(uint32_t* v) {
    if (rest_.size() < 4) return false;
    *v = static_cast<uint32_t>(GetLE(rest_.data(), 4));
    rest_.remove_prefix(4);
    return true;
  }
  bool Bytes(size_t n, std::string_view* out) {
    if (rest_.size() < n) return false;
    *out = rest_.substr(0, n);
    rest_.remove_prefix(n);
    return true;
  }
  bool String(std::string* out) {
    uint32_t n;
    std::string_view v;
    if (!U32(&n) || !Bytes(n, &v)) return false;
    out->assign(v);
    return true;
  }
  bool empty() const { return rest_.empty(); }

 private:
  std::string_view rest_;
};

std::string FrameHeader(FrameType type, std::string_view body_part1, std::string_view body_part2) {
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  XXH3_64bits_update(st, body_part1.data(), body_part1.size());
  XXH3_64bits_update(st, body_part2.data(), body_part2.size());
  uint64_t body_sum = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  std::string h;
  h.push_back(static_cast<char>(type));
  h.append(3, '\0');
  PutU32(&h, static_cast<uint32_t>(body_part1.size() + body_part2.size()));
  PutU64(&h, body_sum);
  PutU64(&h, Xxh(h));
  return h;
}

}  // namespace

// A running XXH3-64 of the frame headers, for the end frame.
struct FrameDigest {
  XXH3_state_t* state = XXH3_createState();
  FrameDigest() { XXH3_64bits_reset(state); }
  ~FrameDigest() { XXH3_freeState(state); }
  FrameDigest(const FrameDigest&) = delete;
  FrameDigest& operator=(const FrameDigest&) = delete;
};

std::string EncodeNamespace(const Namespace& ns) {
  std::string s;
  uint8_t fp[16];
  ns.Fingerprint().ToBytes(fp);
  s.append(reinterpret_cast<const char*>(fp), 16);
  PutU32(&s, ns.layout.num_layers);
  PutU32(&s, ns.layout.num_kv_heads);
  PutU32(&s, ns.layout.head_dim);
  PutU32(&s, ns.layout.block_size);
  s.push_back(static_cast<char>(ns.layout.dtype));
  s.append(3, '\0');
  PutU32(&s, ns.tp_rank);
  PutU32(&s, ns.tp_size);
  for (const std::string* field : {&ns.model, &ns.revision, &ns.tokenizer, &ns.salt}) {
    PutU32(&s, static_cast<uint32_t>(field->size()));
    s += *field;
  }
  return s;
}

Status DecodeNamespace(std::string_view body, Namespace* ns) {
  BodyCursor in(body);
  std::string_view fp_bytes, dtype;
  bool ok = in.Bytes(16, &fp_bytes) && in.U32(&ns->layout.num_layers) &&
            in.U32(&ns->layout.num_kv_heads) && in.U32(&ns->layout.head_dim) &&
            in.U32(&ns->layout.block_size) && in.Bytes(4, &dtype) && in.U32(&ns->tp_rank) &&
            in.U32(&ns->tp_size) && in.String(&ns->model) && in.String(&ns->revision) &&
            in.String(&ns->tokenizer) && in.String(&ns->salt) && in.empty();
  if (!ok) return Status::Corruption("namespace frame has the wrong length");
  ns->layout.dtype = static_cast<DType>(dtype[0]);
  Status s = ns->Validate();
  if (!s.ok()) return Status::Corruption("namespace frame is invalid: " + s.message());
  Hash128 fp = Hash128::FromBytes(reinterpret_cast<const uint8_t*>(fp_bytes.data()));
  if (ns->Fingerprint() != fp)
    return Status::Corruption("namespace frame for " + ns->Describe() + " does not match its fingerprint " + fp.ToHex());
  return Status::OK();
}

Status SplitRecordBody(std::string_view body, Hash128* key, std::string_view* record) {
  if (body.size() < 16) return Status::Corruption("record frame is shorter than a key");
  *key = Hash128::FromBytes(reinterpret_cast<const uint8_t*>(body.data()));
  *record = body.substr(16);
  return Status::OK();
}

ArchiveReader::ArchiveReader(std::FILE* file, std::string path, uint64_t size)
    : file_(file), path_(std::move(path)), file_size_(size), digest_(std::make_unique<FrameDigest>()) {}

ArchiveReader::~ArchiveReader() { std::fclose(file_); }

Status ArchiveReader::Open(const std::string& path, std::unique_ptr<ArchiveReader>* reader) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    std::string why = std::strerror(errno);
    if (errno == ENOENT) return Status::NotFound("archive " + path + " does not exist");
    return Status::IOError("cannot open archive " + path + ": " + why);
  }
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    std::fclose(f);
    return Status::IOError("archive " + path + " is not a regular file");
  }
  std::unique_ptr<ArchiveReader> r(new ArchiveReader(f, path, static_cast<uint64_t>(st.st_size)));
  char h[kArchiveHeaderBytes];
  if (std::fread(h, 1, sizeof(h), f) != sizeof(h) || std::memcmp(h, kMagic, 8) != 0)
    return Status::Corruption(path + " is not a kvtier archive (no KVTARCHV header)");
  if (GetLE(h + 16, 8) != XXH3_64bits(h, 16))
    return Status::Corruption("archive " + path + " has a damaged header (checksum mismatch)");
  uint32_t version = static_cast<uint32_t>(GetLE(h + 8, 4));
  if (version > kArchiveVersion)
    return Status::NotSupported("archive " + path + " has format version " + std::to_string(version) +
                                "; this kvtier reads version " + std::to_string(kArchiveVersion));
  if (version == 0) return Status::Corruption("archive " + path + " has format version 0");
  *reader = std::move(r);
  return Status::OK();
}

Status ArchiveReader::ReadExactly(size_t n, std::string* out, std::string_view what) {
  out->resize(n);
  size_t got = std::fread(out->data(), 1, n, file_);
  if (got != n) {
    if (std::ferror(file_)) return Status::IOError("cannot read archive " + path_ + ": " + std::strerror(errno));
    return Status::Corruption("archive " + path_ + " is truncated: it ends inside a " + std::string(what) +
                              " at byte " + std::to_string(offset_ + got) + ", after " +
                              std::to_string(records_) + " records and before its end frame");
  }
  offset_ += n;
  return Status::OK();
}

Status ArchiveReader::Next(Frame* frame, bool* done) {
  *done = false;
  frame->offset = offset_;
  if (offset_ == file_size_)
    return Status::Corruption("archive " + path_ + " is truncated: it ends at byte " +
                              std::to_string(offset_) + " after " + std::to_string(records_) +
                              " records, without its end frame");
  std::string h;
  Status s = ReadExactly(kFrameHeaderBytes, &h, "frame header");
  if (!s.ok()) return s;
  std::string at = " at byte " + std::to_string(frame->offset);
  if (GetLE(h.data() + 16, 8) != XXH3_64bits(h.data(), 16))
    return Status::Corruption("archive " + path_ + " is malformed: damaged frame header" + at);
  auto type = static_cast<FrameType>(h[0]);
  if (type != FrameType::kNamespace && type != FrameType::kRecord && type != FrameType::kEnd)
    return Status::Corruption("archive " + path_ + " is malformed: unknown frame type" + at);
  uint64_t length = GetLE(h.data() + 4, 4);
  if (length > kMaxFrameBody)
    return Status::Corruption("archive " + path_ + " is malformed: frame" + at + " claims " +
                              std::to_string(length) + " bytes, more than a frame may hold");
  // The frame header checked out, so its length is what was written.
  if (length > file_size_ - offset_)
    return Status::Corruption("archive " + path_ + " is truncated: the frame" + at + " needs " +
                              std::to_string(length) + " bytes, the file has " +
                              std::to_string(file_size_ - offset_) + " left (after " +
                              std::to_string(records_) + " records, before its end frame)");
  s = ReadExactly(length, &frame->body, "frame body");
  if (!s.ok()) return s;
  frame->type = type;
  frame->body_ok = GetLE(h.data() + 8, 8) == Xxh(frame->body);
  if (type != FrameType::kEnd) {
    XXH3_64bits_update(digest_->state, h.data(), h.size());
    ++(type == FrameType::kRecord ? records_ : namespaces_);
    return Status::OK();
  }
  if (!frame->body_ok || frame->body.size() != 24)
    return Status::Corruption("archive " + path_ + " is malformed: damaged end frame" + at);
  uint64_t ns_count = GetLE(frame->body.data(), 8), rec_count = GetLE(frame->body.data() + 8, 8);
  if (ns_count != namespaces_ || rec_count != records_)
    return Status::Corruption("archive " + path_ + " is malformed: its end frame lists " +
                              std::to_string(rec_count) + " records and " + std::to_string(ns_count) +
                              " namespaces, the file holds " + std::to_string(records_) + " and " +
                              std::to_string(namespaces_));
  if (GetLE(frame->body.data() + 16, 8) != XXH3_64bits_digest(digest_->state))
    return Status::Corruption("archive " + path_ + " is malformed: its frames do not match the "
                              "end frame's digest (frames lost, added or reordered)");
  if (offset_ != file_size_)
    return Status::Corruption("archive " + path_ + " is malformed: " + std::to_string(file_size_ - offset_) +
                              " unexpected bytes after its end frame");
  *done = true;
  return Status::OK();
}

ArchiveWriter::ArchiveWriter(std::FILE* file, std::string path, std::string temp_path)
    : file_(file), path_(std::move(path)), temp_path_(std::move(temp_path)),
      digest_(std::make_unique<FrameDigest>()) {}

ArchiveWriter::~ArchiveWriter() {
  if (file_ != nullptr) std::fclose(file_);
  if (!finished_) ::unlink(temp_path_.c_str());
}

Status ArchiveWriter::Create(const std::string& path, bool overwrite,
                             std::unique_ptr<ArchiveWriter>* writer) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return Status::InvalidArgument(path + " is a directory");
    if (!overwrite) return Status::InvalidArgument(path + " exists (pass --force to overwrite it)");
  }
  std::string temp = path + ".tmp-" + std::to_string(::getpid());
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IOError("cannot create " + temp + ": " + std::strerror(errno));
  std::FILE* f = ::fdopen(fd, "wb");
  std::unique_ptr<ArchiveWriter> w(new ArchiveWriter(f, path, temp));
  std::string h(kMagic, 8);
  PutU32(&h, kArchiveVersion);
  PutU32(&h, 0);
  PutU64(&h, Xxh(h));
  if (std::fwrite(h.data(), 1, h.size(), f) != h.size())
    return Status::IOError("cannot write " + temp + ": " + std::strerror(errno));
  w->offset_ = h.size();
  *writer = std::move(w);
  return Status::OK();
}

Status ArchiveWriter::AddFrame(FrameType type, std::string_view part1, std::string_view part2) {
  if (part1.size() + part2.size() > kMaxFrameBody)
    return Status::InvalidArgument("a frame of " + std::to_string(part1.size() + part2.size()) +
                                   " bytes exceeds the archive's limit");
  std::string h = FrameHeader(type, part1, part2);
  if (type != FrameType::kEnd) XXH3_64bits_update(digest_->state, h.data(), h.size());
  for (std::string_view part : {std::string_view(h), part1, part2}) {
    if (std::fwrite(part.data(), 1, part.size(), file_) != part.size())
      return Status::IOError("cannot write " + temp_path_ + ": " + std::strerror(errno));
  }
  offset_ += h.size() + part1.size() + part2.size();
  return Status::OK();
}

Status ArchiveWriter::AddNamespace(const Namespace& ns) {
  ++namespaces_;
  return AddFrame(FrameType::kNamespace, EncodeNamespace(ns), "");
}

Status ArchiveWriter::AddRecord(const Hash128& key, std::string_view record) {
  uint8_t k[16];
  key.ToBytes(k);
  ++records_;
  return AddFrame(FrameType::kRecord, std::string_view(reinterpret_cast<const char*>(k), 16), record);
}

Status ArchiveWriter::Finish() {
  std::string end;
  PutU64(&end, namespaces_);
  PutU64(&end, records_);
  PutU64(&end, XXH3_64bits_digest(digest_->state));
  Status s = AddFrame(FrameType::kEnd, end, "");
  if (!s.ok()) return s;
  bool ok = std::fflush(file_) == 0 && ::fsync(fileno(file_)) == 0;
  ok = std::fclose(file_) == 0 && ok;
  file_ = nullptr;
  if (!ok) return Status::IOError("cannot write " + temp_path_ + ": " + std::strerror(errno));
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0)
    return Status::IOError("cannot rename " + temp_path_ + " to " + path_ + ": " + std::strerror(errno));
  finished_ = true;
  return Status::OK();
}

}  // namespace kvtier::cli
