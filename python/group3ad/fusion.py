"""Fusing the feature branch and the coordinate branch into one anomaly score.

Three fusions, all "normalise each branch, then average the branches":

* ``fuse_testset`` (Reg3D-AD, used for the paper's tables): within one category, each
  branch's object scores are min-max normalised over the test set, and its point scores over
  all test points of the category concatenated; the normalised branches are averaged. It needs
  the whole test set, and a sample's score depends on the other samples.
* ``fuse_train`` (for ``model.score(cloud)`` on one cloud): each branch is normalised with
  statistics of normal data gathered at fit time (``BranchStats``): ``(s - loc) / scale`` where
  ``loc`` is the median and ``scale`` the 99th percentile minus the median of the branch's
  leave-one-out distances of training entries to the memory bank (each entry's distance to the
  bank with itself removed). A normalised score of 1 is as far from the bank as the most
  unusual 1 % of normal training data; the map is fixed per model, so a cloud's score never
  depends on other clouds.
* ``fuse_testset_rank`` (``fusion="rank"``): as ``fuse_testset`` but each branch's scores are
  replaced by their ranks over the test set (object scores) or over all test points of the
  category (point scores), scaled to [0, 1], ties sharing their average rank. Min-max lets one
  extreme value squeeze every other score of a branch towards 0 (on the small preset one
  misregistered cut duck, coordinate score 5.6 mm, silences a coordinate branch that alone ranks
  the duck test set perfectly); ranks give every branch the same spread whatever its outliers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class BranchStats:
    """Affine normalisation of one branch: ``(score - loc) / scale``."""

    loc: float
    scale: float

    @classmethod
    def from_distances(cls, distances: np.ndarray) -> "BranchStats":
        d = np.asarray(distances, dtype=np.float64)
        if d.size == 0:
            return cls(0.0, 1.0)
        loc = float(np.median(d))
        spread = float(np.quantile(d, 0.99)) - loc
        if not spread > 0:  # all training distances equal: fall back to their magnitude
            spread = abs(loc) if loc != 0 else 1.0
        return cls(loc, spread)

    def apply(self, scores):
        return (np.asarray(scores, dtype=np.float64) - self.loc) / self.scale

    def to_dict(self) -> dict:
        return {"loc": self.loc, "scale": self.scale}


def fuse_train(branches: dict, stats: dict) -> tuple[np.ndarray, float]:
    """branches: name -> (point_scores (N,), object_score); stats: name -> BranchStats.
    Returns the fused (point_scores (N,), object_score)."""
    names = sorted(branches)
    points = np.mean([stats[n].apply(branches[n][0]) for n in names], axis=0)
    obj = float(np.mean([stats[n].apply(branches[n][1]) for n in names]))
    return points, obj


def _minmax(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    span = hi - lo
    if not span > 0:  # a constant branch carries no ranking: it contributes zeros
        return np.zeros_like(x, dtype=np.float64)
    return (np.asarray(x, dtype=np.float64) - lo) / span


def fuse_testset(samples: list[dict]) -> tuple[list[np.ndarray], np.ndarray]:
    """Reg3D-AD's fusion over one category's test set.

    samples: one dict per test cloud, branch name -> (point_scores (N_i,), object_score).
    Returns (fused point scores per sample, fused object scores (T,))."""
    if not samples:
        return [], np.zeros(0)
    names = sorted(samples[0])
    fused_points = [np.zeros(len(s[names[0]][0]), dtype=np.float64) for s in samples]
    fused_obj = np.zeros(len(samples), dtype=np.float64)
    for n in names:
        obj = np.array([s[n][1] for s in samples], dtype=np.float64)
        fused_obj += _minmax(obj, obj.min(), obj.max())
        lo = min(float(np.min(s[n][0])) for s in samples)
        hi = max(float(np.max(s[n][0])) for s in samples)
        for i, s in enumerate(samples):
            fused_points[i] += _minmax(s[n][0], lo, hi)
    k = float(len(names))
    return [p / k for p in fused_points], fused_obj / k


def _rank_positions(x: np.ndarray) -> np.ndarray:
    """0-based sorted positions of x (n,), equal values sharing their mean position: multiples
    of 1/2, so sums of them are exact and never break a tie by rounding."""
    x = np.asarray(x, dtype=np.float64).ravel()
    n = x.size
    order = np.argsort(x, kind="stable")
    xs = x[order]
    first = np.r_[True, xs[1:] != xs[:-1]] if n else np.zeros(0, bool)  # each run's first place
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], n]
    positions = np.empty(n)
    positions[order] = ((starts + ends - 1) / 2.0)[np.cumsum(first) - 1]
    return positions


def fuse_testset_rank(samples: list[dict]) -> tuple[list[np.ndarray], np.ndarray]:
    """Rank fusion over one category's test set (module docstring); same arguments and
    returns as ``fuse_testset``. Positions are summed over the branches before the one
    division, so clouds (or points) whose ranks tie in sum stay tied."""
    if not samples:
        return [], np.zeros(0)
    names = sorted(samples[0])
    sizes = [len(s[names[0]][0]) for s in samples]
    obj = sum(_rank_positions([s[n][1] for s in samples]) for n in names)
    pts = sum(_rank_positions(np.concatenate([np.asarray(s[n][0], dtype=np.float64) for s in samples]))
              for n in names)
    k = float(len(names))
    obj = obj / (k * max(len(samples) - 1, 1))
    pts = pts / (k * max(int(sum(sizes)) - 1, 1))
    return np.split(pts, np.cumsum(sizes)[:-1]), obj


def fuse(kind: str, samples: list[dict], stats: dict) -> tuple[list[np.ndarray], np.ndarray]:
    """One category's test set fused by ``kind`` ("testset", "rank" or "train"; config.FUSIONS).
    samples: one dict per test cloud, branch -> (point_scores (N_i,), object_score); stats: branch
    -> BranchStats (used by "train" only). Returns (point scores per cloud, object scores (T,))."""
    if kind == "testset":
        return fuse_testset(samples)
    if kind == "rank":
        return fuse_testset_rank(samples)
    if kind == "train":
        fused = [fuse_train(s, stats) for s in samples]
        return [f[0] for f in fused], np.array([f[1] for f in fused], dtype=np.float64)
    raise ValueError(f"unknown fusion {kind!r}")
