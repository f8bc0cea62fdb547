// Shared by the CPU (.cpp) and CUDA (.cu) launchers: per-element math lives in headers of
// inline host+device functions so both backends round and break ties identically.
#pragma once

#if defined(__CUDACC__)
#define G3_HD __host__ __device__ __forceinline__
#define G3_DEVICE __device__ __forceinline__
#else
// always_inline: the math must be inlined into the multi-versioned CPU loops to be compiled
// for their instruction sets (an out-of-line copy would run the baseline code).
#define G3_HD inline __attribute__((always_inline))
#endif

#include <cstdint>

// Hot CPU loops compiled for AVX-512 and AVX2 beside the portable baseline, picked at load time
// (GCC function multi-versioning). Same IEEE operations, no FMA (-ffp-contract=off): every
// version gives the same bits, only wider. Plain on other compilers and targets.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#define G3_CPU_MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define G3_CPU_MULTIVERSION
#endif

namespace g3 {

// Squared Euclidean distance in 3D, always evaluated as ((dx*dx + dy*dy) + dz*dz) with no
// fused multiply-add (host: -ffp-contract=off, device: --fmad=false), so CPU, CUDA and the
// naive PyTorch reference produce the same bits.
template <typename T>
G3_HD T sq_dist3(T ax, T ay, T az, T bx, T by, T bz) {
  const T dx = ax - bx;
  const T dy = ay - by;
  const T dz = az - bz;
  return dx * dx + dy * dy + dz * dz;
}

// "a beats b" for arg-max selections: larger value wins, ties go to the lower index.
template <typename T>
G3_HD bool better_max(T va, int64_t ia, T vb, int64_t ib) {
  return va > vb || (va == vb && ia < ib);
}

// "a beats b" for arg-min selections (kNN): smaller value wins, ties go to the lower index.
template <typename T>
G3_HD bool better_min(T va, int64_t ia, T vb, int64_t ib) {
  return va < vb || (va == vb && ia < ib);
}

}  // namespace g3
