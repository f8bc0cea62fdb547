// Exact memory-bank nearest-neighbour search on the CPU (op nn_search).
//
// 1. Centre bank and queries on the bank mean (rounded to float32, one rounding per value): the
//    expansion |q|^2 + |b|^2 - 2 q.b then works on small norms, so a constant offset such as
//    +1e4 on every coordinate cancels nothing.
// 2. Per tile of kQueryTile queries x kBankTile bank rows one float32 GEMM (at::addmm_out into a
//    reused 16 MiB buffer, BLAS threads) gives |bc|^2 - 2 qc.bc; a max-heap per query keeps the
//    m best (score, index) pairs, rows scanned in vectorised stripes against the heap's worst.
//    Only the tile is ever in memory, never the Q x B matrix.
// 3. Per query, the candidates are recomputed exactly (float64 sums of (q_i - b_i)^2 on the
//    original values) in approximate order until the rounding bound of the next approximation
//    (common/nn_search_bounds.h) proves that no remaining or unseen row can beat the exact k-th.
//    Queries that cannot be certified (many exact duplicates, overflow-sized values) are
//    recomputed by exact brute force over the whole bank.
#include <ATen/Context.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/addmm.h>  // addmm_out
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/nn_search_bounds.h"
#include "op_checks.h"

namespace {

constexpr int64_t kQueryTile = 1024;
constexpr int64_t kBankTile = 4096;
constexpr int64_t kScanWidth = 32;
// Squared norms beyond this would overflow the float32 expansion: such tiles go straight to
// the exact float64 path.
constexpr double kMaxSquaredNorm = 1e36;

using Approx = std::pair<float, int64_t>;   // (approximate score, bank row): lexicographic
using Exact = std::pair<double, int64_t>;   // (exact squared distance, bank row)

template <typename T>
inline double to_double(T v) {
  if constexpr (std::is_same_v<T, double>) {
    return v;
  } else {
    return static_cast<double>(static_cast<float>(v));
  }
}

// Exact squared distance in float64 (four independent partial sums: the order differs from a
// naive loop only at the 1e-16 relative level).
template <typename T>
double exact_sq_dist(const T* a, const T* b, int64_t dims) {
  double acc0 = 0, acc1 = 0, acc2 = 0, acc3 = 0;
  int64_t i = 0;
  for (; i + 4 <= dims; i += 4) {
    const double d0 = to_double(a[i]) - to_double(b[i]);
    const double d1 = to_double(a[i + 1]) - to_double(b[i + 1]);
    const double d2 = to_double(a[i + 2]) - to_double(b[i + 2]);
    const double d3 = to_double(a[i + 3]) - to_double(b[i + 3]);
    acc0 += d0 * d0;
    acc1 += d1 * d1;
    acc2 += d2 * d2;
    acc3 += d3 * d3;
  }
  for (; i < dims; ++i) {
    const double d = to_double(a[i]) - to_double(b[i]);
    acc0 += d * d;
  }
  return (acc0 + acc1) + (acc2 + acc3);
}

// One rounding of row - shift to float32 (float64 rows subtract in float64 first).
template <typename T>
inline float centred(T v, float s) {
  if constexpr (std::is_same_v<T, double>) {
    return static_cast<float>(v - static_cast<double>(s));
  } else {
    return static_cast<float>(v) - s;  // widening is exact, the subtraction rounds once
  }
}

// out = fl(row - shift) in float32; returns |out|^2 (float64 accumulation in 8 lanes so the
// loop vectorises).
template <typename T>
double centre_row(const T* row, const float* shift, int64_t dims, float* out) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t c = 0;
  for (; c + 8 <= dims; c += 8) {
    for (int l = 0; l < 8; ++l) {
      const float v = centred(row[c + l], shift[c + l]);
      out[c + l] = v;
      acc[l] += static_cast<double>(v) * v;
    }
  }
  for (; c < dims; ++c) {
    const float v = centred(row[c], shift[c]);
    out[c] = v;
    acc[0] += static_cast<double>(v) * v;
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// Keeps the k smallest (d2, index) pairs in a max-heap.
inline void keep_best(std::vector<Exact>& best, int64_t k, Exact cand) {
  if (static_cast<int64_t>(best.size()) < k) {
    best.push_back(cand);
    std::push_heap(best.begin(), best.end());
  } else if (cand < best.front()) {
    std::pop_heap(best.begin(), best.end());
    best.back() = cand;
    std::push_heap(best.begin(), best.end());
  }
}

inline void write_row(std::vector<Exact>& best, float* dist, int64_t* idx) {
  std::sort_heap(best.begin(), best.end());
  for (size_t j = 0; j < best.size(); ++j) {
    dist[j] = static_cast<float>(std::sqrt(best[j].first));
    idx[j] = best[j].second;
  }
}

template <typename T>
void brute_force_row(const T* q, const T* bank, int64_t n_bank, int64_t dims, int64_t k,
                     std::vector<Exact>& best, float* dist, int64_t* idx) {
  best.clear();
  for (int64_t j = 0; j < n_bank; ++j) keep_best(best, k, {exact_sq_dist(q, bank + j * dims, dims), j});
  write_row(best, dist, idx);
}

// Largest value, or +inf when any is not finite (e.g. a float64 mean that overflowed).
inline double max_or_inf(const double* v, int64_t n) {
  double mx = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(v[i])) return INFINITY;
    mx = std::max(mx, v[i]);
  }
  return mx;
}

// Unit roundoff of the GEMM's inputs: 0 for IEEE float32, bf16's where torch was told it may
// trade float32 matmul precision for speed (oneDNN bf16/tf32 paths).
double gemm_input_roundoff() {
  auto& ctx = at::globalContext();
  bool reduced = ctx.float32MatmulPrecision() != at::Float32MatmulPrecision::HIGHEST;
  const auto p = ctx.float32Precision(at::Float32Backend::MKLDNN, at::Float32Op::MATMUL);
  reduced = reduced || p == at::Float32Precision::BF16 || p == at::Float32Precision::TF32;
  return reduced ? g3::kBFloat16UnitRoundoff : 0.0;
}

template <typename T>
void nn_search_impl(const T* queries, const T* bank, int64_t n_query, int64_t n_bank, int64_t dims,
                    int64_t k, float* out_dist, int64_t* out_idx) {
  const int64_t m = g3::nn_candidate_count(k, n_bank);
  const double gemm_u = gemm_input_roundoff();
  const auto f32 = at::TensorOptions().dtype(at::kFloat);

  // Bank mean in float64, each column summed in row order (deterministic for any thread count).
  std::vector<double> mean(dims, 0.0);
  at::parallel_for(0, dims, 64, [&](int64_t c0, int64_t c1) {
    for (int64_t j = 0; j < n_bank; ++j)
      for (int64_t c = c0; c < c1; ++c) mean[c] += to_double(bank[j * dims + c]);
    for (int64_t c = c0; c < c1; ++c) mean[c] /= static_cast<double>(n_bank);
  });

  // Centre on the float32-rounded mean: any shift common to queries and bank keeps distances,
  // and the bound only needs each centred coordinate rounded once (float subtraction).
  std::vector<float> shift(dims);
  for (int64_t c = 0; c < dims; ++c) shift[c] = static_cast<float>(mean[c]);

  // Centred float32 bank, its float32 squared norms (the GEMM bias) and the largest norm.
  at::Tensor bank_c = at::empty({n_bank, dims}, f32);
  at::Tensor bank_n2 = at::empty({1, n_bank}, f32);
  float* bc = bank_c.data_ptr<float>();
  float* bn2 = bank_n2.data_ptr<float>();
  std::vector<double> row_norm2(n_bank);
  at::parallel_for(0, n_bank, 256, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      row_norm2[j] = centre_row(bank + j * dims, shift.data(), dims, bc + j * dims);
      bn2[j] = static_cast<float>(row_norm2[j]);
    }
  });
  const double bmax2 = max_or_inf(row_norm2.data(), n_bank);
  const double bmax = std::sqrt(bmax2);

  const int64_t tq_max = std::min(kQueryTile, n_query);
  at::Tensor query_c = at::empty({tq_max, dims}, f32);
  float* qc = query_c.data_ptr<float>();
  std::vector<double> qn2(tq_max);
  std::vector<Approx> heaps(tq_max * m);
  std::vector<int64_t> heap_size(tq_max);
  std::vector<char> certified(tq_max);
  at::Tensor score_buf = at::empty({tq_max * std::min(kBankTile, n_bank)}, f32);

  for (int64_t q0 = 0; q0 < n_query; q0 += kQueryTile) {
    const int64_t tq = std::min(kQueryTile, n_query - q0);
    const T* qt = queries + q0 * dims;
    at::parallel_for(0, tq, 16, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        qn2[r] = centre_row(qt + r * dims, shift.data(), dims, qc + r * dims);
        heap_size[r] = 0;
        certified[r] = 0;
      }
    });
    const double qmax2 = max_or_inf(qn2.data(), tq);
    const bool use_gemm = bmax2 < kMaxSquaredNorm && qmax2 < kMaxSquaredNorm;

    if (use_gemm) {
      const at::Tensor qtile = query_c.narrow(0, 0, tq);
      for (int64_t b0 = 0; b0 < n_bank; b0 += kBankTile) {
        const int64_t tb = std::min(kBankTile, n_bank - b0);
        // |bc|^2 - 2 qc.bc: the query's own |qc|^2 is constant per row and added later.
        at::Tensor scores = score_buf.view({-1}).narrow(0, 0, tq * tb).view({tq, tb});
        at::addmm_out(scores, bank_n2.narrow(1, b0, tb), qtile, bank_c.narrow(0, b0, tb).t(), 1.0, -2.0);
        const float* sc = scores.data_ptr<float>();
        at::parallel_for(0, tq, 8, [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r) {
            Approx* h = heaps.data() + r * m;
            int64_t size = heap_size[r];
            const float* srow = sc + r * tb;
            int64_t j = 0;
            for (; size < m && j < tb; ++j) {
              h[size++] = {srow[j], b0 + j};
              std::push_heap(h, h + size);
            }
            float worst = h[0].first;
            for (; j < tb; j += kScanWidth) {
              const int64_t w = std::min(kScanWidth, tb - j);
              bool any = false;  // vectorised test of a whole stripe first
              for (int64_t l = 0; l < w; ++l) any |= srow[j + l] < worst;
              if (!any) continue;
              for (int64_t l = 0; l < w; ++l) {
                if (srow[j + l] < worst) {  // later rows lose ties: strict
                  std::pop_heap(h, h + m);
                  h[m - 1] = {srow[j + l], b0 + j + l};
                  std::push_heap(h, h + m);
                  worst = h[0].first;
                }
              }
            }
            heap_size[r] = size;
          }
        });
      }

      // Exact re-ranking of the candidates, in approximate order, stopping as soon as the
      // bound proves the rest (and every non-candidate) farther than the exact k-th.
      at::parallel_for(0, tq, 4, [&](int64_t r0, int64_t r1) {
        std::vector<Exact> best;
        best.reserve(k);
        for (int64_t r = r0; r < r1; ++r) {
          Approx* h = heaps.data() + r * m;
          std::sort_heap(h, h + m);
          const T* q = qt + r * dims;
          const double qnorm = std::sqrt(qn2[r]);
          auto lower_bound = [&](float score) {
            return g3::expansion_distance_lower_bound(qn2[r] + score, qnorm, bmax, dims, gemm_u);
          };
          best.clear();
          bool ok = false;
          for (int64_t c = 0; c < m; ++c) {
            if (static_cast<int64_t>(best.size()) == k &&
                lower_bound(h[c].first) > std::sqrt(best.front().first)) {
              ok = true;
              break;
            }
            const int64_t j = h[c].second;
            keep_best(best, k, {exact_sq_dist(q, bank + j * dims, dims), j});
          }
          if (!ok) {
            ok = m == n_bank || (std::isfinite(h[m - 1].first) &&
                                 lower_bound(h[m - 1].first) > std::sqrt(best.front().first));
          }
          if (ok) {
            certified[r] = 1;
            write_row(best, out_dist + (q0 + r) * k, out_idx + (q0 + r) * k);
          }
        }
      });
    }

    std::vector<int64_t> pending;
    for (int64_t r = 0; r < tq; ++r)
      if (!certified[r]) pending.push_back(r);
    at::parallel_for(0, static_cast<int64_t>(pending.size()), 1, [&](int64_t p0, int64_t p1) {
      std::vector<Exact> best;
      best.reserve(k);
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t row = q0 + pending[p];
        brute_force_row(queries + row * dims, bank, n_bank, dims, k, best, out_dist + row * k,
                        out_idx + row * k);
      }
    });
  }
}

std::tuple<at::Tensor, at::Tensor> nn_search_cpu(const at::Tensor& queries, const at::Tensor& bank,
                                                 int64_t k) {
  g3::check_nn_search_args(queries, bank, k);
  const int64_t n_query = queries.size(0), n_bank = bank.size(0), dims = queries.size(1);
  at::Tensor dist = at::empty({n_query, k}, queries.options().dtype(at::kFloat));
  at::Tensor idx = at::empty({n_query, k}, queries.options().dtype(at::kLong));
  if (n_query == 0) return {dist, idx};
  const at::Tensor q = queries.contiguous();
  const at::Tensor b = bank.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "nn_search_cpu", [&] {
    nn_search_impl<scalar_t>(q.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), n_query, n_bank,
                             dims, k, dist.data_ptr<float>(), idx.data_ptr<int64_t>());
  });
  return {dist, idx};
}

}  // namespace

TORCH_LIBRARY_IMPL(group3ad_ext, CPU, m) { m.impl("nn_search", &nn_search_cpu); }
