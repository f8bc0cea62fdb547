// The box a spatial index is laid out on, robust to a few stray points (host code, shared by the
// CPU KnnIndex and the CUDA grid kNN so both size their structure by the same rule).
//
// Real scans carry flying pixels far from the part. A min/max box sized by them makes the CUDA
// grid's cells, or the CPU tree's Morton cells, up to as many times larger as the outliers are
// far: the whole part then falls into a handful of cells and every query scans thousands of
// points (20 points at 50-1000x the extent made the CPU knn 20x slower). The box is the 0.5% and
// 99.5% quantiles per axis of an evenly strided sample of the points, each side padded by a
// quarter of the range between them (per axis, so a flat scan's thin axis is not widened by its
// long ones), cut to the min/max box. A clean cloud keeps its min/max box: its 0.5% quantiles lie
// well within a quarter of its extent from its faces. Exactness never depends on this box (both
// indexes clamp outside points into boundary cells and bound them as such), only speed does.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/g3_macros.h"

namespace g3 {

constexpr int64_t kRobustBoxSample = 4096;  // sample size (points i * n / s, i < s)
constexpr double kRobustBoxQuantile = 0.005;
constexpr double kRobustBoxPad = 0.25;

// How many points robust_box samples from a cloud of n.
inline int64_t robust_box_samples(int64_t n) { return std::min<int64_t>(n, kRobustBoxSample); }

// Index of the i-th of s sampled points among n (s <= kRobustBoxSample): evenly spread, the same
// on every run, on the host and in a kernel.
G3_HD int64_t robust_box_sample_index(int64_t i, int64_t n, int64_t s) { return i * n / s; }  // no overflow below n = 2^51

// The box from s sampled points, coordinate a of the i-th given by coord(i, a) (finite, s >= 1);
// tlo/thi: the min/max box of all points (finite; an extent that overflows a double gives the
// min/max box back). Writes the robust box to lo/hi (tlo <= lo <= hi <= thi per axis).
template <typename Coord>
inline void robust_box_of(Coord coord, int64_t s, const double tlo[3], const double thi[3], double lo[3],
                          double hi[3]) {
  std::vector<double> v(static_cast<size_t>(s));
  const auto cut = std::ptrdiff_t(kRobustBoxQuantile * double(s - 1));
  const auto first = v.begin() + cut, last = v.end() - 1 - cut;
  for (int a = 0; a < 3; ++a) {
    for (int64_t i = 0; i < s; ++i) v[size_t(i)] = double(coord(i, a));
    std::nth_element(v.begin(), first, v.end());
    const double qlo = *first;
    std::nth_element(v.begin(), last, v.end());
    const double qhi = *last;
    // qhi - qlo <= the true extent (finite); the min/max against the true box also absorbs a
    // padded side that overflows near the double range.
    const double pad = kRobustBoxPad * (qhi - qlo);
    lo[a] = std::max(tlo[a], qlo - pad);
    hi[a] = std::min(thi[a], qhi + pad);
  }
}

// sample: (s,3) row-major, already the strided sample (the CUDA grid gathers it on the device).
template <typename T>
inline void robust_box(const T* sample, int64_t s, const double tlo[3], const double thi[3], double lo[3],
                       double hi[3]) {
  robust_box_of([sample](int64_t i, int a) { return sample[3 * i + a]; }, s, tlo, thi, lo, hi);
}

// points: the whole (n,3) row-major cloud (n >= 1), sampled here (the CPU KnnIndex).
template <typename T>
inline void robust_box_of_cloud(const T* points, int64_t n, const double tlo[3], const double thi[3],
                                double lo[3], double hi[3]) {
  const int64_t s = robust_box_samples(n);
  robust_box_of([points, n, s](int64_t i, int a) { return points[3 * robust_box_sample_index(i, n, s) + a]; },
                s, tlo, thi, lo, hi);
}

}  // namespace g3
