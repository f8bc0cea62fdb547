// Farthest point sampling: the per-element rules shared by the CPU and CUDA kernels, so both
// backends compute the same bits and pick the same indices.
//
// A point's "distance" is its squared distance to the nearest chosen point. Chosen points are
// marked with kChosen (-1): a real squared distance is never negative, so a chosen point can
// never win again, not even against an unchosen duplicate at distance 0. Ties go to the lowest
// index (g3::better_max).
#pragma once

#include "common/g3_macros.h"

namespace g3 {
namespace fps {

template <typename T>
G3_HD T chosen_mark() {
  return T(-1);
}

// Squared distance between two D-dim rows, accumulated in dimension order:
// ((d0*d0 + d1*d1) + d2*d2) + ... For D == 3 this is exactly g3::sq_dist3.
template <typename T>
G3_HD T sq_dist_rows(const T* a, const T* b, int64_t d) {
  T diff = a[0] - b[0];
  T acc = diff * diff;
  for (int64_t k = 1; k < d; ++k) {
    diff = a[k] - b[k];
    acc = acc + diff * diff;
  }
  return acc;
}

// Lower bound of sq_dist3(p, s) over every p in the box [lo, hi], evaluated so that it never
// exceeds the rounded sq_dist3 of any point inside (rounding is monotone: |fl(p - s)| >=
// fl(gap) per axis, and the sum is formed in the same order).
template <typename T>
G3_HD T box_sq_dist3(const T* lo, const T* hi, T sx, T sy, T sz) {
  const T s[3] = {sx, sy, sz};
  T g[3];
  for (int k = 0; k < 3; ++k) {
    g[k] = s[k] < lo[k] ? lo[k] - s[k] : (s[k] > hi[k] ? s[k] - hi[k] : T(0));
  }
  return g[0] * g[0] + g[1] * g[1] + g[2] * g[2];
}

}  // namespace fps
}  // namespace g3
