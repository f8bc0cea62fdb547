// Rounding-error bounds that let nn_search certify a fast float32 candidate search, shared by
// the CPU (GEMM expansion) and CUDA (direct differences) launchers.
//
// Both backends first keep, for every query, the m = k + margin bank rows with the smallest
// float32 *approximate* squared distance, then recompute those m distances exactly (float64,
// direct differences) and keep the k best. That answer is provably the exact one when every
// bank row outside the m candidates is farther than the exact k-th distance; since the
// non-candidates' approximations are >= the worst candidate's approximation `a_m`, it suffices
// that a lower bound of the true distance implied by a_m exceeds the exact k-th distance.
// Rows that fail this test are recomputed by exact brute force, so the answer is exact always;
// the bounds only decide how often that slow path runs.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/g3_macros.h"

namespace g3 {

constexpr double kFloat32UnitRoundoff = 5.9604644775390625e-08;  // 2^-24
constexpr double kBFloat16UnitRoundoff = 3.90625e-03;            // 2^-8

// Candidates kept per query beyond k: enough that random and clustered data almost never
// reach the exact brute-force path, few enough that selection stays cheap.
G3_HD int64_t nn_candidate_count(int64_t k, int64_t bank_rows) {
  const int64_t extra = k / 8 > 16 ? k / 8 : 16;
  return k + extra < bank_rows ? k + extra : bank_rows;
}

// CPU: approximations come from the expansion |qc|^2 + |bc|^2 - 2 qc.bc of rows centred on the
// bank mean and rounded to float32 (qc, bc), the dot product from a float32 GEMM that may
// round its inputs to a unit roundoff `gemm_input_u` first (0 for IEEE float32; bf16 when
// torch's float32 matmul precision allows it). qnorm = |qc|, bmax = max |bc| over the bank.
// Returns a lower bound on the true Euclidean distance of any bank row whose approximate
// squared distance is >= approx_d2, or a negative number where no bound exists. Every
// term is doubled as a safety factor.
G3_HD double expansion_distance_lower_bound(double approx_d2, double qnorm, double bmax,
                                            int64_t dims, double gemm_input_u) {
  const double u = kFloat32UnitRoundoff;
  const double nu = static_cast<double>(dims) * u;
  if (nu >= 0.5) return -1.0;
  const double gamma = nu / (1.0 - nu);  // any summation order, with or without FMA
  // |computed - exact| of the expansion: the dot product (times 2), then rounding of |bc|^2
  // and of the GEMM's bias add and scaling.
  const double err_d2 = 2.0 * (2.0 * (gamma + 2.0 * gemm_input_u) * qnorm * bmax +
                               3.0 * u * (bmax * bmax + 2.0 * qnorm * bmax));
  // Rounding the centred coordinates to float32 moves each row by at most u * its norm.
  const double err_dist = 2.0 * 1.01 * u * (qnorm + bmax);
  const double lb2 = approx_d2 - err_d2;
  if (lb2 <= 0.0) return -1.0;
  return sqrt(lb2) - err_dist;
}

// CUDA: approximations are sums of fl(fl(q_i - b_i)^2) in float32 (no cancellation: every
// term is >= 0), so the relative error is at most (1+u)^3 (1 + gamma_D) - 1. Returns a lower
// bound on the true squared distance of any row whose approximation is >= approx_d2.
G3_HD double direct_d2_lower_bound(double approx_d2, int64_t dims) {
  const double u = kFloat32UnitRoundoff;
  const double nu = static_cast<double>(dims) * u;
  if (nu >= 0.5) return -1.0;
  const double rel = 2.0 * (nu / (1.0 - nu) + 4.0 * u);  // doubled as a safety factor
  return approx_d2 / (1.0 + rel);
}

}  // namespace g3
