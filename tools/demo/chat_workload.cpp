#include "chat_workload.h"

#include <cmath>
#include <cstring>
#include <random>

namespace kvtier::demo {

namespace {

std::vector<Token> RandomTokens(std::mt19937_64& rng, size_t n) {
  std::vector<Token> t(n);
  for (auto& x : t) x = static_cast<Token>(rng() % 151000);
  return t;
}

uint16_t ToBF16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  x += 0x7fff + ((x >> 16) & 1);  // round to nearest even
  return static_cast<uint16_t>(x >> 16);
}

uint16_t ToF16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000;
  const int exp = static_cast<int>((x >> 23) & 0xff) - 127 + 15;
  if (exp <= 0) return static_cast<uint16_t>(sign);
  if (exp >= 31) return static_cast<uint16_t>(sign | 0x7c00);
  return static_cast<uint16_t>(sign | (exp << 10) | ((x >> 13) & 0x3ff));
}

uint64_t Mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}

}  // namespace

std::vector<std::vector<Token>> MakeChatWorkload(const ChatWorkloadParams& p) {
  std::mt19937_64 rng(p.seed);
  std::vector<std::vector<Token>> systems;
  for (int s = 0; s < p.system_prompts; ++s) systems.push_back(RandomTokens(rng, 160 + rng() % 160));
  // Zipf(1.1) popularity over the system prompts.
  std::vector<double> weights;
  for (int s = 0; s < p.system_prompts; ++s) weights.push_back(1.0 / std::pow(s + 1, 1.1));
  std::discrete_distribution<int> pick(weights.begin(), weights.end());

  std::vector<std::vector<Token>> history(p.conversations);
  for (auto& h : history) h = systems[pick(rng)];
  std::vector<std::vector<Token>> requests;
  for (int turn = 0; turn < p.turns; ++turn) {
    for (int c = 0; c < p.conversations; ++c) {
      auto user = RandomTokens(rng, 24 + rng() % 64);
      history[c].insert(history[c].end(), user.begin(), user.end());
      requests.push_back(history[c]);
      auto reply = RandomTokens(rng, 40 + rng() % 96);  // the model's answer
      history[c].insert(history[c].end(), reply.begin(), reply.end());
    }
  }
  return requests;
}

void FillBlock(const BlockLayout& layout, uint64_t block_key, std::span<std::byte> out) {
  const size_t esize = layout.element_size();
  const size_t n = out.size() / esize;
  const size_t channels = size_t{layout.num_kv_heads} * layout.head_dim;
  uint64_t state = Mix(block_key) | 1;
  for (size_t i = 0; i < n; ++i) {
    const size_t channel = i % channels;
    const size_t tensor = i / (channels * layout.block_size);  // K0, V0, K1, ...
    // Per-channel scale, log-uniform over ~2 decades, fixed per channel;
    // one channel in 32 is an outlier.
    const uint64_t ch = Mix(channel * 131 + tensor);
    float scale = std::exp2(static_cast<float>(ch % 1000) / 1000.0f * 6.6f - 5.0f);
    if (ch % 32 == 0) scale *= 16.0f;
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    const uint64_t r = state * 0x2545F4914F6CDD1Dull;
    // Sum of two uniforms: a triangular value in [-1, 1].
    const float u = (static_cast<float>(r & 0xffff) + static_cast<float>((r >> 16) & 0xffff)) / 65535.0f - 1.0f;
    const float v = u * scale;
    std::byte* dst = out.data() + i * esize;
    if (esize == 4) {
      std::memcpy(dst, &v, 4);
    } else if (layout.dtype == DType::kBF16) {
      const uint16_t b = ToBF16(v);
      std::memcpy(dst, &b, 2);
    } else if (esize == 2) {
      const uint16_t h = ToF16(v);
      std::memcpy(dst, &h, 2);
    } else {
      *dst = static_cast<std::byte>(static_cast<int8_t>(std::lround(std::fmax(-127.f, std::fmin(127.f, v * 64)))));
    }
  }
}

}  // namespace kvtier::demo
