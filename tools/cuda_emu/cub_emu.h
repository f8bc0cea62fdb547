// Host versions of the cub algorithms the kernels call, with cub's temporary-storage protocol
// (a null temp pointer asks for the size; otherwise the caller's bytes must suffice) and its
// ordering: radix sorts are stable and compare only the bits [begin_bit, end_bit); floating-point
// keys are ordered as cub's radix twiddle orders them (-0 equal to +0).
#pragma once

#include <algorithm>
#include <cstring>
#include <numeric>
#include <type_traits>
#include <vector>

#include "cuda_emu.h"

namespace cub {

// Any size will do as long as the callers honour it; proportional so that a caller sizing
// for fewer items than it sorts is caught.
inline size_t emu_temp_bytes(int64_t items, int64_t segments) {
  return size_t(64 + 8 * items + 8 * segments);
}

// Unsigned key with the same order as cub's radix sort of K.
template <class K>
uint64_t emu_radix_key(K k) {
  if constexpr (std::is_floating_point_v<K>) {
    if (k == K(0)) k = K(0);  // -0 -> +0
    using U = std::conditional_t<sizeof(K) == 4, uint32_t, uint64_t>;
    U u;
    std::memcpy(&u, &k, sizeof u);
    const U sign = U(1) << (8 * sizeof(U) - 1);
    return (u & sign) ? ~u : (u | sign);
  } else {
    static_assert(std::is_unsigned_v<K>, "emulated for unsigned and floating-point keys");
    return k;
  }
}

// Stable sort of items [begin, end) of (kin, vin) into (kout, vout) by key(i).
template <class K, class V, class Key>
void emu_stable_sort(const K* kin, K* kout, const V* vin, V* vout, int64_t begin, int64_t end, Key key) {
  std::vector<int64_t> order(size_t(end - begin));
  std::iota(order.begin(), order.end(), begin);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return key(a) < key(b); });
  // Through copies: cub allows in == out only for DoubleBuffer, but copies make aliasing harmless.
  std::vector<K> ks(order.size());
  std::vector<V> vs(order.size());
  for (size_t j = 0; j < order.size(); ++j) {
    ks[j] = kin[order[j]];
    vs[j] = vin[order[j]];
  }
  std::copy(ks.begin(), ks.end(), kout + begin);
  std::copy(vs.begin(), vs.end(), vout + begin);
}

struct DeviceRadixSort {
  template <class K, class V, class N>
  static cudaError_t SortPairs(void* temp, size_t& temp_bytes, const K* kin, K* kout, const V* vin, V* vout, N n,
                               int begin_bit = 0, int end_bit = sizeof(K) * 8, cudaStream_t = nullptr) {
    const size_t need = emu_temp_bytes(int64_t(n), 0);
    if (!temp) {
      temp_bytes = need;
      return cudaSuccess;
    }
    if (temp_bytes < need) emu_fail("cub::DeviceRadixSort::SortPairs: temporary storage too small");
    if (begin_bit < 0 || end_bit > int(sizeof(K) * 8) || begin_bit >= end_bit) {
      emu_fail("cub::DeviceRadixSort::SortPairs: invalid bit range");
    }
    const int bits = end_bit - begin_bit;
    const uint64_t mask = bits >= 64 ? ~uint64_t(0) : (uint64_t(1) << bits) - 1;
    emu_stable_sort(kin, kout, vin, vout, 0, int64_t(n),
                    [&](int64_t i) { return (emu_radix_key(kin[i]) >> begin_bit) & mask; });
    return cudaSuccess;
  }
};

struct DeviceSegmentedSort {
  template <class K, class V, class N, class S, class BeginIt, class EndIt>
  static cudaError_t StableSortPairs(void* temp, size_t& temp_bytes, const K* kin, K* kout, const V* vin, V* vout,
                                     N num_items, S num_segments, BeginIt begin, EndIt end,
                                     cudaStream_t = nullptr) {
    const size_t need = emu_temp_bytes(int64_t(num_items), int64_t(num_segments));
    if (!temp) {
      temp_bytes = need;
      return cudaSuccess;
    }
    if (temp_bytes < need) emu_fail("cub::DeviceSegmentedSort::StableSortPairs: temporary storage too small");
    for (int64_t s = 0; s < int64_t(num_segments); ++s) {
      const int64_t b = begin[s], e = end[s];
      if (b < 0 || b > e || e > int64_t(num_items)) emu_fail("cub::DeviceSegmentedSort: segment out of range");
      emu_stable_sort(kin, kout, vin, vout, b, e, [&](int64_t i) { return emu_radix_key(kin[i]); });
    }
    return cudaSuccess;
  }
};

}  // namespace cub
