#include "value_stats.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace kvtier::cli {

namespace {

double HalfValue(uint16_t h) {
  int sign = h >> 15;
  int exp = (h >> 10) & 0x1f;
  int mant = h & 0x3ff;
  double v;
  if (exp == 0) {
    v = std::ldexp(mant, -24);
  } else if (exp == 31) {
    v = mant != 0 ? NAN : INFINITY;
  } else {
    v = std::ldexp(1024 + mant, exp - 25);
  }
  return sign ? -v : v;
}

double E4M3Value(uint8_t b) {
  int sign = b >> 7;
  int exp = (b >> 3) & 0xf;
  int mant = b & 0x7;
  double v;
  if (exp == 15 && mant == 7) {
    v = NAN;
  } else if (exp == 0) {
    v = std::ldexp(mant, -9);
  } else {
    v = std::ldexp(8 + mant, exp - 10);
  }
  return sign ? -v : v;
}

}  // namespace

double ElementValue(const std::byte* p, DType dtype) {
  switch (dtype) {
    case DType::kF32: {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    case DType::kF16: {
      uint16_t h;
      std::memcpy(&h, p, 2);
      return HalfValue(h);
    }
    case DType::kBF16: {
      uint16_t h;
      std::memcpy(&h, p, 2);
      uint32_t bits = uint32_t{h} << 16;
      float f;
      std::memcpy(&f, &bits, 4);
      return f;
    }
    case DType::kInt8:
      return static_cast<int8_t>(*p);
    case DType::kFP8E4M3:
      return E4M3Value(static_cast<uint8_t>(*p));
    case DType::kFP8E5M2:
      return HalfValue(static_cast<uint16_t>(static_cast<uint8_t>(*p) << 8));
  }
  return NAN;
}

ValueStats ComputeValueStats(std::span<const std::byte> tensor, DType dtype) {
  ValueStats st;
  size_t size = DTypeSize(dtype);
  if (size == 0) return st;
  bool any_finite = false;
  for (size_t off = 0; off + size <= tensor.size(); off += size) {
    double v = ElementValue(tensor.data() + off, dtype);
    ++st.count;
    if (std::isnan(v)) {
      ++st.nan;
      continue;
    }
    if (std::isinf(v)) {
      ++st.inf;
      continue;
    }
    if (!any_finite) {
      st.min = st.max = v;
      any_finite = true;
    }
    st.min = std::min(st.min, v);
    st.max = std::max(st.max, v);
    st.abs_max = std::max(st.abs_max, std::fabs(v));
    st.sum += v;
  }
  return st;
}

}  // namespace kvtier::cli
