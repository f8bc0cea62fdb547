"""Exact farthest point sampling (FPS), on CPU and CUDA, for points and for feature vectors.

The first pick is ``start_idx`` (or the given seed indices, in order); every further pick is
the point whose squared distance to the nearest already-chosen point is largest, ties to the
lowest index. Chosen points are never picked again, even when unchosen duplicates remain, so
``n_samples == N`` returns a permutation. CPU and CUDA return the same indices bit for bit.
"""

from __future__ import annotations

import torch

from . import _checks
from ._loader import _C  # noqa: F401  (registers torch.ops.group3ad_ext.fps)


def fps(points, n_samples, start_idx=0, lengths=None) -> torch.Tensor:
    """Farthest point sampling of a 3D cloud or a batch of clouds.

    Args:
        points: (N,3) or (B,N,3) float32/float64, finite; CPU or CUDA. Non-contiguous is fine.
        n_samples: number of indices to return, 1 <= n_samples <= N (<= min(lengths)).
        start_idx: int (the first pick, the same for every cloud) or a LongTensor of seed
            indices, (S,) or (B,S) with 1 <= S <= n_samples, distinct per cloud: the first S
            picks, in order; the rest continue greedily from the set they form.
        lengths: optional (B,) int tensor on the points' device: cloud b uses points[b, :lengths[b]]
            (ragged batches padded at the end). Default: all N.

    Returns:
        (n_samples,) or (B,n_samples) int64 indices into the cloud, on the points' device.

    Raises:
        ValueError: naming the argument, for any malformed input (before any kernel runs).
    """
    _checks.check_points(points, "points", dims=(2, 3), last=3)
    return _fps(points, n_samples, start_idx, lengths)


def fps_features(features, n_samples, start_idx=0, lengths=None) -> torch.Tensor:
    """Farthest point sampling in a feature space of any dimension D >= 1 (greedy k-center
    coreset). Same rules and arguments as :func:`fps`, with ``features`` (N,D) or (B,N,D)
    float32/float64; the squared distance is summed over the dimensions in order.

    Returns:
        (n_samples,) or (B,n_samples) int64 indices.
    """
    _checks.check_points(features, "features", dims=(2, 3), last=None)
    if features.shape[-1] == 0:
        raise ValueError(f"features must have at least one dimension; got shape {tuple(features.shape)}")
    return _fps(features, n_samples, start_idx, lengths)


def _fps(points: torch.Tensor, n_samples, start_idx, lengths) -> torch.Tensor:
    batched = points.dim() == 3
    pts = points if batched else points.unsqueeze(0)
    B, N = pts.shape[0], pts.shape[1]
    if B == 0:
        n_samples = _checks.check_int(n_samples, "n_samples", low=1, high=N)
        return pts.new_empty((0, n_samples), dtype=torch.int64)
    if lengths is None:
        lens = torch.full((B,), N, dtype=torch.int64, device=pts.device)
        min_len = N
    else:
        if not batched:
            raise ValueError("lengths is only accepted with batched (B,N,D) points")
        lens = _checks.check_lengths(lengths, "lengths", B, N, pts.device)
        min_len = int(lens.min()) if B else N
    n_samples = _checks.check_int(n_samples, "n_samples", low=1)
    if n_samples > min_len:
        raise ValueError(
            f"n_samples must be <= the number of points ({min_len}"
            + (" in the shortest cloud" if lengths is not None else "") + f"); got {n_samples}"
        )
    seeds = _seed_tensor(start_idx, B, n_samples, lens, pts.device, batched)
    return _call(pts.contiguous(), lens, seeds, n_samples, batched)


def _call(pts, lens, seeds, n_samples, batched):
    out = torch.ops.group3ad_ext.fps(pts, lens, seeds, n_samples)
    return out if batched else out[0]


def _seed_tensor(start_idx, B, n_samples, lens, device, batched) -> torch.Tensor:
    """start_idx (int, (S,) or (B,S)) -> validated (B,S) int64 on `device`."""
    if isinstance(start_idx, torch.Tensor) and start_idx.dim() > 0:
        if start_idx.dtype.is_floating_point or start_idx.dtype.is_complex or start_idx.dtype == torch.bool:
            raise ValueError(f"start_idx must be an integer tensor; got {start_idx.dtype}")
        if start_idx.device != device:
            raise ValueError(f"start_idx is on {start_idx.device} but the points are on {device}")
        if start_idx.dim() == 1:
            seeds = start_idx.unsqueeze(0).expand(B, -1)
        elif start_idx.dim() == 2 and batched and start_idx.shape[0] == B:
            seeds = start_idx
        else:
            want = "(S,) or (B,S) with B = %d" % B if batched else "(S,)"
            raise ValueError(f"start_idx must have shape {want}; got {tuple(start_idx.shape)}")
        S = seeds.shape[1]
        if S < 1 or S > n_samples:
            raise ValueError(f"start_idx must hold between 1 and n_samples ({n_samples}) seeds; got {S}")
        seeds = seeds.to(torch.int64)
        if device.type != "meta":
            if bool((seeds < 0).any()) or bool((seeds >= lens.unsqueeze(1)).any()):
                raise ValueError("start_idx out of range: every seed must lie in [0, length of its cloud)")
            if S > 1:
                srt = seeds.sort(dim=1).values
                if bool((srt[:, 1:] == srt[:, :-1]).any()):
                    raise ValueError("start_idx has repeated seeds; seeds must be distinct per cloud")
        return seeds.contiguous()
    s = _checks.check_int(start_idx, "start_idx", low=0)
    if device.type != "meta" and s >= int(lens.min()):
        raise ValueError(f"start_idx must be < the number of points ({int(lens.min())}); got {s}")
    return torch.full((B, 1), s, dtype=torch.int64, device=device)


@torch.library.register_fake("group3ad_ext::fps")
def _fps_fake(points, lengths, start_idx, n_samples):
    return points.new_empty((points.shape[0], n_samples), dtype=torch.int64)
