// Morton (Z-order) codes shared by the spatial indexes and the per-point loops that visit
// points in space order (kNN index build, geometry kernels).
#pragma once

#include <cstdint>

#include "common/g3_macros.h"

namespace g3 {

// The 21 low bits of x, with two zero bits inserted after each: interleave three of these
// (x | y << 1 | z << 2) for a 63-bit 3-D Morton code.
G3_HD uint64_t spread_bits3(uint64_t x) {
  x &= 0x1fffff;
  x = (x | x << 32) & 0x1f00000000ffffULL;
  x = (x | x << 16) & 0x1f0000ff0000ffULL;
  x = (x | x << 8) & 0x100f00f00f00f00fULL;
  x = (x | x << 4) & 0x10c30c30c30c30c3ULL;
  x = (x | x << 2) & 0x1249249249249249ULL;
  return x;
}

}  // namespace g3
