"""Group features of one cloud at inference (memory bank and scoring)."""

from __future__ import annotations

import torch

from .encoder import PointMAEEncoder
from .grouping import make_groups

PRECISIONS = ("fp32", "bf16")


@torch.no_grad()
def extract_group_features(encoder: PointMAEEncoder, points: torch.Tensor, center_idx: torch.Tensor | None = None,
                           group_size: int = 128, n_groups: int = 4096, precision: str = "fp32",
                           return_radius: bool = False):
    """(G, encoder.feature_dim) features of the groups of ``points`` (N,3); with
    ``return_radius`` also the (G,) float32 group radii (each centre's distance to the farthest
    of its ``group_size`` nearest points, the last column of the sorted grouping).

    Centres: ``center_idx`` (G,) (e.g. from AGCS) or, when None, ``n_groups`` FPS centres. All
    G groups form one attention sequence, as in Reg3D-AD (attention couples the groups, so
    splitting the sequence would change the features); the fused attention keeps 16384 groups in
    memory. Runs on the encoder's device, in eval mode; returns float32 on that device.

    ``precision``: "fp32", or "bf16" (matrix products in bfloat16 with float32 accumulation,
    ``torch.autocast``): about 2.5x faster on CPUs with AMX or AVX512-BF16 and on GPUs, features
    within about 1% (relative L2) of fp32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    try:
        pts = points.to(device=device, dtype=torch.float32)
        neighborhood, center, _, _ = make_groups(pts, n_groups, group_size, center_idx=center_idx)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            feats = encoder(neighborhood[None], center[None])[0].float()
        if return_radius:
            return feats, neighborhood[:, -1].norm(dim=-1)
        return feats
    finally:
        encoder.train(was_training)
