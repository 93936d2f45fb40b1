// Statistics of K/V element values, for `kvtier show --stats`: the one
// place kvtier interprets element bytes (see layout.h).
#ifndef KVTIER_TOOLS_CLI_VALUE_STATS_H_
#define KVTIER_TOOLS_CLI_VALUE_STATS_H_

#include <cstddef>
#include <cstdint>
#include <span>

#include "kvtier/layout.h"

namespace kvtier::cli {

// Over the finite values of a tensor; NaN and infinities are only counted.
// int8 elements are taken as signed integers, fp8 as OCP E4M3 (no
// infinities, S.1111.111 is NaN) and E5M2 (IEEE-like, the top byte of f16).
struct ValueStats {
  uint64_t count = 0;  // elements, NaN and Inf included
  uint64_t nan = 0;
  uint64_t inf = 0;
  double min = 0;
  double max = 0;
  double sum = 0;
  double abs_max = 0;

  // Mean of the finite values; 0 when there are none.
  double mean() const {
    uint64_t finite = count - nan - inf;
    return finite == 0 ? 0 : sum / static_cast<double>(finite);
  }
};

// The value of one element of `dtype` stored at `p` (native byte order).
double ElementValue(const std::byte* p, DType dtype);

// REQUIRES: tensor.size() is a multiple of DTypeSize(dtype) > 0.
ValueStats ComputeValueStats(std::span<const std::byte> tensor, DType dtype);

}  // namespace kvtier::cli

#endif  // KVTIER_TOOLS_CLI_VALUE_STATS_H_
