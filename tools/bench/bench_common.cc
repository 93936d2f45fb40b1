#include "bench_common.h"

#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "rng.h"

namespace kvtier::bench {

uint64_t BenchContext::Size(uint64_t n, uint64_t quick_n) const {
  if (quick) return quick_n;
  return std::max<uint64_t>(1, static_cast<uint64_t>(static_cast<double>(n) * scale));
}

std::string BenchContext::FreshDir(const std::string& name) const {
  std::filesystem::path p = std::filesystem::path(work_dir) / name;
  std::error_code ec;
  std::filesystem::remove_all(p, ec);
  std::filesystem::create_directories(p, ec);
  if (ec) CheckOk(Status::IOError("cannot create " + p.string() + ": " + ec.message()), "setup");
  return p.string();
}

void BenchContext::Log(const std::string& msg) const {
  std::cerr << "kvtier-bench: " << msg << std::endl;
}

Status ParseLayout(const std::string& text, uint32_t block_size, const std::string& dtype,
                   BlockLayout* layout) {
  uint32_t dims[3];
  std::istringstream in(text);
  std::string part;
  int n = 0;
  while (std::getline(in, part, ',')) {
    if (n == 3) break;
    char* end = nullptr;
    unsigned long v = std::strtoul(part.c_str(), &end, 10);
    if (part.empty() || *end != '\0' || v == 0 || v > 1u << 20) {
      return Status::InvalidArgument("layout '" + text + "': '" + part +
                                     "' is not a positive integer");
    }
    dims[n++] = static_cast<uint32_t>(v);
  }
  if (n != 3 || in.rdbuf()->in_avail() > 0 || std::count(text.begin(), text.end(), ',') != 2) {
    return Status::InvalidArgument("layout '" + text +
                                   "' must be LAYERS,KV_HEADS,HEAD_DIM (three integers)");
  }
  BlockLayout l = MakeLayout(dims[0], dims[1], dims[2], DType::kF16, block_size);
  if (!ParseDType(dtype, &l.dtype)) {
    return Status::InvalidArgument("dtype '" + dtype + "' is not one of f32, f16, bf16");
  }
  Status s = l.Validate();
  if (!s.ok()) return s;
  *layout = l;
  return Status::OK();
}

BlockLayout MakeLayout(uint32_t layers, uint32_t kv_heads, uint32_t head_dim, DType dtype,
                       uint32_t block_size) {
  BlockLayout l;
  l.num_layers = layers;
  l.num_kv_heads = kv_heads;
  l.head_dim = head_dim;
  l.block_size = block_size;
  l.dtype = dtype;
  return l;
}

Namespace BenchNamespace(const BlockLayout& layout) {
  Namespace ns;
  ns.layout = layout;
  ns.model = "kvtier-bench/synthetic";
  ns.revision = "bench1";
  ns.tokenizer = "synthetic-151936";
  return ns;
}

std::vector<std::vector<Token>> DistinctPrompts(size_t count, size_t blocks, uint32_t block_size,
                                                uint64_t seed) {
  std::vector<std::vector<Token>> prompts(count);
  for (size_t i = 0; i < count; ++i) {
    Rng rng(MixSeed(seed, i));
    prompts[i].resize(blocks * block_size);
    for (auto& t : prompts[i]) t = rng.Below(151936);
  }
  return prompts;
}

std::vector<Hash128> BlockHashes(const Namespace& ns, std::span<const Token> tokens) {
  std::vector<Hash128> out;
  PrefixHashes(ns.Fingerprint(), tokens, ns.layout.block_size, &out);
  return out;
}

PayloadPool::PayloadPool(const BlockLayout& layout, size_t count, uint64_t seed)
    : generator_(layout) {
  payloads_.reserve(count);
  for (size_t i = 0; i < count; ++i) payloads_.push_back(generator_.Block(MixSeed(seed, i)));
}

uint64_t CapUnspilledBlocks(const BlockLayout& layout, uint64_t blocks) {
  return std::min<uint64_t>(blocks, std::max<uint64_t>(1, kUnspilledBytesLimit / layout.block_bytes()));
}

double ProcessCpuSeconds() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  auto sec = [](const timeval& tv) { return tv.tv_sec + tv.tv_usec * 1e-6; };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}

uint64_t ProcessMinorFaults() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<uint64_t>(ru.ru_minflt);
}

uint64_t ProcessWrittenBytes() {
  std::ifstream io("/proc/self/io");
  std::string field;
  uint64_t value = 0;
  while (io >> field >> value) {
    if (field == "wchar:") return value;
  }
  return 0;
}

double WaitForIdle(double max_seconds) {
  Stopwatch w;
  while (w.Seconds() < max_seconds) {
    const double c0 = ProcessCpuSeconds();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    if (ProcessCpuSeconds() - c0 < 0.01) break;
  }
  return w.Seconds();
}

void CheckOk(const Status& s, const std::string& what) {
  if (s.ok()) return;
  std::cerr << "kvtier-bench: " << what << " failed: " << s.ToString() << std::endl;
  std::exit(1);
}

}  // namespace kvtier::bench
