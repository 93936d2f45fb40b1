// kvtier-capi-bench: the cost of one in-memory lookup through the C ABI
// (libkvtier.so: kvtier_lookup + kvtier_lease_info + kvtier_lease_block per
// block + kvtier_lease_release) against the same lookup through the C++ API
// (Cache::Lookup + Lease::block per block, lease dropped), on identical
// caches holding the prompt, for prompts of 4 and 64 blocks. The Python
// side is timed by tools/bench/capi_overhead.py, which runs this binary in
// the same invocation and prints every ratio against the C++ figure.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "kvtier/cache.h"
#include "kvtier/kvtier.h"

namespace {

// 4 layers x 8 kv heads x 128 head_dim, 16 tokens per block, f16: 256 KiB
// per block (payload size does not enter a lookup: nothing is copied).
constexpr uint32_t kLayers = 4, kHeads = 8, kDim = 128, kBlockSize = 16;
constexpr size_t kMaxBlocks = 64;

std::vector<kvtier::Token> Prompt(size_t blocks) {
  std::vector<kvtier::Token> t(blocks * kBlockSize);
  for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<kvtier::Token>(i * 2654435761u % 150000);
  return t;
}

void Die(const char* what, const std::string& msg) {
  std::fprintf(stderr, "kvtier-capi-bench: %s: %s\n", what, msg.c_str());
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  const std::vector<kvtier::Token> prompt = Prompt(kMaxBlocks);

  kvtier::CacheOptions co;
  co.ns.model = "capi-bench";
  co.ns.layout = {kLayers, kHeads, kDim, kBlockSize, kvtier::DType::kF16};
  co.memory_bytes = 2 * kMaxBlocks * co.ns.layout.block_bytes();
  std::unique_ptr<kvtier::Cache> cpp;
  kvtier::Status s = kvtier::Cache::Open(co, &cpp);
  if (!s.ok()) Die("Cache::Open", s.ToString());
  std::vector<std::byte> payload(co.ns.layout.block_bytes(), std::byte{7});
  std::vector<std::span<const std::byte>> spans(kMaxBlocks, payload);
  s = cpp->InsertBlocks(prompt, 0, spans);
  if (!s.ok()) Die("InsertBlocks", s.ToString());

  kvtier_options o;
  kvtier_options_init(&o);
  o.model = "capi-bench";
  o.num_layers = kLayers;
  o.num_kv_heads = kHeads;
  o.head_dim = kDim;
  o.block_size = kBlockSize;
  o.memory_bytes = co.memory_bytes;
  kvtier_cache* c = nullptr;
  kvtier_error* err = nullptr;
  std::vector<kvtier_block> blocks(kMaxBlocks, kvtier_block{payload.data(), payload.size()});
  if (kvtier_open(&o, &c, &err) != KVTIER_OK ||
      kvtier_insert_blocks(c, prompt.data(), prompt.size(), 0, blocks.data(), kMaxBlocks, &err) !=
          KVTIER_OK) {
    Die("kvtier_open/insert", kvtier_error_message(err));
  }

  for (size_t n : {size_t{4}, kMaxBlocks}) {
    const std::span<const kvtier::Token> tokens(prompt.data(), n * kBlockSize);
    benchmark::RegisterBenchmark(("cpp_lookup/" + std::to_string(n)).c_str(),
                                 [&cpp, tokens, n](benchmark::State& state) {
      for (auto _ : state) {
        kvtier::Lease lease = cpp->Lookup(tokens);
        if (lease.num_blocks() != n) state.SkipWithError("C++ lookup missed");
        for (size_t i = 0; i < lease.num_blocks(); ++i) benchmark::DoNotOptimize(lease.block(i).data());
      }
    });
    benchmark::RegisterBenchmark(("c_lookup/" + std::to_string(n)).c_str(),
                                 [c, tokens, n](benchmark::State& state) {
      for (auto _ : state) {
        kvtier_lease* lease = nullptr;
        size_t num = 0;
        kvtier_block b;
        kvtier_lookup(c, tokens.data(), tokens.size(), &lease, nullptr);
        kvtier_lease_info(lease, nullptr, &num, nullptr, nullptr);
        if (num != n) state.SkipWithError("C lookup missed");
        for (size_t i = 0; i < num; ++i) {
          kvtier_lease_block(lease, i, &b, nullptr);
          benchmark::DoNotOptimize(b.data);
        }
        kvtier_lease_release(lease, nullptr);
      }
    });
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  kvtier_close(c, nullptr);
  return 0;
}
