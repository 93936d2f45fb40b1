#include "codec/shuffle.h"

#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace kvtier::codec {

namespace {

// Each kernel handles n whole elements; the callers copy any leftover bytes.

void ShuffleGeneric(size_t k, size_t n, const uint8_t* in, uint8_t* out) {
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* element = in + i * k;
    for (size_t j = 0; j < k; ++j) out[j * n + i] = element[j];
  }
}

void UnshuffleGeneric(size_t k, size_t n, const uint8_t* in, uint8_t* out) {
  for (size_t i = 0; i < n; ++i) {
    uint8_t* element = out + i * k;
    for (size_t j = 0; j < k; ++j) element[j] = in[j * n + i];
  }
}

#if defined(__SSE2__)

inline __m128i Load(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
inline void Store(uint8_t* p, __m128i v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), v); }

// Splits the 16-bit lanes of (a, b) into their low bytes and their high bytes:
// *lo = low bytes of a's 8 lanes then b's, *hi likewise for the high bytes.
inline void SplitLanes(__m128i a, __m128i b, __m128i* lo, __m128i* hi) {
  const __m128i low_byte = _mm_set1_epi16(0x00ff);
  *lo = _mm_packus_epi16(_mm_and_si128(a, low_byte), _mm_and_si128(b, low_byte));
  *hi = _mm_packus_epi16(_mm_srli_epi16(a, 8), _mm_srli_epi16(b, 8));
}

#endif  // __SSE2__

void Shuffle2(size_t n, const uint8_t* in, uint8_t* out) {
  uint8_t* byte0 = out;
  uint8_t* byte1 = out + n;
  size_t i = 0;
#if defined(__SSE2__)
  for (; i + 16 <= n; i += 16) {
    __m128i lo, hi;
    SplitLanes(Load(in + 2 * i), Load(in + 2 * i + 16), &lo, &hi);
    Store(byte0 + i, lo);
    Store(byte1 + i, hi);
  }
#endif
  for (; i < n; ++i) {
    byte0[i] = in[2 * i];
    byte1[i] = in[2 * i + 1];
  }
}

void Unshuffle2(size_t n, const uint8_t* in, uint8_t* out) {
  const uint8_t* byte0 = in;
  const uint8_t* byte1 = in + n;
  size_t i = 0;
#if defined(__SSE2__)
  for (; i + 16 <= n; i += 16) {
    const __m128i lo = Load(byte0 + i);
    const __m128i hi = Load(byte1 + i);
    Store(out + 2 * i, _mm_unpacklo_epi8(lo, hi));
    Store(out + 2 * i + 16, _mm_unpackhi_epi8(lo, hi));
  }
#endif
  for (; i < n; ++i) {
    out[2 * i] = byte0[i];
    out[2 * i + 1] = byte1[i];
  }
}

void Shuffle4(size_t n, const uint8_t* in, uint8_t* out) {
  size_t i = 0;
#if defined(__SSE2__)
  // Two rounds of the 2-byte split: first into bytes {0,2} and {1,3} of
  // each element, then each of those into single bytes.
  for (; i + 16 <= n; i += 16) {
    const uint8_t* p = in + 4 * i;
    __m128i even_lo, odd_lo, even_hi, odd_hi;  // elements 0..7 and 8..15
    SplitLanes(Load(p), Load(p + 16), &even_lo, &odd_lo);
    SplitLanes(Load(p + 32), Load(p + 48), &even_hi, &odd_hi);
    __m128i b0, b1, b2, b3;
    SplitLanes(even_lo, even_hi, &b0, &b2);
    SplitLanes(odd_lo, odd_hi, &b1, &b3);
    Store(out + i, b0);
    Store(out + n + i, b1);
    Store(out + 2 * n + i, b2);
    Store(out + 3 * n + i, b3);
  }
#endif
  for (; i < n; ++i) {
    for (size_t j = 0; j < 4; ++j) out[j * n + i] = in[4 * i + j];
  }
}

void Unshuffle4(size_t n, const uint8_t* in, uint8_t* out) {
  size_t i = 0;
#if defined(__SSE2__)
  for (; i + 16 <= n; i += 16) {
    const __m128i b0 = Load(in + i);
    const __m128i b1 = Load(in + n + i);
    const __m128i b2 = Load(in + 2 * n + i);
    const __m128i b3 = Load(in + 3 * n + i);
    // Pairs (byte0,byte1) and (byte2,byte3), then whole elements.
    const __m128i low01 = _mm_unpacklo_epi8(b0, b1);
    const __m128i low23 = _mm_unpacklo_epi8(b2, b3);
    const __m128i high01 = _mm_unpackhi_epi8(b0, b1);
    const __m128i high23 = _mm_unpackhi_epi8(b2, b3);
    uint8_t* p = out + 4 * i;
    Store(p, _mm_unpacklo_epi16(low01, low23));
    Store(p + 16, _mm_unpackhi_epi16(low01, low23));
    Store(p + 32, _mm_unpacklo_epi16(high01, high23));
    Store(p + 48, _mm_unpackhi_epi16(high01, high23));
  }
#endif
  for (; i < n; ++i) {
    for (size_t j = 0; j < 4; ++j) out[4 * i + j] = in[j * n + i];
  }
}

}  // namespace

void ShuffleBytes(size_t element_size, std::span<const std::byte> raw,
                  std::span<std::byte> shuffled) {
  if (raw.empty()) return;
  const auto* in = reinterpret_cast<const uint8_t*>(raw.data());
  auto* out = reinterpret_cast<uint8_t*>(shuffled.data());
  const size_t n = raw.size() / element_size;
  switch (element_size) {
    case 1: std::memcpy(out, in, n); break;
    case 2: Shuffle2(n, in, out); break;
    case 4: Shuffle4(n, in, out); break;
    default: ShuffleGeneric(element_size, n, in, out); break;
  }
  const size_t whole = n * element_size;
  if (whole < raw.size()) std::memcpy(out + whole, in + whole, raw.size() - whole);
}

void UnshuffleBytes(size_t element_size, std::span<const std::byte> shuffled,
                    std::span<std::byte> raw) {
  if (shuffled.empty()) return;
  const auto* in = reinterpret_cast<const uint8_t*>(shuffled.data());
  auto* out = reinterpret_cast<uint8_t*>(raw.data());
  const size_t n = shuffled.size() / element_size;
  switch (element_size) {
    case 1: std::memcpy(out, in, n); break;
    case 2: Unshuffle2(n, in, out); break;
    case 4: Unshuffle4(n, in, out); break;
    default: UnshuffleGeneric(element_size, n, in, out); break;
  }
  const size_t whole = n * element_size;
  if (whole < shuffled.size()) std::memcpy(out + whole, in + whole, shuffled.size() - whole);
}

}  // namespace kvtier::codec
