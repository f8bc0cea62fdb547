// Exact k-nearest-neighbour index over one 3D cloud, for the CPU kernels (knn, normals, fpfh,
// fpfh_variation). Built once, queried from many threads. Results are sorted ascending by
// squared distance; ties go to the lower point index, exactly as the CUDA path and the naive
// reference order them. Distances use g3::sq_dist3 (csrc/common/g3_macros.h).
#pragma once

#include <cstdint>
#include <memory>

namespace g3 {
namespace cpu {

template <typename T>
class KnnIndex {
 public:
  // points: (n,3) row-major, must outlive the index. n >= 1. report_tree_positions: every query
  // reports a point as its position in tree_order() instead of its index (ties are still
  // broken by index), so a caller that copies per-point data into tree order reads its
  // neighbours' rows from nearby memory.
  explicit KnnIndex(const T* points, int64_t n, bool report_tree_positions = false);
  ~KnnIndex();
  KnnIndex(const KnnIndex&) = delete;
  KnnIndex& operator=(const KnnIndex&) = delete;

  int64_t size() const;

  // The points' indices in tree order (a Morton curve): a cache-friendly visiting order for
  // per-point loops over the indexed cloud. size() entries, valid while the index lives.
  const int64_t* tree_order() const;

  // k nearest points (1 <= k <= n) of each of m queries (m,3): d2 (m,k), idx (m,k).
  // Parallel over queries (at::parallel_for); call from outside a parallel region.
  void query(const T* queries, int64_t m, int64_t k, T* d2, int64_t* idx) const;

  // One query, callable from inside a parallel region. Hybrid search as Open3D's
  // KDTreeSearchParamHybrid: the k nearest points whose squared distance is <= radius2
  // (radius2 < 0: no radius limit). Writes count <= k results, sorted; returns count.
  int64_t query_one(const T* q, int64_t k, T radius2, T* d2, int64_t* idx) const;

  // The same result set as query_one, in no particular order (deterministic for a given index
  // and query): skips the final sort and keeps no heap until k results are found, the common
  // case of a radius-limited search. For consumers that do not depend on the order (histograms)
  // or only in the last bits of a sum.
  int64_t query_ball(const T* q, int64_t k, T radius2, T* d2, int64_t* idx) const;

  // The k nearest points (1 <= k <= size(), no radius), unordered like query_ball, for loops
  // that visit nearby queries one after another: prev_q (or nullptr) is the previous query and
  // prev_kth2 the value this returned for it, which bounds the search. Returns q's k-th squared
  // distance.
  T query_knn_near(const T* q, int64_t k, const T* prev_q, T prev_kth2, T* d2, int64_t* idx) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cpu
}  // namespace g3
