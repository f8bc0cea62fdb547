"""The object score: the largest point score among points whose group is supported.

Reg3D-AD's object score is the plain maximum of a cloud's point scores. On real scans that
maximum often belongs to a few stray points: scanner outliers floating off the surface, or a
small fragment of surface seen through a gap. Farthest point sampling picks such isolated
points as centres early (they are far from everything), and their group of k nearest points
then spans several millimetres and several surfaces, a shape no training group has. Their
scores are high in good and defective clouds alike, so the maximum ranks clouds by how many
stray points they hold, not by their defects. On the synthetic real3d preset this inverted the
ranking of a whole category (gear O-AUROC 0.06). On the small preset the stray points lie 2.4 to
19 mm from the defects (median 6 to 19 mm per cloud) and never in the ground truth, yet with 12
test clouds a category's defective clouds can hold more of them by chance, and the plain max
then looks better than the defects warrant (benchmarks/results/pipeline_quality_small.md).

Rule (``Group3ADConfig.support_ratio``, default 4): a group is *supported* when its radius (its
centre's distance to the farthest of its k nearest points) is at most ``support_ratio`` times
the median group radius of the same cloud; a point is supported when its nearest centre's group
is. The object score of a branch is the maximum over supported points. Point scores are not
changed. Defects keep their score: a defect of a few hundred points or more lies on the surface
at the cloud's density, so its groups have ordinary radii. ``support_ratio = 0`` gives Reg3D-AD's
plain maximum; so does a cloud with no supported point (e.g. all groups equal).
"""

from __future__ import annotations

import numpy as np


def supported_groups(radii, support_ratio: float) -> np.ndarray:
    """(G,) bool: group radius <= support_ratio x the median radius (all True when the ratio
    is 0). ``radii``: (G,) group radii of one cloud."""
    r = np.asarray(radii, dtype=np.float64)
    if support_ratio <= 0 or r.size == 0:
        return np.ones(r.shape, dtype=bool)
    return r <= support_ratio * float(np.median(r))


def supported_points(radii, nearest_centre, support_ratio: float) -> np.ndarray:
    """(N,) bool: each point's nearest centre's group is supported. ``nearest_centre``: (N,)
    index into the G groups."""
    return supported_groups(radii, support_ratio)[np.asarray(nearest_centre)]


def object_score(point_scores, supported) -> float:
    """max of ``point_scores`` (N,) over the ``supported`` (N,) bool points; the plain max when
    none is supported."""
    s = np.asarray(point_scores, dtype=np.float64)
    mask = np.asarray(supported, dtype=bool)
    return float(s[mask].max() if mask.any() else s.max())
