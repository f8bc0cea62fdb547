// KnnIndex: a bounding-volume tree over the points sorted along a 63-bit Morton curve.
//
// Build: Morton codes on the points' box, robust to stray points (common/robust_box.h; cubic
// cells, up to 21 bits per axis; points outside clamped into the boundary cells), a radix sort,
// then a binary radix tree: each node splits its (sorted) range at the highest Morton bit in
// which its first and last code differ (an octree split along one axis), ranges of equal codes
// split at the middle; leaves hold at most kLeafSize points. Every node keeps the tight box of
// its points. The coordinates are copied in tree order as three arrays (x, y, z) so a leaf's
// distances are one vectorisable loop. Build is O(n), no comparison sort.
//
// Search: depth-first, nearer child first, with a bounded max-heap ordered by (d2, index) kept
// in the caller's output row. A subtree is skipped only when its box distance is strictly
// greater than the current k-th distance: a point at exactly that distance with a lower index
// must still be found. The box distance uses the same rounding steps as sq_dist3 on values
// that are never farther than the real coordinates, so it never exceeds the computed distance
// of a point inside (rounding is monotone): pruning is exact, not just approximately right.
//
// query() visits the queries in Morton order (cache locality: consecutive queries touch the same
// leaves), in chunks handed out dynamically to the threads.
#include "cpu/knn_index.h"
#include "common/morton.h"
#include "common/robust_box.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "common/g3_macros.h"

namespace g3 {
namespace cpu {
namespace {

constexpr int64_t kLeafSize = 16;
constexpr int kMaxMortonBitsPerAxis = 21;
constexpr int kMaxDepth = 192;  // <= 63 bit splits + log2(n) equal-code splits, with margin
constexpr int64_t kQueryChunk = 256;

using g3::spread_bits3;

// LSD radix sort of packed keys (code << index_bits | index) by bits [lo_bit, hi_bit), 11-bit
// digits. The input is in index order, so sorting only the code bits (stably) sorts the whole
// key: equal codes keep increasing indices. The digit histograms do not depend on the order,
// so one read pass (threaded) counts every digit; the scatters are serial, which avoids a
// thread barrier per pass (costly on a busy machine) for a few ms of work.
void radix_sort_packed(std::vector<uint64_t>& keys, int lo_bit, int hi_bit) {
  const int64_t n = static_cast<int64_t>(keys.size());
  if (n <= 1 || hi_bit <= lo_bit) return;
  constexpr int kBits = 11;
  constexpr int kBuckets = 1 << kBits;
  const int passes = (hi_bit - lo_bit + kBits - 1) / kBits;
  const int nt = at::get_num_threads();
  std::vector<int64_t> hist(size_t(nt) * passes * kBuckets, 0);
  at::parallel_for(0, n, 65536, [&](int64_t b, int64_t e) {
    int64_t* h = hist.data() + size_t(at::get_thread_num()) * passes * kBuckets;
    for (int64_t i = b; i < e; ++i)
      for (int p = 0; p < passes; ++p) ++h[p * kBuckets + ((keys[i] >> (lo_bit + p * kBits)) & (kBuckets - 1))];
  });
  for (int t = 1; t < nt; ++t)
    for (int j = 0; j < passes * kBuckets; ++j) hist[j] += hist[size_t(t) * passes * kBuckets + j];
  std::vector<uint64_t> tmp(n);
  for (int p = 0; p < passes; ++p) {
    const int shift = lo_bit + p * kBits;
    int64_t* h = hist.data() + p * kBuckets;
    if (h[(keys[0] >> shift) & (kBuckets - 1)] == n) continue;  // one digit value: no-op
    int64_t sum = 0;
    for (int j = 0; j < kBuckets; ++j) {
      const int64_t c = h[j];
      h[j] = sum;
      sum += c;
    }
    const uint64_t* src = keys.data();
    uint64_t* dst = tmp.data();
    for (int64_t i = 0; i < n; ++i) dst[h[(src[i] >> shift) & (kBuckets - 1)]++] = src[i];
    keys.swap(tmp);
  }
}

inline int bits_for(int64_t count) {  // bits to hold 0..count-1
  int b = 0;
  while (b < 63 && (int64_t(1) << b) < count) ++b;
  return b;
}

// Max-heap over (d, id) pairs stored in two parallel arrays: the root is the worst kept result.
// Equal distances are ordered by key(id), the point's original index: ids may be tree positions
// (KnnIndex's tree-position mode), ties still go to the lower original index.
struct IdentityKey {
  int64_t operator()(int64_t i) const { return i; }
};
struct PermKey {
  const int64_t* perm;
  int64_t operator()(int64_t i) const { return perm[i]; }
};

template <typename T, typename Key>
inline bool heap_greater(T da, int64_t ia, T db, int64_t ib, Key key) {
  return da > db || (da == db && key(ia) > key(ib));
}

template <typename T, typename Key>
inline void heap_sift_down(T* d, int64_t* id, int64_t size, int64_t pos, T dv, int64_t iv, Key key) {
  for (;;) {
    int64_t c = 2 * pos + 1;
    if (c >= size) break;
    if (c + 1 < size && heap_greater(d[c + 1], id[c + 1], d[c], id[c], key)) ++c;
    if (!heap_greater(d[c], id[c], dv, iv, key)) break;
    d[pos] = d[c];
    id[pos] = id[c];
    pos = c;
  }
  d[pos] = dv;
  id[pos] = iv;
}

template <typename T, typename Key>
inline void heap_push(T* d, int64_t* id, int64_t& size, T dv, int64_t iv, Key key) {
  int64_t pos = size++;
  while (pos > 0) {
    const int64_t parent = (pos - 1) / 2;
    if (!heap_greater(dv, iv, d[parent], id[parent], key)) break;
    d[pos] = d[parent];
    id[pos] = id[parent];
    pos = parent;
  }
  d[pos] = dv;
  id[pos] = iv;
}

// Floyd's heap construction: the root becomes the worst entry.
template <typename T, typename Key>
inline void heapify(T* d, int64_t* id, int64_t size, Key key) {
  for (int64_t pos = size / 2 - 1; pos >= 0; --pos) heap_sift_down(d, id, size, pos, d[pos], id[pos], key);
}

// In-place heap sort: ascending by (d, key(id)).
template <typename T, typename Key>
inline void heap_sort(T* d, int64_t* id, int64_t size, Key key) {
  for (int64_t s = size - 1; s > 0; --s) {
    const T dv = d[s];
    const int64_t iv = id[s];
    d[s] = d[0];
    id[s] = id[0];
    heap_sift_down(d, id, s, 0, dv, iv, key);
  }
}

}  // namespace

template <typename T>
struct KnnIndex<T>::Impl {
  struct Node {
    T lo[3];
    T hi[3];
    int64_t begin;
    int64_t end;
    int64_t right;  // 0 for a leaf (the root is node 0, so no child is); left child is this+1
  };

  int64_t n = 0;
  const T* src = nullptr;      // the caller's points (n,3)
  std::vector<T> xs, ys, zs;   // coordinates in tree order
  std::vector<int64_t> perm;   // tree position -> original index
  std::vector<uint64_t> codes; // Morton code per tree position (only during the build)
  std::vector<Node> nodes;
  T origin[3] = {0, 0, 0};
  double scale = 0;            // Morton cells per unit length
  int bits = kMaxMortonBitsPerAxis;  // Morton bits per axis
  bool positions = false;      // report tree positions instead of original indices

  uint64_t morton(T x, T y, T z) const {
    const double maxc = double((1u << bits) - 1);
    auto cell = [&](T v, int a) {
      const double c = (double(v) - double(origin[a])) * scale;
      // NaN (0 x inf from an overflowing difference) lands in cell 0: a cast would be UB.
      return c > 0 ? uint64_t(c < maxc ? c : maxc) : uint64_t(0);
    };
    return spread_bits3(cell(x, 0)) | (spread_bits3(cell(y, 1)) << 1) | (spread_bits3(cell(z, 2)) << 2);
  }

  // (code << index_bits | index) of `count` points, sorted: Morton order, ties by index.
  // Codes are truncated to the bits left beside the index (>= 11 per axis up to 2^31 points).
  std::vector<uint64_t> sorted_morton(const T* p, int64_t count, int& index_bits) const {
    index_bits = bits_for(count);
    const int code_bits = std::min(3 * bits, (64 - index_bits) / 3 * 3);
    const int drop = 3 * bits - code_bits;
    std::vector<uint64_t> keys(count);
    at::parallel_for(0, count, 4096, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        keys[i] = ((morton(p[3 * i], p[3 * i + 1], p[3 * i + 2]) >> drop) << index_bits) | uint64_t(i);
    });
    radix_sort_packed(keys, index_bits, index_bits + code_bits);
    return keys;
  }

  void build(const T* p, int64_t count) {
    n = count;
    src = p;
    T lo[3], hi[3];
    for (int a = 0; a < 3; ++a) lo[a] = hi[a] = p[a];
    for (int64_t i = 1; i < n; ++i)
      for (int a = 0; a < 3; ++a) {
        const T v = p[3 * i + a];
        lo[a] = v < lo[a] ? v : lo[a];
        hi[a] = v > hi[a] ? v : hi[a];
      }
    // Morton cells on a box robust to a few stray points (common/robust_box.h): on the min/max
    // box, 20 flying pixels at 50-1000x the part's extent put the whole part in a handful of
    // codes, whose equal-code splits are by count, not space, and every query then scanned
    // thousands of points. Codes clamp outside points into the boundary cells; node boxes are
    // the tight boxes of the points below, so the search stays exact whatever the codes.
    double tlo[3], thi[3], rlo[3], rhi[3];
    for (int a = 0; a < 3; ++a) {
      tlo[a] = double(lo[a]);
      thi[a] = double(hi[a]);
    }
    robust_box_of_cloud(p, n, tlo, thi, rlo, rhi);
    double extent = 0;
    for (int a = 0; a < 3; ++a) {
      origin[a] = T(rlo[a]);
      extent = std::max(extent, rhi[a] - rlo[a]);
    }
    // Enough bits to separate the leaves of a surface scan (cells grow as 4^bits on a 2D
    // manifold) and no more: every 11 bits cost a radix pass. Equal codes are still split.
    bits = std::min(kMaxMortonBitsPerAxis, std::max(8, (bits_for(n) + 1) / 2 + 3));
    scale = extent > 0 ? double((1u << bits) - 1) / extent : 0.0;
    // A subnormal extent makes the scale infinite: one Morton cell then (the tree still
    // splits equal codes by count, so the index stays exact, only unordered).
    if (!std::isfinite(scale)) scale = 0.0;

    int index_bits = 0;
    std::vector<uint64_t> keys = sorted_morton(p, n, index_bits);
    const uint64_t index_mask = (uint64_t(1) << index_bits) - 1;
    codes.resize(n);
    perm.resize(n);
    xs.resize(n);
    ys.resize(n);
    zs.resize(n);
    at::parallel_for(0, n, 4096, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const int64_t j = int64_t(keys[i] & index_mask);
        codes[i] = keys[i] >> index_bits;
        perm[i] = j;
        xs[i] = p[3 * j];
        ys[i] = p[3 * j + 1];
        zs[i] = p[3 * j + 2];
      }
    });
    keys = std::vector<uint64_t>();
    nodes.clear();
    nodes.reserve(size_t(4 * (n / kLeafSize + 1)));
    build_node(0, n, 0);
    codes = std::vector<uint64_t>();
  }

  int64_t split_point(int64_t a, int64_t b) const {
    const uint64_t c0 = codes[a], c1 = codes[b - 1];
    if (c0 == c1) return a + (b - a) / 2;
    const int bit = 63 - __builtin_clzll(c0 ^ c1);
    const uint64_t mask = uint64_t(1) << bit;
    // Codes in [a,b) share every bit above `bit` and are sorted: the ones with it set are a suffix.
    int64_t lo = a, hi = b - 1;  // codes[lo] lacks the bit, codes[hi] has it
    while (hi - lo > 1) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (codes[mid] & mask) hi = mid; else lo = mid;
    }
    return hi;
  }

  int64_t build_node(int64_t a, int64_t b, int depth) {
    const int64_t id = static_cast<int64_t>(nodes.size());
    nodes.push_back(Node{});
    nodes[id].begin = a;
    nodes[id].end = b;
    nodes[id].right = 0;
    if (b - a <= kLeafSize || depth + 1 >= kMaxDepth) {
      Node& nd = nodes[id];
      nd.lo[0] = nd.hi[0] = xs[a];
      nd.lo[1] = nd.hi[1] = ys[a];
      nd.lo[2] = nd.hi[2] = zs[a];
      for (int64_t i = a + 1; i < b; ++i) {
        nd.lo[0] = std::min(nd.lo[0], xs[i]);
        nd.hi[0] = std::max(nd.hi[0], xs[i]);
        nd.lo[1] = std::min(nd.lo[1], ys[i]);
        nd.hi[1] = std::max(nd.hi[1], ys[i]);
        nd.lo[2] = std::min(nd.lo[2], zs[i]);
        nd.hi[2] = std::max(nd.hi[2], zs[i]);
      }
      return id;
    }
    const int64_t s = split_point(a, b);
    build_node(a, s, depth + 1);
    const int64_t r = build_node(s, b, depth + 1);
    Node& nd = nodes[id];
    const Node& L = nodes[id + 1];
    const Node& R = nodes[r];
    nd.right = r;
    for (int c = 0; c < 3; ++c) {
      nd.lo[c] = std::min(L.lo[c], R.lo[c]);
      nd.hi[c] = std::max(L.hi[c], R.hi[c]);
    }
    return id;
  }

  // Lower bound of sq_dist3(q, p) over the points p in the node's box, rounded the same way.
  static inline T box_dist(const Node& nd, T qx, T qy, T qz) {
    const T gx = qx < nd.lo[0] ? nd.lo[0] - qx : (qx > nd.hi[0] ? qx - nd.hi[0] : T(0));
    const T gy = qy < nd.lo[1] ? nd.lo[1] - qy : (qy > nd.hi[1] ? qy - nd.hi[1] : T(0));
    const T gz = qz < nd.lo[2] ? nd.lo[2] - qz : (qz > nd.hi[2] ? qz - nd.hi[2] : T(0));
    return gx * gx + gy * gy + gz * gz;
  }

  // The up-to-k nearest points with d2 <= radius2 (+inf: no limit) into (d, id): sorted
  // ascending when kSorted, else in visiting order while fewer than k are found, then a heap.
  // Reported ids are original indices, or tree positions when `positions` is set; either way
  // equal distances are ordered by original index.
  template <bool kSorted>
  int64_t search(T qx, T qy, T qz, int64_t k, T radius2, T* d, int64_t* id) const {
    const int64_t* P = perm.data();
    if (positions)
      return search_impl<kSorted>(qx, qy, qz, k, radius2, d, id, PermKey{P}, [](int64_t t) { return t; });
    return search_impl<kSorted>(qx, qy, qz, k, radius2, d, id, IdentityKey{}, [P](int64_t t) { return P[t]; });
  }

  template <bool kSorted, typename Key, typename Report>
  int64_t search_impl(T qx, T qy, T qz, int64_t k, T radius2, T* d, int64_t* id, Key key,
                      Report report) const {
    int64_t cnt = 0;
    struct Entry {
      int64_t node;
      T dist;
    };
    Entry stack[kMaxDepth + 2];
    int sp = 0;
    const Node* nd0 = nodes.data();
    const T* X = xs.data();
    const T* Y = ys.data();
    const T* Z = zs.data();
    T buf[kLeafSize];
    const T root_d = box_dist(nd0[0], qx, qy, qz);
    if (!(root_d <= radius2)) return 0;
    stack[sp++] = {0, root_d};
    while (sp > 0) {
      const Entry e = stack[--sp];
      if (e.dist > (cnt == k ? d[0] : radius2)) continue;
      int64_t node = e.node;
      for (;;) {
        const Node& nd = nd0[node];
        if (nd.right == 0) {
          const int64_t a = nd.begin;
          const int64_t len = nd.end - a;
          for (int64_t j = 0; j < len; ++j) buf[j] = sq_dist3(qx, qy, qz, X[a + j], Y[a + j], Z[a + j]);
          if (!kSorted && cnt + len <= k) {
            // Room for the whole leaf: append without a branch per point (whether a point
            // near the radius is in is unpredictable). Same entries, same order as below.
            for (int64_t j = 0; j < len; ++j) {
              d[cnt] = buf[j];
              id[cnt] = report(a + j);
              cnt += buf[j] <= radius2;
            }
            if (cnt == k) heapify(d, id, cnt, key);
            break;
          }
          for (int64_t j = 0; j < len; ++j) {
            const T dv = buf[j];
            if (cnt < k) {
              if (dv <= radius2) {
                if (kSorted) {
                  heap_push(d, id, cnt, dv, report(a + j), key);
                } else {
                  d[cnt] = dv;
                  id[cnt] = report(a + j);
                  if (++cnt == k) heapify(d, id, cnt, key);
                }
              }
            } else if (dv <= d[0]) {
              const int64_t iv = report(a + j);
              if (dv < d[0] || key(iv) < key(id[0])) heap_sift_down(d, id, cnt, 0, dv, iv, key);
            }
          }
          break;
        }
        int64_t near = node + 1, far = nd.right;
        T dn = box_dist(nd0[near], qx, qy, qz);
        T df = box_dist(nd0[far], qx, qy, qz);
        if (df < dn) {
          std::swap(near, far);
          std::swap(dn, df);
        }
        const T bound = cnt == k ? d[0] : radius2;
        if (dn > bound) break;
        if (df <= bound) stack[sp++] = {far, df};
        node = near;
      }
    }
    if (kSorted) heap_sort(d, id, cnt, key);
    return cnt;
  }

  // The k nearest points (no radius) of q, given an earlier query prev_q (nullptr: none) whose
  // k-th squared distance was prev_kth: its k neighbours lie within sqrt(prev_kth) + |q - prev_q|
  // of q, so only that ball is searched (with a margin far above the rounding of the distances);
  // if rounding ever left fewer than k inside, the search runs again without a limit. Returns
  // the k-th squared distance of q (the largest kept).
  template <bool kSorted>
  T search_near(const T* q, int64_t k, const T* prev_q, T prev_kth, T* d, int64_t* id) const {
    int64_t cnt = 0;
    if (prev_q != nullptr) {
      const double step = std::sqrt(double(sq_dist3(q[0], q[1], q[2], prev_q[0], prev_q[1], prev_q[2])));
      const double r = (std::sqrt(double(prev_kth)) + step) * (1.0 + 1e-6);
      cnt = search<kSorted>(q[0], q[1], q[2], k, T(r * r * (1.0 + 1e-5)), d, id);
    }
    if (cnt < k) search<kSorted>(q[0], q[1], q[2], k, std::numeric_limits<T>::infinity(), d, id);
    return kSorted ? d[k - 1] : d[0];  // unsorted and full: d is a max-heap
  }
};

template <typename T>
KnnIndex<T>::KnnIndex(const T* points, int64_t n, bool report_tree_positions) : impl_(new Impl) {
  if (n < 1) throw std::invalid_argument("KnnIndex: need at least one point");
  impl_->build(points, n);
  impl_->positions = report_tree_positions;
}

template <typename T>
KnnIndex<T>::~KnnIndex() = default;

template <typename T>
int64_t KnnIndex<T>::size() const {
  return impl_->n;
}

template <typename T>
T KnnIndex<T>::query_knn_near(const T* q, int64_t k, const T* prev_q, T prev_kth2, T* d2,
                              int64_t* idx) const {
  return impl_->template search_near<false>(q, k, prev_q, prev_kth2, d2, idx);
}

template <typename T>
const int64_t* KnnIndex<T>::tree_order() const {
  return impl_->perm.data();
}

template <typename T>
void KnnIndex<T>::query(const T* queries, int64_t m, int64_t k, T* d2, int64_t* idx) const {
  if (m <= 0) return;
  if (k < 1 || k > impl_->n) throw std::invalid_argument("KnnIndex::query: need 1 <= k <= n");
  const Impl& ix = *impl_;
  const T inf = std::numeric_limits<T>::infinity();
  // Visit order: Morton order of the queries. Querying the indexed points themselves (normals,
  // all-points kNN) reuses the tree order directly.
  const bool self = m == ix.n && queries == ix.src;
  std::vector<int64_t> order;
  if (!self) {
    int index_bits = 0;
    std::vector<uint64_t> keys = ix.sorted_morton(queries, m, index_bits);
    const uint64_t index_mask = (uint64_t(1) << index_bits) - 1;
    order.resize(m);
    for (int64_t i = 0; i < m; ++i) order[i] = int64_t(keys[i] & index_mask);
  }
  const int64_t* ord = self ? ix.perm.data() : order.data();
  const int64_t chunks = (m + kQueryChunk - 1) / kQueryChunk;
  std::atomic<int64_t> next{0};
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), chunks));
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    for (;;) {
      const int64_t c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= chunks) break;
      const int64_t e = std::min(m, (c + 1) * kQueryChunk);
      const T* prev_q = nullptr;
      T prev_kth = inf;
      for (int64_t j = c * kQueryChunk; j < e; ++j) {
        const int64_t qi = ord[j];
        const T* q = queries + 3 * qi;
        T* dr = d2 + qi * k;
        int64_t* ir = idx + qi * k;
        prev_kth = ix.template search_near<true>(q, k, prev_q, prev_kth, dr, ir);
        prev_q = q;
      }
    }
  });
}

// Hybrid search shared by query_one (sorted) and query_ball (unordered).
template <typename T, bool kSorted, typename Impl>
int64_t hybrid_query(const Impl& ix, const T* q, int64_t k, T radius2, T* d2, int64_t* idx) {
  if (k < 1) return 0;
  const int64_t kk = std::min(k, ix.n);
  const T limit = radius2 < T(0) ? std::numeric_limits<T>::infinity() : radius2;
  return ix.template search<kSorted>(q[0], q[1], q[2], kk, limit, d2, idx);
}

template <typename T>
int64_t KnnIndex<T>::query_one(const T* q, int64_t k, T radius2, T* d2, int64_t* idx) const {
  return hybrid_query<T, true>(*impl_, q, k, radius2, d2, idx);
}

template <typename T>
int64_t KnnIndex<T>::query_ball(const T* q, int64_t k, T radius2, T* d2, int64_t* idx) const {
  return hybrid_query<T, false>(*impl_, q, k, radius2, d2, idx);
}

template class KnnIndex<float>;
template class KnnIndex<double>;

}  // namespace cpu
}  // namespace g3
