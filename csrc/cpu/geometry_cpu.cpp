// CPU kernels of normals, fpfh and fpfh_variation: loops over csrc/common/geometry_math.h with
// neighbourhoods from g3::cpu::KnnIndex. Inputs are converted to double (as Open3D computes), so
// the hybrid neighbourhoods are decided on the same squared distances Open3D compares.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <tuple>
#include <vector>

#include "common/geometry_math.h"
#include "cpu/knn_index.h"
#include "op_checks.h"

namespace {

using g3::cpu::KnnIndex;
namespace gm = g3::geom;

// Open3D's hybrid search keeps neighbours with d2 < radius^2 (strict); KnnIndex keeps
// d2 <= radius2, so pass the largest double below radius^2. radius <= 0: no radius limit.
double hybrid_radius2(double radius) {
  if (!(radius > 0.0)) return -1.0;
  const double r2 = radius * radius;
  return r2 > 0.0 ? std::nextafter(r2, 0.0) : 0.0;
}

at::Tensor as_double_points(const at::Tensor& t, const char* op, const char* name) {
  g3::check_points3(t, op, name);
  return t.to(at::kDouble).contiguous();
}

template <typename T>
std::unique_ptr<T[]> uninitialised(size_t size) {
  return std::unique_ptr<T[]>(new T[size]);
}

// Rows of a row-major (n, dim) array copied into the index's tree order. The kernels below run
// in tree order over such copies (KnnIndex in tree-position mode): a point's neighbours then
// sit in nearby memory whatever the order of the input cloud (at 1M points in random order
// this takes FPFH from 6.8 s to 4.7 s on 2 cores). Results are written back by original index.
template <typename T>
std::unique_ptr<T[]> in_tree_order(const T* rows, int64_t dim, const int64_t* order, int64_t n) {
  auto out = uninitialised<T>(static_cast<size_t>(n * dim));
  at::parallel_for(0, n, 4096, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t)
      for (int64_t c = 0; c < dim; ++c) out[t * dim + c] = rows[order[t] * dim + c];
  });
  return out;
}

// Per-thread neighbour buffers.
struct Scratch {
  std::vector<double> d2;
  std::vector<int64_t> idx;
  explicit Scratch(int64_t k) : d2(k), idx(k) {}
};

// A cloud in the index's tree order: the kernels run over these copies (see in_tree_order).
struct TreeCloud {
  KnnIndex<double> index;
  const int64_t* order;
  std::unique_ptr<double[]> ps;  // (n,3) points by tree position
  int64_t n;
  explicit TreeCloud(const at::Tensor& p)
      : index(p.data_ptr<double>(), p.size(0), /*report_tree_positions=*/true),
        order(index.tree_order()),
        ps(in_tree_order(p.data_ptr<double>(), 3, order, p.size(0))),
        n(p.size(0)) {}
};

at::Tensor normals_cpu(const at::Tensor& points, double radius, int64_t max_nn) {
  TORCH_CHECK(max_nn >= 1, "max_nn must be >= 1");
  const at::Tensor p = as_double_points(points, "normals", "points");
  const int64_t n = p.size(0);
  at::Tensor out = at::empty({n, 3}, p.options());
  if (n == 0) return out.to(points.scalar_type());
  double* po = out.data_ptr<double>();
  const TreeCloud cloud(p);
  const int64_t k = std::min<int64_t>(max_nn, n);
  const double r2 = hybrid_radius2(radius);
  const int64_t* order = cloud.order;
  const double* ps = cloud.ps.get();
  at::parallel_for(0, n, 256, [&](int64_t begin, int64_t end) {
    Scratch s(k);
    for (int64_t t = begin; t < end; ++t) {
      const double* q = ps + 3 * t;
      const int64_t cnt = cloud.index.query_one(q, k, r2, s.d2.data(), s.idx.data());
      gm::Moments m;
      for (int64_t j = 0; j < cnt; ++j) {
        const double* x = ps + 3 * s.idx[j];
        gm::moments_add(m, x[0] - q[0], x[1] - q[1], x[2] - q[2]);
      }
      gm::normal_from_moments(m, po + 3 * order[t]);
    }
  });
  return out.to(points.scalar_type());
}

// Per-thread buffers of spfh_row: the neighbourhood's offsets and normals as columns, so the
// pair loop runs across 8 pairs at a time (AVX-512) with no gathers inside it, and the bins.
struct PairScratch {
  std::vector<double> col;  // 6 columns of k: dx dy dz nx ny nz
  std::vector<int32_t> bins;  // 3 columns of k
  std::vector<int32_t> ok;  // int32, not bytes: a byte store keeps the loop scalar
  int64_t k;
  explicit PairScratch(int64_t k) : col(6 * k), bins(3 * k), ok(k), k(k) {}
};

// SPFH of point i from its neighbourhood (any order, d2 the squared distances). Open3D skips
// position 0 of its sorted list: the point itself or a copy of it, a zero-length pair either
// way, so skipping one zero-distance entry is the same histogram. The bins come from
// pair_bins_branchless, vectorised over the pairs; the few pairs it hands back (frame near-ties,
// theta near a bin edge, degenerate pairs) take the exact pair_feature + pair_bins path.
G3_CPU_MULTIVERSION void spfh_row(const double* pp, const double* pn, int64_t i, const double* d2, const int64_t* nb,
              int64_t cnt, PairScratch& s, int32_t* counts, double* incr) {
  for (int b = 0; b < gm::kFpfhBins; ++b) counts[b] = 0;
  *incr = gm::spfh_increment(cnt);
  const int64_t k = s.k;
  double* dx = s.col.data();
  double *dy = dx + k, *dz = dy + k, *nx = dz + k, *ny = nx + k, *nz = ny + k;
  int32_t* b0 = s.bins.data();
  int32_t *b1 = b0 + k, *b2 = b1 + k;
  int32_t* ok = s.ok.data();
  const double* p = pp + 3 * i;
  const double* n = pn + 3 * i;
  for (int64_t j = 0; j < cnt; ++j) {
    const double* x = pp + 3 * nb[j];
    const double* m = pn + 3 * nb[j];
    dx[j] = x[0] - p[0];
    dy[j] = x[1] - p[1];
    dz[j] = x[2] - p[2];
    nx[j] = m[0];
    ny[j] = m[1];
    nz[j] = m[2];
  }
  const double n0 = n[0], n1 = n[1], n2 = n[2];
  for (int64_t j = 0; j < cnt; ++j) {
    int c0, c1, c2;
    ok[j] = gm::pair_bins_branchless(dx[j], dy[j], dz[j], n0, n1, n2, nx[j], ny[j], nz[j], &c0, &c1, &c2);
    b0[j] = c0;
    b1[j] = c1;
    b2[j] = c2;
  }
  bool skipped = false;
  for (int64_t j = 0; j < cnt; ++j) {
    if (!skipped && d2[j] == 0.0) {
      skipped = true;
      continue;
    }
    if (!ok[j]) {
      double f[4];
      int bins[3];
      gm::pair_feature(p, n, pp + 3 * nb[j], pn + 3 * nb[j], f);
      gm::pair_bins(f, bins);
      b0[j] = bins[0];
      b1[j] = bins[1];
      b2[j] = bins[2];
    }
    counts[b0[j]] += 1;
    counts[b1[j]] += 1;
    counts[b2[j]] += 1;
  }
}

// FPFH of point i: neighbour SPFHs weighted by 1/d2 (zero-distance neighbours skipped), each
// sub-histogram normalised to 100, plus the point's own SPFH. Fewer than 2 points: all zero.
// The neighbourhood may come in any order (the point itself is one of the skipped zeros).
template <typename Idx>
G3_CPU_MULTIVERSION void fpfh_row(const double* pp, int64_t i, const Idx* nb, int64_t cnt, const int32_t* counts,
              const double* incr, double* out) {
  double acc[gm::kFpfhBins];
  for (int b = 0; b < gm::kFpfhBins; ++b) acc[b] = 0.0;
  if (cnt <= 1) {
    for (int b = 0; b < gm::kFpfhBins; ++b) out[b] = 0.0;
    return;
  }
  const double* q = pp + 3 * i;
  for (int64_t j = 0; j < cnt; ++j) {
    const int64_t t = nb[j];
    const double* x = pp + 3 * t;
    const double d2 = g3::sq_dist3(q[0], q[1], q[2], x[0], x[1], x[2]);
    if (d2 == 0.0) continue;
    gm::fpfh_accumulate(counts + gm::kFpfhBins * t, incr[t] / d2, acc);
  }
  gm::fpfh_finish(acc, counts + gm::kFpfhBins * i, incr[i], out);
}

// The SPFH pass keeps its neighbour lists (int32) for the FPFH pass when they fit in
// kListBudget entries; larger clouds search again, so memory stays bounded for any size.
constexpr int64_t kListBudget = int64_t(1) << 27;  // 512 MiB of int32

// FPFH rows (double) written by original index into po: of every point (qi null, nq = n) or
// of the points qi[0..nq).
void fpfh_tree(const TreeCloud& cloud, const double* normals, const int64_t* qi, int64_t nq,
               double radius, int64_t max_nn, double* po) {
  const KnnIndex<double>& index = cloud.index;
  const int64_t n = cloud.n;
  const int64_t* order = cloud.order;
  const auto pn_buf = in_tree_order(normals, 3, order, n);
  const double* pp = cloud.ps.get();  // everything below is indexed by tree position
  const double* pn = pn_buf.get();
  const int64_t k = std::min<int64_t>(max_nn, n);
  const double r2 = hybrid_radius2(radius);
  const bool subset = qi != nullptr;

  // Tree positions of the queries (a subset), and which points need an SPFH: all, or the
  // queries and their neighbours.
  std::vector<int64_t> qpos, need;
  if (subset) {  // byte flags set from many threads: atomic_ref keeps that race-free
    std::vector<int64_t> position(n);
    for (int64_t t = 0; t < n; ++t) position[order[t]] = t;
    qpos.resize(nq);
    for (int64_t j = 0; j < nq; ++j) qpos[j] = position[qi[j]];
    std::vector<uint8_t> flag(n, 0);
    at::parallel_for(0, nq, 256, [&](int64_t begin, int64_t end) {
      Scratch s(k);
      for (int64_t j = begin; j < end; ++j) {
        const int64_t cnt = index.query_ball(pp + 3 * qpos[j], k, r2, s.d2.data(), s.idx.data());
        std::atomic_ref<uint8_t>(flag[qpos[j]]).store(1, std::memory_order_relaxed);
        for (int64_t t = 0; t < cnt; ++t)
          std::atomic_ref<uint8_t>(flag[s.idx[t]]).store(1, std::memory_order_relaxed);
      }
    });
    for (int64_t t = 0; t < n; ++t)
      if (flag[t]) need.push_back(t);
  }
  const int64_t nneed = subset ? static_cast<int64_t>(need.size()) : n;

  // Uninitialised: every row that is read is written first (spfh_row), and the pages are first
  // touched by the threads that fill them rather than by one serial memset.
  const auto counts = uninitialised<int32_t>(static_cast<size_t>(n) * gm::kFpfhBins);
  const auto incr = uninitialised<double>(n);
  // Without a subset, the SPFH pass sees exactly the FPFH queries: keep their lists if they fit.
  const bool keep = !subset && n <= std::numeric_limits<int32_t>::max() && n * k <= kListBudget;
  const auto lists = uninitialised<int32_t>(keep ? n * k : 0);  // (n,k) tree positions
  const auto list_cnt = uninitialised<int64_t>(keep ? n : 0);

  at::parallel_for(0, nneed, 256, [&](int64_t begin, int64_t end) {
    Scratch s(k);
    PairScratch pairs(k);
    for (int64_t j = begin; j < end; ++j) {
      const int64_t i = subset ? need[j] : j;
      const int64_t cnt = index.query_ball(pp + 3 * i, k, r2, s.d2.data(), s.idx.data());
      if (keep) {
        list_cnt[i] = cnt;
        std::copy(s.idx.begin(), s.idx.begin() + cnt, lists.get() + i * k);
      }
      spfh_row(pp, pn, i, s.d2.data(), s.idx.data(), cnt, pairs, counts.get() + gm::kFpfhBins * i, incr.get() + i);
    }
  });

  at::parallel_for(0, nq, 256, [&](int64_t begin, int64_t end) {
    Scratch s(k);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t i = subset ? qpos[t] : t;             // tree position
      double* row = po + gm::kFpfhBins * (subset ? t : order[t]);  // output row
      if (keep) {
        fpfh_row(pp, i, lists.get() + i * k, list_cnt[i], counts.get(), incr.get(), row);
      } else {
        const int64_t cnt = index.query_ball(pp + 3 * i, k, r2, s.d2.data(), s.idx.data());
        fpfh_row(pp, i, s.idx.data(), cnt, counts.get(), incr.get(), row);
      }
    }
  });
}

at::Tensor fpfh_cpu(const at::Tensor& points, const at::Tensor& normals,
                    const std::optional<at::Tensor>& indices, double radius, int64_t max_nn) {
  TORCH_CHECK(max_nn >= 1, "max_nn must be >= 1");
  const at::Tensor p = as_double_points(points, "fpfh", "points");
  const at::Tensor nr = as_double_points(normals, "fpfh", "normals");
  const int64_t n = p.size(0);
  TORCH_CHECK(nr.size(0) == n, "normals must have as many rows as points");
  at::Tensor qidx;
  if (indices.has_value()) {
    qidx = indices->to(at::kLong).contiguous();
    TORCH_CHECK(qidx.dim() == 1, "indices must be 1-D");
  }
  const int64_t nq = indices.has_value() ? qidx.size(0) : n;
  if (n == 0 || nq == 0) return at::zeros({nq, gm::kFpfhBins}, points.options());
  const int64_t* qi = indices.has_value() ? qidx.data_ptr<int64_t>() : nullptr;
  for (int64_t j = 0; j < nq && qi; ++j) {
    TORCH_CHECK(qi[j] >= 0 && qi[j] < n, "indices must lie in [0, ", n, "), got ", qi[j]);
  }
  at::Tensor out = at::empty({nq, gm::kFpfhBins}, p.options());  // fpfh_row writes every entry
  const TreeCloud cloud(p);
  fpfh_tree(cloud, nr.data_ptr<double>(), qi, nq, radius, max_nn, out.data_ptr<double>());
  return out.to(points.scalar_type());
}

// Candidates for point t's nearest other points: squared distance, original index (the tie
// key) and tree position.
struct Candidate {
  double d2;
  int64_t key;
  int64_t pos;
};

// Variation of tree position t: the sum of ||f(t) - f(c)||_2 over the kk nearest candidates by
// (d2, original index), added in that order, as the CUDA kernel adds its sorted kNN rows (so
// both backends give the same bits). c[0..cnt) must not hold t itself, kk <= cnt; it is sorted.
template <typename F>
G3_CPU_MULTIVERSION double nearest_variation(const F* features, int64_t dim, int64_t t, Candidate* c,
                                             int64_t cnt, int64_t kk) {
  std::sort(c, c + cnt, [](const Candidate& a, const Candidate& b) {
    return a.d2 < b.d2 || (a.d2 == b.d2 && a.key < b.key);
  });
  double total = 0.0;
  for (int64_t j = 0; j < kk; ++j) total += gm::feature_distance(features + dim * t, features + dim * c[j].pos, dim);
  return total;
}

// Variation of every point (tree order) from a kNN search of kk + 1 points: the point itself
// and kk others, or (more than kk copies of the point with lower indices) kk + 1 others.
template <typename F>
void variation_by_search(const TreeCloud& cloud, const F* fs, int64_t dim, int64_t kk, double* po) {
  const int64_t* order = cloud.order;
  at::parallel_for(0, cloud.n, 256, [&](int64_t begin, int64_t end) {
    Scratch s(kk + 1);
    std::vector<Candidate> c(kk + 1);
    const double* prev_q = nullptr;
    double prev_kth = 0.0;
    for (int64_t t = begin; t < end; ++t) {
      const double* q = cloud.ps.get() + 3 * t;
      prev_kth = cloud.index.query_knn_near(q, kk + 1, prev_q, prev_kth, s.d2.data(), s.idx.data());
      prev_q = q;
      int64_t cnt = 0;
      for (int64_t j = 0; j <= kk; ++j)
        if (s.idx[j] != t) c[cnt++] = {s.d2[j], order[s.idx[j]], s.idx[j]};
      po[order[t]] = nearest_variation(fs, dim, t, c.data(), cnt, kk);
    }
  });
}

// fpfh_variation of the cloud's points from features (n,F) (original row order, contiguous):
// (n,) in the features' dtype.
at::Tensor variation_on_tree(const TreeCloud& cloud, const at::Tensor& f, int64_t k) {
  at::Tensor out = at::zeros({cloud.n}, f.options().dtype(at::kDouble));
  const int64_t kk = std::min<int64_t>(k, cloud.n - 1);  // other points available
  if (kk >= 1) {
    const int64_t dim = f.size(1);
    AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "fpfh_variation_cpu", [&] {
      const auto fs = in_tree_order(f.data_ptr<scalar_t>(), dim, cloud.order, cloud.n);
      variation_by_search(cloud, fs.get(), dim, kk, out.data_ptr<double>());
    });
  }
  return out.to(f.scalar_type());
}

at::Tensor fpfh_variation_cpu(const at::Tensor& points, const at::Tensor& features, int64_t k) {
  TORCH_CHECK(k >= 1, "k must be >= 1");
  const at::Tensor p = as_double_points(points, "fpfh_variation", "points");
  const int64_t n = p.size(0);
  TORCH_CHECK(features.dim() == 2 && features.size(0) == n,
              "features must have shape (N,F) with N = points rows");
  g3::check_finite(features, "fpfh_variation", "features");
  if (n <= 1) return at::zeros({n}, features.options());
  return variation_on_tree(TreeCloud(p), features.contiguous(), k);
}

// fpfh(points, normals, None, radius, max_nn) then fpfh_variation(points, that, k) over one
// index and one tree-order copy of the cloud. The variation is computed from the features as
// returned (in points' dtype), so both outputs equal the two separate ops bit for bit. (Taking
// the variation's neighbours from the FPFH lists instead of searching was measured: scanning
// ~80 unsorted entries per point costs about what the bounded kNN search does.)
std::tuple<at::Tensor, at::Tensor> fpfh_with_variation_cpu(const at::Tensor& points, const at::Tensor& normals,
                                                           double radius, int64_t max_nn, int64_t k) {
  TORCH_CHECK(max_nn >= 1, "max_nn must be >= 1");
  TORCH_CHECK(k >= 1, "k must be >= 1");
  const at::Tensor p = as_double_points(points, "fpfh_with_variation", "points");
  const at::Tensor nr = as_double_points(normals, "fpfh_with_variation", "normals");
  const int64_t n = p.size(0);
  TORCH_CHECK(nr.size(0) == n, "normals must have as many rows as points");
  if (n == 0) return {at::zeros({0, gm::kFpfhBins}, points.options()), at::zeros({0}, points.options())};
  at::Tensor features = at::empty({n, gm::kFpfhBins}, p.options());
  const TreeCloud cloud(p);
  fpfh_tree(cloud, nr.data_ptr<double>(), nullptr, n, radius, max_nn, features.data_ptr<double>());
  features = features.to(points.scalar_type());
  return {features, variation_on_tree(cloud, features, k)};
}

}  // namespace

TORCH_LIBRARY_IMPL(group3ad_ext, CPU, m) {
  m.impl("normals", &normals_cpu);
  m.impl("fpfh", &fpfh_cpu);
  m.impl("fpfh_variation", &fpfh_variation_cpu);
  m.impl("fpfh_with_variation", &fpfh_with_variation_cpu);
}
