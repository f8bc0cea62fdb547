// Per-element math of the normals, fpfh and fpfh_variation ops, shared by the CPU loops
// (csrc/cpu/geometry_cpu.cpp) and the CUDA kernels (csrc/cuda/geometry_kernel.cu). Everything is
// double precision, as in Open3D, whose definitions these reproduce step for step:
//   * normals: covariance of the hybrid neighbourhood (the point itself included), eigenvector of
//     the smallest eigenvalue from the closed-form robust symmetric 3x3 solver (D. Eberly,
//     "A Robust Eigensolver for 3x3 Symmetric Matrices", the algorithm Open3D's fast normal path
//     uses), with the same branch structure so results agree to rounding;
//   * FPFH: the Rusu pair feature, 11 bins per angle, 100/(n-1) per pair, neighbour SPFHs
//     weighted by 1/squared distance, each sub-histogram normalised to 100, plus the point's own
//     SPFH (sub-histograms sum to 200).
#pragma once

#include <cmath>
#include <cstdint>

#include "common/g3_macros.h"

namespace g3 {
namespace geom {

constexpr int kFpfhBins = 33;    // [theta 0..10 | alpha 11..21 | phi 22..32]
constexpr int kBinsPerAngle = 11;
constexpr double kPi = 3.14159265358979323846;
constexpr double kDoubleMax = 1.7976931348623157e308;  // finite check usable on host and device

G3_HD double dot3(const double* a, const double* b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

G3_HD void cross3(const double* a, const double* b, double* out) {
  out[0] = a[1] * b[2] - a[2] * b[1];
  out[1] = a[2] * b[0] - a[0] * b[2];
  out[2] = a[0] * b[1] - a[1] * b[0];
}

// ---------------------------------------------------------------------------------------------
// Covariance. Moments are accumulated relative to the query point (shift invariance of the
// covariance): the same E[xx^T] - E[x]E[x]^T formula as Open3D, without the cancellation that raw
// moments suffer for clouds far from the origin; identical points give exactly zero.
struct Moments {
  double s[3] = {0, 0, 0};
  double ss[6] = {0, 0, 0, 0, 0, 0};  // xx xy xz yy yz zz
  int64_t n = 0;
};

G3_HD void moments_add(Moments& m, double dx, double dy, double dz) {
  m.s[0] += dx;
  m.s[1] += dy;
  m.s[2] += dz;
  m.ss[0] += dx * dx;
  m.ss[1] += dx * dy;
  m.ss[2] += dx * dz;
  m.ss[3] += dy * dy;
  m.ss[4] += dy * dz;
  m.ss[5] += dz * dz;
  m.n += 1;
}

// Symmetric 3x3 as a[3][3] from the moments (divides by n).
G3_HD void covariance_from_moments(const Moments& m, double a[3][3]) {
  const double inv = 1.0 / static_cast<double>(m.n);
  const double mx = m.s[0] * inv, my = m.s[1] * inv, mz = m.s[2] * inv;
  a[0][0] = m.ss[0] * inv - mx * mx;
  a[1][1] = m.ss[3] * inv - my * my;
  a[2][2] = m.ss[5] * inv - mz * mz;
  a[0][1] = a[1][0] = m.ss[1] * inv - mx * my;
  a[0][2] = a[2][0] = m.ss[2] * inv - mx * mz;
  a[1][2] = a[2][1] = m.ss[4] * inv - my * mz;
}

// A unit vector orthogonal to the unit vector v (the same choice as the solver's second step).
G3_HD void any_orthogonal(const double* v, double* u) {
  if (fabs(v[0]) > fabs(v[1])) {
    const double inv = 1.0 / sqrt(v[0] * v[0] + v[2] * v[2]);
    u[0] = -v[2] * inv;
    u[1] = 0.0;
    u[2] = v[0] * inv;
  } else {
    const double inv = 1.0 / sqrt(v[1] * v[1] + v[2] * v[2]);
    u[0] = 0.0;
    u[1] = v[2] * inv;
    u[2] = -v[1] * inv;
  }
}

// Eigenvector of a for the eigenvalue `ev` of multiplicity one: the largest cross product of two
// rows of (a - ev I). When all cross products vanish (ev has multiplicity >= 2, which the
// closed form cannot tell apart from rounding), any vector orthogonal to the largest row lies in
// the eigenspace; when a == ev I, every vector does and (0,0,1) is returned. Never NaN.
G3_HD void eigenvector_simple(const double a[3][3], double ev, double* out) {
  const double r0[3] = {a[0][0] - ev, a[0][1], a[0][2]};
  const double r1[3] = {a[0][1], a[1][1] - ev, a[1][2]};
  const double r2[3] = {a[0][2], a[1][2], a[2][2] - ev};
  double c01[3], c02[3], c12[3];
  cross3(r0, r1, c01);
  cross3(r0, r2, c02);
  cross3(r1, r2, c12);
  const double d0 = dot3(c01, c01), d1 = dot3(c02, c02), d2 = dot3(c12, c12);
  double dmax = d0;
  const double* best = c01;
  if (d1 > dmax) {
    dmax = d1;
    best = c02;
  }
  if (d2 > dmax) {
    dmax = d2;
    best = c12;
  }
  if (dmax > 0.0) {
    const double inv = 1.0 / sqrt(dmax);
    out[0] = best[0] * inv;
    out[1] = best[1] * inv;
    out[2] = best[2] * inv;
    return;
  }
  const double n0 = dot3(r0, r0), n1 = dot3(r1, r1), n2 = dot3(r2, r2);
  const double* row = r0;
  double nmax = n0;
  if (n1 > nmax) {
    nmax = n1;
    row = r1;
  }
  if (n2 > nmax) {
    nmax = n2;
    row = r2;
  }
  if (nmax > 0.0) {
    const double inv = 1.0 / sqrt(nmax);
    const double unit[3] = {row[0] * inv, row[1] * inv, row[2] * inv};
    any_orthogonal(unit, out);
    return;
  }
  out[0] = 0.0;
  out[1] = 0.0;
  out[2] = 1.0;
}

// a x for a symmetric 3x3 a (upper triangle read), each row summed left to right.
G3_HD void sym_times(const double a[3][3], const double* x, double* out) {
  out[0] = a[0][0] * x[0] + a[0][1] * x[1] + a[0][2] * x[2];
  out[1] = a[0][1] * x[0] + a[1][1] * x[1] + a[1][2] * x[2];
  out[2] = a[0][2] * x[0] + a[1][2] * x[1] + a[2][2] * x[2];
}

// Scales (p, q) to unit length the way Open3D's eigenvector solver does: divide by the entry of
// larger magnitude, then by sqrt(1 + r^2). Leaves them and returns false when both are zero.
G3_HD bool unit_pair(double& p, double& q) {
  const double ap = fabs(p), aq = fabs(q);
  if (!((ap > aq ? ap : aq) > 0.0)) return false;
  if (ap >= aq) {
    q /= p;
    p = 1.0 / sqrt(1.0 + q * q);
    q *= p;
  } else {
    p /= q;
    q = 1.0 / sqrt(1.0 + p * p);
    p *= q;
  }
  return true;
}

// Second eigenvector, in the plane orthogonal to the unit eigenvector e0, for eigenvalue ev.
G3_HD void eigenvector_in_plane(const double a[3][3], const double* e0, double ev, double* out) {
  double u[3], v[3];
  any_orthogonal(e0, u);
  cross3(e0, u, v);
  double au[3], av[3];
  sym_times(a, u, au);
  sym_times(a, v, av);
  double m00 = dot3(u, au) - ev;
  double m01 = dot3(u, av);
  double m11 = dot3(v, av) - ev;
  // out = cu * u - cv * v, from the row of larger diagonal entry, as Open3D does.
  double cu = 1.0, cv = 0.0;
  if (fabs(m00) >= fabs(m11)) {
    if (unit_pair(m00, m01)) {
      cu = m01;
      cv = m00;
    }
  } else if (unit_pair(m11, m01)) {
    cu = m11;
    cv = m01;
  }
  out[0] = cu * u[0] - cv * v[0];
  out[1] = cu * u[1] - cv * v[1];
  out[2] = cu * u[2] - cv * v[2];
}

// Unit eigenvector of the smallest eigenvalue of the symmetric covariance `cov`.
// Degenerate inputs, documented (Open3D's choices, made NaN-free):
//   * zero matrix (all neighbours identical): (0,0,1);
//   * diagonal matrix: the axis of the strictly smallest diagonal entry, else (0,0,1)
//     (a line along x gives (0,0,1));
//   * repeated smallest eigenvalue (collinear neighbourhood off the axes): a unit vector
//     orthogonal to the line, chosen deterministically.
G3_HD void smallest_eigenvector(const double cov[3][3], double* out) {
  double scale = 0.0;
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) scale = fabs(cov[r][c]) > scale ? fabs(cov[r][c]) : scale;
  out[0] = 0.0;
  out[1] = 0.0;
  out[2] = 1.0;
  if (!(scale > 0.0) || !(scale <= kDoubleMax)) return;
  double a[3][3];
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) a[r][c] = cov[r][c] / scale;

  const double off = a[0][1] * a[0][1] + a[0][2] * a[0][2] + a[1][2] * a[1][2];
  if (!(off > 0.0)) {
    if (a[0][0] < a[1][1] && a[0][0] < a[2][2]) {
      out[0] = 1.0;
      out[2] = 0.0;
    } else if (a[1][1] < a[0][0] && a[1][1] < a[2][2]) {
      out[1] = 1.0;
      out[2] = 0.0;
    }
    return;
  }
  const double q = (a[0][0] + a[1][1] + a[2][2]) / 3.0;
  const double b00 = a[0][0] - q, b11 = a[1][1] - q, b22 = a[2][2] - q;
  const double p = sqrt((b00 * b00 + b11 * b11 + b22 * b22 + off * 2.0) / 6.0);
  const double c00 = b11 * b22 - a[1][2] * a[1][2];
  const double c01 = a[0][1] * b22 - a[1][2] * a[0][2];
  const double c02 = a[0][1] * a[1][2] - b11 * a[0][2];
  const double det = (b00 * c00 - a[0][1] * c01 + a[0][2] * c02) / (p * p * p);
  double half_det = det * 0.5;
  half_det = half_det < -1.0 ? -1.0 : (half_det > 1.0 ? 1.0 : half_det);
  const double angle = acos(half_det) / 3.0;
  const double two_thirds_pi = 2.09439510239319549;
  const double beta2 = cos(angle) * 2.0;
  const double beta0 = cos(angle + two_thirds_pi) * 2.0;
  const double beta1 = -(beta0 + beta2);
  const double ev0 = q + p * beta0, ev1 = q + p * beta1, ev2 = q + p * beta2;

  double e[3], f[3], g[3];
  if (half_det >= 0.0) {
    // The largest eigenvalue is the well separated one: solve it first, the smallest last.
    eigenvector_simple(a, ev2, e);
    if (ev2 < ev0 && ev2 < ev1) {
      out[0] = e[0], out[1] = e[1], out[2] = e[2];
    } else {
      eigenvector_in_plane(a, e, ev1, f);
      if (ev1 < ev0 && ev1 < ev2) {
        out[0] = f[0], out[1] = f[1], out[2] = f[2];
      } else {
        cross3(f, e, g);
        out[0] = g[0], out[1] = g[1], out[2] = g[2];
      }
    }
  } else {
    eigenvector_simple(a, ev0, e);
    if (ev0 < ev1 && ev0 < ev2) {
      out[0] = e[0], out[1] = e[1], out[2] = e[2];
    } else {
      eigenvector_in_plane(a, e, ev1, f);
      if (ev1 < ev0 && ev1 < ev2) {
        out[0] = f[0], out[1] = f[1], out[2] = f[2];
      } else {
        cross3(e, f, g);
        out[0] = g[0], out[1] = g[1], out[2] = g[2];
      }
    }
  }
  const double len2 = dot3(out, out);
  if (!(len2 > 0.0) || !(len2 <= kDoubleMax)) {
    out[0] = 0.0;
    out[1] = 0.0;
    out[2] = 1.0;
  }
}

// Normal of a neighbourhood given its moments: fewer than 3 points -> (0,0,1) (Open3D uses an
// identity covariance there, which its solver maps to (0,0,1)).
G3_HD void normal_from_moments(const Moments& m, double* out) {
  if (m.n < 3) {
    out[0] = 0.0;
    out[1] = 0.0;
    out[2] = 1.0;
    return;
  }
  double cov[3][3];
  covariance_from_moments(m, cov);
  smallest_eigenvector(cov, out);
}

// ---------------------------------------------------------------------------------------------
// FPFH. Pair feature of a source point (p1,n1) and a target (p2,n2): theta = atan2(f[0], f[1]),
// alpha = f[2], phi = f[3] (theta is kept as the atan2 arguments: only its bin is needed, see
// theta_bin). Degenerate pairs (coincident points, or d parallel to the source normal) give
// (0,0,0,0), theta = atan2(0,0) = 0, binned like any other pair (bin 5 of each angle), as Open3D
// does.
G3_HD void pair_feature(const double* p1, const double* n1, const double* p2, const double* n2,
                        double* f) {
  f[0] = f[1] = f[2] = f[3] = 0.0;
  double d[3] = {p2[0] - p1[0], p2[1] - p1[1], p2[2] - p1[2]};
  const double len = sqrt(dot3(d, d));
  if (len == 0.0) return;
  const double a1 = dot3(n1, d) / len;
  const double a2 = dot3(n2, d) / len;
  // The source is the point whose normal makes the smaller angle with the line. Compare the
  // angles themselves (not |a|) where acos cannot separate them, as Open3D does, so pairs with
  // both normals near-orthogonal to d (planes) pick the same frame.
  const double abs1 = fabs(a1), abs2 = fabs(a2);
  bool swap = abs1 < abs2;
  if (swap && abs2 - abs1 < 1e-12) swap = acos(abs1) > acos(abs2);
  const double* u = n1;
  const double* nt = n2;
  double phi = a1;
  if (swap) {
    u = n2;
    nt = n1;
    d[0] = -d[0];
    d[1] = -d[1];
    d[2] = -d[2];
    phi = -a2;
  }
  double v[3];
  cross3(d, u, v);
  const double vlen = sqrt(dot3(v, v));
  if (vlen == 0.0) return;
  v[0] /= vlen;
  v[1] /= vlen;
  v[2] /= vlen;
  double w[3];
  cross3(u, v, w);
  f[0] = dot3(w, nt);
  f[1] = dot3(u, nt);
  f[2] = dot3(v, nt);
  f[3] = phi;
}

G3_HD int clamp_bin(double x) {
  int b = static_cast<int>(floor(x));
  return b < 0 ? 0 : (b >= kBinsPerAngle ? kBinsPerAngle - 1 : b);
}

// Bin of theta = atan2(y, x): clamp_bin(11 (theta + pi) / (2 pi)), exactly as computed with
// atan2, at a fraction of its cost. A cheap approximation (Rajan et al. 2006, max error
// 0.00151 rad, i.e. 0.0027 bin widths, checked on 2e7 angles) decides the bin whenever it lies
// more than kThetaMargin bin widths from a bin edge; within the margin (about 2% of pairs, and
// every pair near theta = +-pi, where the sign of a zero y matters) atan2 itself decides.
constexpr double kThetaMargin = 0.01;

// atan(a) for a in [0, 1], the approximation above.
G3_HD double atan_unit_approx(double a) {
  return 0.7853981633974483 * a - a * (a - 1.0) * (0.2447 + 0.0663 * a);
}

G3_HD int theta_bin(double y, double x) {
  const double ax = fabs(x), ay = fabs(y);
  const double hi = ax > ay ? ax : ay;
  if (hi > 0.0 && hi <= kDoubleMax) {
    const double a = (ax > ay ? ay : ax) / hi;
    double r = atan_unit_approx(a);
    if (ay > ax) r = 1.5707963267948966 - r;
    if (x < 0.0) r = kPi - r;
    if (y < 0.0) r = -r;
    const double v = 11.0 * (r + kPi) / (2.0 * kPi);
    const double fl = floor(v);
    if (v - fl > kThetaMargin && fl + 1.0 - v > kThetaMargin) return clamp_bin(v);
  }
  return clamp_bin(11.0 * (atan2(y, x) + kPi) / (2.0 * kPi));
}

// The three SPFH bins (0..32) of a pair feature.
G3_HD void pair_bins(const double* f, int* bins) {
  bins[0] = theta_bin(f[0], f[1]);
  bins[1] = kBinsPerAngle + clamp_bin(11.0 * (f[2] + 1.0) * 0.5);
  bins[2] = 2 * kBinsPerAngle + clamp_bin(11.0 * (f[3] + 1.0) * 0.5);
}

// pair_feature + pair_bins without branches, on scalars (d = p2 - p1), for loops that the
// compiler vectorises across pairs: every value is computed by the same IEEE operations in the
// same order (the swap negates d, exactly), only data-dependent branches become selects.
// Returns false, with unspecified bins, for the pairs that need the exact path: a near-tie of
// the frame choice (resolved with acos), theta within kThetaMargin of a bin edge or degenerate
// (resolved with atan2). Where it returns true the bins equal pair_bins(pair_feature(...)).
G3_HD bool pair_bins_branchless(double dx, double dy, double dz, double n1x, double n1y, double n1z,
                                double n2x, double n2y, double n2z, int* b0, int* b1, int* b2) {
  const double len = sqrt(dx * dx + dy * dy + dz * dz);
  const double len_safe = len == 0.0 ? 1.0 : len;
  const double a1 = (n1x * dx + n1y * dy + n1z * dz) / len_safe;
  const double a2 = (n2x * dx + n2y * dy + n2z * dz) / len_safe;
  const double abs1 = fabs(a1), abs2 = fabs(a2);
  const bool swap = abs1 < abs2;
  // Flags are kept as 0/1 doubles: selects between doubles only, which vectorise.
  const double near_tie = abs2 - abs1 < 1e-12 ? 1.0 : 0.0;
  const double tie = swap ? near_tie : 0.0;
  const double ux = swap ? n2x : n1x, uy = swap ? n2y : n1y, uz = swap ? n2z : n1z;
  const double tx = swap ? n1x : n2x, ty = swap ? n1y : n2y, tz = swap ? n1z : n2z;
  const double ndx = -dx, ndy = -dy, ndz = -dz;
  const double sx = swap ? ndx : dx, sy = swap ? ndy : dy, sz = swap ? ndz : dz;
  const double neg_a2 = -a2;
  const double phi = swap ? neg_a2 : a1;
  double vx = sy * uz - sz * uy, vy = sz * ux - sx * uz, vz = sx * uy - sy * ux;
  const double vlen = sqrt(vx * vx + vy * vy + vz * vz);
  const double vlen_safe = vlen == 0.0 ? 1.0 : vlen;
  vx /= vlen_safe;
  vy /= vlen_safe;
  vz /= vlen_safe;
  const double wx = uy * vz - uz * vy, wy = uz * vx - ux * vz, wz = ux * vy - uy * vx;
  const double vlen_zero = vlen == 0.0 ? 1.0 : 0.0;
  const bool zero = (len == 0.0 ? 1.0 : vlen_zero) != 0.0;  // pair_feature's (0,0,0,0)
  const double w_t = wx * tx + wy * ty + wz * tz, u_t = ux * tx + uy * ty + uz * tz;
  const double v_t = vx * tx + vy * ty + vz * tz;
  const double f0 = zero ? 0.0 : w_t, f1 = zero ? 0.0 : u_t, f2 = zero ? 0.0 : v_t;
  const double f3 = zero ? 0.0 : phi;
  // theta_bin's approximation, its exact-path conditions folded into the result.
  const double ax = fabs(f1), ay = fabs(f0);
  const double hi = ax > ay ? ax : ay;
  const double below_max = hi <= kDoubleMax ? 1.0 : 0.0;
  const bool finite = (hi > 0.0 ? below_max : 0.0) != 0.0;
  const double a = (ax > ay ? ay : ax) / (finite ? hi : 1.0);
  double r = atan_unit_approx(a);
  // Both sides of every select are computed first: a select of two values, not a branch
  // (the compiler does not speculate floating-point operations that a branch guards).
  const double r_steep = 1.5707963267948966 - r;
  r = ay > ax ? r_steep : r;
  const double r_back = kPi - r;
  r = f1 < 0.0 ? r_back : r;
  const double r_neg = -r;
  r = f0 < 0.0 ? r_neg : r;
  const double v_raw = 11.0 * (r + kPi) / (2.0 * kPi);
  const double v = finite ? v_raw : 0.0;
  const double fl = floor(v);
  const double clear_above = fl + 1.0 - v > kThetaMargin ? 1.0 : 0.0;
  const double clear = v - fl > kThetaMargin ? clear_above : 0.0;
  const double theta_ok = finite ? clear : 0.0;
  *b0 = clamp_bin(v);
  *b1 = kBinsPerAngle + clamp_bin(11.0 * (f2 + 1.0) * 0.5);
  *b2 = 2 * kBinsPerAngle + clamp_bin(11.0 * (f3 + 1.0) * 0.5);
  return (tie == 0.0 ? theta_ok : 0.0) != 0.0;
}

// SPFH value per pair for a neighbourhood of n points (the point itself included): each
// sub-histogram sums to 100 over the n-1 pairs. n <= 1: no pairs, the SPFH is zero.
G3_HD double spfh_increment(int64_t n) { return n > 1 ? 100.0 / static_cast<double>(n - 1) : 0.0; }

// FPFH weighting: adds a neighbour's SPFH (bin counts times its per-pair increment) weighted
// by 1/d2 to acc[33]. One division per neighbour, not per bin (this rounds
// (count * (incr / d2)) where Open3D rounds ((count * incr) / d2): ~1e-16 relative). A plain
// 33-wide multiply-add, so the CPU compiler vectorises it.
G3_HD void fpfh_accumulate(const int32_t* counts, double scale, double* acc) {
  for (int b = 0; b < kFpfhBins; ++b) acc[b] += static_cast<double>(counts[b]) * scale;
}

// FPFH row from the accumulated neighbour SPFHs: each sub-histogram normalised to sum to 100
// (Open3D sums the same values per neighbour; summing the bins at the end differs by ~1e-16
// relative), plus the point's own SPFH (counts times its increment).
G3_HD void fpfh_finish(const double* acc, const int32_t* own, double own_incr, double* out) {
  for (int s = 0; s < 3; ++s) {
    double sum = 0.0;
    for (int b = s * kBinsPerAngle; b < (s + 1) * kBinsPerAngle; ++b) sum += acc[b];
    const double norm = sum != 0.0 ? 100.0 / sum : 0.0;
    for (int b = s * kBinsPerAngle; b < (s + 1) * kBinsPerAngle; ++b)
      out[b] = acc[b] * norm + static_cast<double>(own[b]) * own_incr;
  }
}

// ---------------------------------------------------------------------------------------------
// FPFH variation (Group3AD eq. 15): ||f(p) - f(q)||_2 over `dim` features, in double. The
// squares are summed in 8 lanes (feature j into lane j % 8), then the lanes pairwise: a fixed
// order that every backend follows (same bits), and that the CPU compiler can vectorise.
template <typename F>
G3_HD double feature_distance(const F* a, const F* b, int64_t dim) {
  double lane[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
  int64_t j = 0;
  for (; j + 8 <= dim; j += 8)
    for (int l = 0; l < 8; ++l) {
      const double d = static_cast<double>(a[j + l]) - static_cast<double>(b[j + l]);
      lane[l] += d * d;
    }
  for (int l = 0; j < dim; ++j, ++l) {
    const double d = static_cast<double>(a[j]) - static_cast<double>(b[j]);
    lane[l] += d * d;
  }
  return sqrt(((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7])));
}

}  // namespace geom
}  // namespace g3
