#include "kv_data.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <sstream>

#include "rng.h"

namespace kvtier::bench {

namespace {

constexpr int kOutlierEvery = 64;     // 1 channel in 64 is an outlier
constexpr double kLogScaleMin = -5;   // scales log-uniform in [2^-5, 2^1]
constexpr double kLogScaleMax = 1;
constexpr double kOutlierLogMin = 4;  // outlier factor log-uniform in [16, 64]
constexpr double kOutlierLogMax = 6;
constexpr double kKeyMeanRange = 2;   // key mean uniform in [-2, 2] x scale

uint32_t FloatBits(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  return x;
}

float BitsFloat(uint32_t x) {
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

// Acklam's rational approximation of the inverse normal CDF (rel. error
// 1.15e-9), used once to build the quantile table.
double InverseNormalCdf(double p) {
  static constexpr double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
                                 -2.759285104469687e+02, 1.383577518672690e+02,
                                 -3.066479806614716e+01, 2.506628277459239e+00};
  static constexpr double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
                                 -1.556989798598866e+02, 6.680131188771972e+01,
                                 -1.328068155288572e+01};
  static constexpr double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
                                 -2.400758277161838e+00, -2.549732539343734e+00,
                                 4.374664141464968e+00,  2.938163982698783e+00};
  static constexpr double d[] = {7.784695709041462e-03, 3.224671290700398e-01,
                                 2.445134137142996e+00, 3.754408661907416e+00};
  constexpr double kLow = 0.02425;
  if (p < kLow || p > 1 - kLow) {
    double q = std::sqrt(-2 * std::log(p < kLow ? p : 1 - p));
    double x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
               ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    return p < kLow ? x : -x;
  }
  double q = p - 0.5, r = q * q;
  return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
         (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

// N(0,1) by a piecewise-linear inverse CDF: 12 bits pick a segment between
// two of 4097 quantiles, 20 bits place the sample inside it.
constexpr int kQuantileBits = 12;
constexpr int kQuantiles = 1 << kQuantileBits;

const std::array<float, kQuantiles + 1>& QuantileTable() {
  static const std::array<float, kQuantiles + 1> table = [] {
    std::array<float, kQuantiles + 1> t{};
    for (int i = 0; i <= kQuantiles; ++i) {
      t[i] = static_cast<float>(InverseNormalCdf((i + 0.5) / (kQuantiles + 1.0)));
    }
    return t;
  }();
  return table;
}

inline float Normal(const std::array<float, kQuantiles + 1>& t, uint32_t r) {
  uint32_t i = r >> (32 - kQuantileBits);
  float frac = static_cast<float>(r & ((1u << (32 - kQuantileBits)) - 1)) * 0x1.0p-20f;
  return t[i] + frac * (t[i + 1] - t[i]);
}

template <typename Encode>
void FillTyped(const BlockLayout& layout, const std::vector<float>& scale,
               const std::vector<float>& mean, uint64_t stream, std::byte* out, size_t esize,
               Encode encode) {
  const auto& table = QuantileTable();
  const size_t channels = size_t{layout.num_kv_heads} * layout.head_dim;
  Rng rng(stream);
  std::byte* p = out;
  for (uint32_t layer = 0; layer < layout.num_layers; ++layer) {
    for (int kv = 0; kv < 2; ++kv) {
      const float* s = scale.data() + (size_t{layer} * 2 + kv) * channels;
      const float* m = mean.data() + (size_t{layer} * 2 + kv) * channels;
      for (uint32_t token = 0; token < layout.block_size; ++token) {
        size_t ch = 0;
        for (; ch + 1 < channels; ch += 2) {
          uint64_t r = rng.Next();
          encode(m[ch] + s[ch] * Normal(table, static_cast<uint32_t>(r)), p);
          encode(m[ch + 1] + s[ch + 1] * Normal(table, static_cast<uint32_t>(r >> 32)),
                 p + esize);
          p += 2 * esize;
        }
        if (ch < channels) {
          encode(m[ch] + s[ch] * Normal(table, static_cast<uint32_t>(rng.Next())), p);
          p += esize;
        }
      }
    }
  }
}

}  // namespace

// Maratyszcza's FP16 conversion: exact round-to-nearest-even, subnormals,
// overflow to infinity and NaN preserved, using the FPU's own rounding.
uint16_t FloatToHalfRne(float f) {
  const float scale_to_inf = 0x1.0p+112f;
  const float scale_to_zero = 0x1.0p-110f;
  float base = (std::fabs(f) * scale_to_inf) * scale_to_zero;
  const uint32_t w = FloatBits(f);
  const uint32_t shl1_w = w + w;
  const uint32_t sign = w & 0x80000000u;
  uint32_t bias = shl1_w & 0xFF000000u;
  if (bias < 0x71000000u) bias = 0x71000000u;
  base = BitsFloat((bias >> 1) + 0x07800000u) + base;
  const uint32_t bits = FloatBits(base);
  const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
  const uint32_t mantissa_bits = bits & 0x00000FFFu;
  const uint32_t nonsign = exp_bits + mantissa_bits;
  return static_cast<uint16_t>((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

uint16_t FloatToBf16Rne(float f) {
  uint32_t x = FloatBits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40);  // quiet NaN
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(x >> 16);
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    float v = std::ldexp(static_cast<float>(mant), -24);
    return sign ? -v : v;
  }
  if (exp == 31) return BitsFloat(sign | 0x7f800000u | (mant << 13));
  return BitsFloat(sign | ((exp + 112) << 23) | (mant << 13));
}

KvDataGenerator::KvDataGenerator(const BlockLayout& layout, uint64_t seed)
    : layout_(layout), seed_(seed) {
  const size_t channels = size_t{layout.num_kv_heads} * layout.head_dim;
  const size_t n = size_t{layout.num_layers} * 2 * channels;
  scale_.resize(n);
  mean_.resize(n);
  Rng rng(seed);
  for (size_t i = 0; i < n; ++i) {
    const bool is_key = (i / channels) % 2 == 0;
    double log_scale = kLogScaleMin + (kLogScaleMax - kLogScaleMin) * rng.Uniform();
    if (rng.Next() % kOutlierEvery == 0) {
      log_scale += kOutlierLogMin + (kOutlierLogMax - kOutlierLogMin) * rng.Uniform();
    }
    scale_[i] = static_cast<float>(std::exp2(log_scale));
    double u = rng.Uniform();
    mean_[i] = is_key ? static_cast<float>((2 * u - 1) * kKeyMeanRange * scale_[i]) : 0.0f;
  }
}

void KvDataGenerator::Fill(uint64_t key, std::span<std::byte> out) const {
  const uint64_t stream = MixSeed(seed_, key);
  std::byte* p = out.data();
  switch (layout_.dtype) {
    case DType::kF32:
      FillTyped(layout_, scale_, mean_, stream, p, 4,
                [](float v, std::byte* dst) { std::memcpy(dst, &v, 4); });
      break;
    case DType::kF16:
      FillTyped(layout_, scale_, mean_, stream, p, 2, [](float v, std::byte* dst) {
        uint16_t h = FloatToHalfRne(v);
        std::memcpy(dst, &h, 2);
      });
      break;
    case DType::kBF16:
      FillTyped(layout_, scale_, mean_, stream, p, 2, [](float v, std::byte* dst) {
        uint16_t h = FloatToBf16Rne(v);
        std::memcpy(dst, &h, 2);
      });
      break;
    default:  // 1-byte types: int8 quantization at a fixed step of 1/16
      FillTyped(layout_, scale_, mean_, stream, p, 1, [](float v, std::byte* dst) {
        float q = std::nearbyint(std::clamp(v * 16.0f, -127.0f, 127.0f));
        *dst = static_cast<std::byte>(static_cast<int8_t>(q));
      });
      break;
  }
}

std::vector<std::byte> KvDataGenerator::Block(uint64_t key) const {
  std::vector<std::byte> out(layout_.block_bytes());
  Fill(key, out);
  return out;
}

std::string KvDataGenerator::Describe() const {
  std::ostringstream os;
  os << "synthetic K/V (seed 0x" << std::hex << seed_ << std::dec << ", layout "
     << layout_.ToString() << "): per-channel scale log-uniform [2^" << kLogScaleMin << ", 2^"
     << kLogScaleMax << "], key means uniform +-" << kKeyMeanRange << "x scale, 1/"
     << kOutlierEvery << " outlier channels x[" << (1 << static_cast<int>(kOutlierLogMin))
     << "," << (1 << static_cast<int>(kOutlierLogMax)) << "], N(0,1) noise, RNE to "
     << DTypeName(layout_.dtype);
  return os.str();
}

}  // namespace kvtier::bench
