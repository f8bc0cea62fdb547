// Exact farthest point sampling on the CPU.
//
// D == 3: a KD-tree whose nodes keep their bounding box and the best (distance, lowest index)
// of the points below them (the bucket idea of QuickFPS / fpsample's "kdline"). A new sample
// only visits nodes whose box is closer to it than their current maximum: a point farther from
// the sample than its own distance cannot change, so pruned nodes stay exact. The next sample
// is the root's maximum. Leaf updates run on all cores while they are large (the first
// samples touch every point), serially once they shrink.
//
// Any D: a brute-force update over a dimension-major copy of the features, vectorised across
// points (each point still sums its squared differences in dimension order, as the CUDA kernel
// and the reference do), parallel over point blocks.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/irange.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "common/fps_math.h"
#include "op_checks.h"

namespace {

using g3::fps::chosen_mark;

// Leaf size of the KD-tree: small enough that a late sample rewrites few points, large enough
// that the tree walk stays cheap next to the leaf loops.
constexpr int64_t kLeafSize = 256;
// Below this many points to rewrite, one sample's leaf updates run on one thread.
constexpr int64_t kParallelPoints = 1 << 15;

template <typename T>
struct Node {
  T lo[3], hi[3];
  int64_t begin, end;  // range in the tree-ordered arrays
  int64_t left, right;  // children, -1 for a leaf
  T best;               // largest distance below this node ...
  int64_t best_idx;     // ... and the lowest original index holding it
};

// Build-time record; I is uint32_t whenever the cloud allows it (16-byte items for float: the
// build is a handful of passes over them).
template <typename T, typename I>
struct Item {
  T p[3];
  I idx;
};

template <typename T>
struct Box {
  T lo[3], hi[3];
  Box() {
    for (int k = 0; k < 3; ++k) {
      lo[k] = std::numeric_limits<T>::infinity();
      hi[k] = -std::numeric_limits<T>::infinity();
    }
  }
  void add(const T* p) {
    for (int k = 0; k < 3; ++k) {
      lo[k] = p[k] < lo[k] ? p[k] : lo[k];
      hi[k] = p[k] > hi[k] ? p[k] : hi[k];
    }
  }
};

template <typename T, typename I>
class FpsTree {
 public:
  FpsTree(const T* pts, int64_t n, bool parallel) : n_(n) {
    std::vector<Item<T, I>> items(n);
    Box<T> box;
    for (const auto i : c10::irange(n)) {
      for (int k = 0; k < 3; ++k) items[i].p[k] = pts[3 * i + k];
      items[i].idx = static_cast<I>(i);
      box.add(items[i].p);
    }
    build_root(items.data(), box, parallel);
    x_.resize(n);
    y_.resize(n);
    z_.resize(n);
    orig_.resize(n);
    pos_.resize(n);
    dist_.assign(n, std::numeric_limits<T>::infinity());
    for (const auto i : c10::irange(n)) {
      x_[i] = items[i].p[0];
      y_[i] = items[i].p[1];
      z_[i] = items[i].p[2];
      orig_[i] = items[i].idx;
      pos_[items[i].idx] = i;
    }
  }

  // Adds original index `s` to the chosen set and updates every affected node.
  void add(int64_t s, const T* pts, bool parallel) {
    const int64_t ps = pos_[s];
    dist_[ps] = chosen_mark<T>();
    const T sx = pts[3 * s], sy = pts[3 * s + 1], sz = pts[3 * s + 2];
    leaves_.clear();
    inner_.clear();
    int64_t work = 0;
    collect(0, ps, sx, sy, sz, work);
    first_ = false;
    if (parallel && work >= kParallelPoints && leaves_.size() > 1) {
      at::parallel_for(0, static_cast<int64_t>(leaves_.size()), 1, [&](int64_t b, int64_t e) {
        for (int64_t k = b; k < e; ++k) update_leaf(nodes_[leaves_[k]], sx, sy, sz);
      });
    } else {
      for (const int64_t l : leaves_) update_leaf(nodes_[l], sx, sy, sz);
    }
    // Post-order: children are final before their parent takes the better of the two.
    for (const int64_t i : inner_) {
      Node<T>& nd = nodes_[i];
      const Node<T>& a = nodes_[nd.left];
      const Node<T>& b = nodes_[nd.right];
      const bool take_a = g3::better_max(a.best, a.best_idx, b.best, b.best_idx);
      nd.best = take_a ? a.best : b.best;
      nd.best_idx = take_a ? a.best_idx : b.best_idx;
    }
  }

  int64_t farthest() const { return nodes_[0].best_idx; }

 private:
  // The root's two subtrees are built on two threads into their own node arrays, then
  // appended (child indices shifted).
  void build_root(Item<T, I>* items, const Box<T>& box, bool parallel) {
    Box<T> lbox, rbox;
    const int64_t m = n_ > kLeafSize ? split(items, 0, n_, box, &lbox, &rbox) : -1;
    nodes_.push_back(make_node(box, 0, n_));
    if (m < 0) return;
    std::vector<Node<T>> sub[2];
    const auto build_side = [&](int64_t side) {
      sub[side].reserve(2 * ((side ? n_ - m : m) / kLeafSize + 1));
      if (side == 0) {
        build(items, 0, m, lbox, sub[0]);
      } else {
        build(items, m, n_, rbox, sub[1]);
      }
    };
    if (parallel && n_ >= kParallelPoints) {
      at::parallel_for(0, 2, 1, [&](int64_t b, int64_t e) {
        for (int64_t side = b; side < e; ++side) build_side(side);
      });
    } else {
      build_side(0);
      build_side(1);
    }
    const int64_t off[2] = {1, 1 + static_cast<int64_t>(sub[0].size())};
    nodes_[0].left = off[0];
    nodes_[0].right = off[1];
    for (int side = 0; side < 2; ++side) {
      for (Node<T> nd : sub[side]) {
        if (nd.left >= 0) {
          nd.left += off[side];
          nd.right += off[side];
        }
        nodes_.push_back(nd);
      }
    }
  }

  static Node<T> make_node(const Box<T>& box, int64_t begin, int64_t end) {
    Node<T> nd;
    for (int k = 0; k < 3; ++k) {
      nd.lo[k] = box.lo[k];
      nd.hi[k] = box.hi[k];
    }
    nd.begin = begin;
    nd.end = end;
    nd.left = nd.right = -1;
    nd.best = std::numeric_limits<T>::infinity();
    nd.best_idx = -1;
    return nd;
  }

  // Builds the subtree of items [begin, end) (bounding box `box`) into `out`; returns its index.
  int64_t build(Item<T, I>* items, int64_t begin, int64_t end, const Box<T>& box,
                std::vector<Node<T>>& out) {
    const int64_t id = static_cast<int64_t>(out.size());
    out.push_back(make_node(box, begin, end));
    if (end - begin <= kLeafSize) return id;
    Box<T> lbox, rbox;
    const int64_t m = split(items, begin, end, box, &lbox, &rbox);
    const int64_t l = build(items, begin, m, lbox, out);
    const int64_t r = build(items, m, end, rbox, out);
    out[id].left = l;
    out[id].right = r;
    return id;
  }

  // Splits [begin, end) across the widest axis of `box` at its middle, in one pass that also
  // forms both sides' boxes. Falls back to the median when the middle leaves a side empty
  // (clustered or identical coordinates). Returns the first index of the right side.
  static int64_t split(Item<T, I>* it, int64_t begin, int64_t end, const Box<T>& box, Box<T>* lbox,
                       Box<T>* rbox) {
    int axis = 0;
    for (int k = 1; k < 3; ++k) {
      if (box.hi[k] - box.lo[k] > box.hi[axis] - box.lo[axis]) axis = k;
    }
    const T mid = box.lo[axis] + (box.hi[axis] - box.lo[axis]) / T(2);
    int64_t i = begin, j = end - 1;
    while (true) {
      while (i <= j && it[i].p[axis] < mid) lbox->add(it[i++].p);
      while (i <= j && !(it[j].p[axis] < mid)) rbox->add(it[j--].p);
      if (i >= j) break;
      std::swap(it[i], it[j]);
      lbox->add(it[i++].p);
      rbox->add(it[j--].p);
    }
    if (i != begin && i != end) return i;
    const int64_t m = begin + (end - begin) / 2;
    std::nth_element(it + begin, it + m, it + end, [axis](const Item<T, I>& a, const Item<T, I>& b) {
      return a.p[axis] < b.p[axis];
    });
    *lbox = Box<T>();
    *rbox = Box<T>();
    for (int64_t k = begin; k < m; ++k) lbox->add(it[k].p);
    for (int64_t k = m; k < end; ++k) rbox->add(it[k].p);
    return m;
  }

  // Visits the nodes the new sample can change: those whose box is closer to it than their
  // current maximum, and the path to the sample itself (its mark must reach the root even
  // when every remaining distance is 0).
  void collect(int64_t id, int64_t ps, T sx, T sy, T sz, int64_t& work) {
    const Node<T>& nd = nodes_[id];
    const bool holds_sample = nd.begin <= ps && ps < nd.end;
    // The first sample visits everything: a box at infinite distance (overflow) must still
    // get its real best index.
    if (!first_ && !holds_sample && !(g3::fps::box_sq_dist3(nd.lo, nd.hi, sx, sy, sz) < nd.best)) {
      return;
    }
    if (nd.left < 0) {
      leaves_.push_back(id);
      work += nd.end - nd.begin;
      return;
    }
    collect(nd.left, ps, sx, sy, sz, work);
    collect(nd.right, ps, sx, sy, sz, work);
    inner_.push_back(id);
  }

  void update_leaf(Node<T>& nd, T sx, T sy, T sz) {
    T* __restrict d = dist_.data();
    const T* __restrict x = x_.data();
    const T* __restrict y = y_.data();
    const T* __restrict z = z_.data();
    T best = -std::numeric_limits<T>::infinity();
    for (int64_t i = nd.begin; i < nd.end; ++i) {
      const T nd2 = g3::sq_dist3(x[i], y[i], z[i], sx, sy, sz);
      const T v = nd2 < d[i] ? nd2 : d[i];
      d[i] = v;
      best = v > best ? v : best;
    }
    int64_t best_idx = std::numeric_limits<int64_t>::max();
    for (int64_t i = nd.begin; i < nd.end; ++i) {
      if (d[i] == best && orig_[i] < best_idx) best_idx = orig_[i];
    }
    nd.best = best;
    nd.best_idx = best_idx;
  }

  int64_t n_;
  bool first_ = true;
  std::vector<Node<T>> nodes_;
  std::vector<T> x_, y_, z_, dist_;
  std::vector<int64_t> orig_, pos_;
  std::vector<int64_t> leaves_, inner_;
};

template <typename T, typename I>
void fps_tree_cloud_idx(const T* pts, int64_t n, const int64_t* seeds, int64_t n_seeds,
                        int64_t n_samples, int64_t* out, bool parallel) {
  FpsTree<T, I> tree(pts, n, parallel);
  for (int64_t m = 0; m < n_samples; ++m) {
    const int64_t s = m < n_seeds ? seeds[m] : tree.farthest();
    out[m] = s;
    if (m + 1 < n_samples) tree.add(s, pts, parallel);
  }
}

template <typename T>
void fps_tree_cloud(const T* pts, int64_t n, const int64_t* seeds, int64_t n_seeds,
                    int64_t n_samples, int64_t* out, bool parallel) {
  if (n <= static_cast<int64_t>(UINT32_MAX)) {
    fps_tree_cloud_idx<T, uint32_t>(pts, n, seeds, n_seeds, n_samples, out, parallel);
  } else {
    fps_tree_cloud_idx<T, int64_t>(pts, n, seeds, n_seeds, n_samples, out, parallel);
  }
}

// Any dimension: dimension-major copy, then one pass over all points per sample.
template <typename T>
void fps_dense_cloud(const T* feats, int64_t n, int64_t dim, const int64_t* seeds,
                     int64_t n_seeds, int64_t n_samples, int64_t* out, bool parallel) {
  constexpr int64_t kBlock = 512;  // points per block: the accumulators stay in L1
  std::vector<T> cols(n * dim);
  for (const auto i : c10::irange(n)) {
    for (const auto k : c10::irange(dim)) cols[k * n + i] = feats[i * dim + k];
  }
  std::vector<T> dist(n, std::numeric_limits<T>::infinity());
  const int64_t n_blocks = (n + kBlock - 1) / kBlock;
  std::vector<T> block_best(n_blocks);
  std::vector<int64_t> block_idx(n_blocks);

  auto update_blocks = [&](const T* s, int64_t b0, int64_t b1) {
    T acc[kBlock];
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t i0 = b * kBlock;
      const int64_t len = std::min(kBlock, n - i0);
      {
        const T* __restrict c = cols.data() + i0;
        const T s0 = s[0];
        for (int64_t i = 0; i < len; ++i) {
          const T diff = c[i] - s0;
          acc[i] = diff * diff;
        }
      }
      for (int64_t k = 1; k < dim; ++k) {
        const T* __restrict c = cols.data() + k * n + i0;
        const T sk = s[k];
        for (int64_t i = 0; i < len; ++i) {
          const T diff = c[i] - sk;
          acc[i] = acc[i] + diff * diff;
        }
      }
      T* __restrict d = dist.data() + i0;
      T best = -std::numeric_limits<T>::infinity();
      for (int64_t i = 0; i < len; ++i) {
        const T v = acc[i] < d[i] ? acc[i] : d[i];
        d[i] = v;
        best = v > best ? v : best;
      }
      int64_t bi = 0;
      while (d[bi] != best) ++bi;  // first hit = lowest index
      block_best[b] = best;
      block_idx[b] = i0 + bi;
    }
  };

  for (int64_t m = 0; m < n_samples; ++m) {
    int64_t s;
    if (m < n_seeds) {
      s = seeds[m];
    } else {
      s = block_idx[0];
      T best = block_best[0];
      for (int64_t b = 1; b < n_blocks; ++b) {
        if (block_best[b] > best) {  // strict: ties keep the earlier (lower-index) block
          best = block_best[b];
          s = block_idx[b];
        }
      }
    }
    out[m] = s;
    if (m + 1 == n_samples) break;
    dist[s] = chosen_mark<T>();
    const T* srow = feats + s * dim;
    if (parallel && n * dim >= (1 << 16)) {
      at::parallel_for(0, n_blocks, 1, [&](int64_t b0, int64_t b1) { update_blocks(srow, b0, b1); });
    } else {
      update_blocks(srow, 0, n_blocks);
    }
  }
}

at::Tensor fps_cpu(const at::Tensor& points, const at::Tensor& lengths, const at::Tensor& start_idx,
                   int64_t n_samples) {
  g3::check_fps_args(points, lengths, start_idx, n_samples);
  const int64_t B = points.size(0), N = points.size(1), D = points.size(2);
  const at::Tensor pts = points.contiguous();
  const at::Tensor len = lengths.contiguous();
  const at::Tensor seeds = start_idx.contiguous();
  const int64_t S = seeds.size(1);
  const int64_t* len_p = len.data_ptr<int64_t>();
  const int64_t* seed_p = seeds.data_ptr<int64_t>();
  int64_t max_len = 0;
  for (const auto b : c10::irange(B)) {
    g3::check_fps_cloud(b, len_p[b], seed_p + b * S, S, N, n_samples);
    max_len = std::max(max_len, len_p[b]);
  }
  at::Tensor out = at::empty({B, n_samples}, points.options().dtype(at::kLong));
  int64_t* out_p = out.data_ptr<int64_t>();

  AT_DISPATCH_FLOATING_TYPES(pts.scalar_type(), "fps_cpu", [&] {
    const scalar_t* base = pts.data_ptr<scalar_t>();
    auto one_cloud = [&](int64_t b, bool parallel) {
      const scalar_t* p = base + b * N * D;
      if (D == 3) {
        fps_tree_cloud<scalar_t>(p, len_p[b], seed_p + b * S, S, n_samples, out_p + b * n_samples,
                                 parallel);
      } else {
        fps_dense_cloud<scalar_t>(p, len_p[b], D, seed_p + b * S, S, n_samples,
                                  out_p + b * n_samples, parallel);
      }
    };
    // Many clouds of moderate size: one cloud per thread. Otherwise each cloud uses all cores.
    if (B > 1 && max_len * D <= (int64_t{1} << 18)) {
      at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) one_cloud(b, false);
      });
    } else {
      for (const auto b : c10::irange(B)) one_cloud(b, true);
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(group3ad_ext, CPU, m) {
  m.impl("fps", &fps_cpu);
}
