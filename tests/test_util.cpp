#include "test_util.h"

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>

namespace kvtier::test {

namespace {

uint16_t FloatToHalf(float f) {
  // Round-to-nearest is not needed for test data: truncate.
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000;
  int32_t exp = static_cast<int32_t>((x >> 23) & 0xff) - 127 + 15;
  uint32_t mant = (x >> 13) & 0x3ff;
  if (exp <= 0) return static_cast<uint16_t>(sign);
  if (exp >= 31) return static_cast<uint16_t>(sign | 0x7c00);
  return static_cast<uint16_t>(sign | (exp << 10) | mant);
}

}  // namespace

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base ? base : "/tmp") + "/kvtier-test-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::permissions(path_, std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::add, ec);
  std::filesystem::remove_all(path_, ec);
}

BlockLayout SmallLayout(DType dtype, uint32_t block_size) {
  BlockLayout l;
  l.num_layers = 2;
  l.num_kv_heads = 2;
  l.head_dim = 8;
  l.block_size = block_size;
  l.dtype = dtype;
  return l;
}

Namespace TestNamespace(const BlockLayout& layout, const std::string& model) {
  Namespace ns;
  ns.layout = layout;
  ns.model = model;
  ns.revision = "rev1";
  ns.tokenizer = "tok1";
  return ns;
}

std::vector<uint32_t> Tokens(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + 1);
  std::vector<uint32_t> t(n);
  for (auto& x : t) x = static_cast<uint32_t>(rng() % 150000);
  return t;
}

std::vector<std::byte> Payload(const BlockLayout& layout, uint64_t seed) {
  std::vector<std::byte> out(layout.block_bytes());
  std::mt19937_64 rng(seed ^ 0xA5A5A5A5DEADBEEFull);
  std::normal_distribution<float> noise(0.0f, 1.0f);
  const size_t esize = layout.element_size();
  const size_t n = out.size() / esize;
  const size_t channels = layout.head_dim;
  for (size_t i = 0; i < n; ++i) {
    float scale = 0.05f * static_cast<float>(1 + (i % channels) % 7);
    float v = noise(rng) * scale;
    std::byte* p = out.data() + i * esize;
    switch (layout.dtype) {
      case DType::kF32:
        std::memcpy(p, &v, 4);
        break;
      case DType::kF16: {
        uint16_t h = FloatToHalf(v);
        std::memcpy(p, &h, 2);
        break;
      }
      case DType::kBF16: {
        uint32_t x;
        std::memcpy(&x, &v, 4);
        uint16_t b = static_cast<uint16_t>(x >> 16);
        std::memcpy(p, &b, 2);
        break;
      }
      default:
        *p = static_cast<std::byte>(static_cast<int8_t>(std::lround(v * 100)));
        break;
    }
  }
  return out;
}

}  // namespace kvtier::test
