"""Why does Group3AD's feature branch rank the test clouds of a category as it does?

    python -m benchmarks.diagnose_feature_branch --data ROOT --category flange [--preset demo]
        [--seed 0] [--name feature_branch_flange]

Fits Group3AD once (the preset's config, registration included), then scores the category's
test clouds with the feature branch alone (group score = distance to the nearest feature-bank
entry, copied to points through the nearest centre, object score = max over supported points,
as pipeline.py) under variants that each test one explanation of a weak branch:

  as fitted              the model as fit() built it
  8x bank groups         bank from 8x n_groups_train FPS groups per training cloud (coverage:
                         are test groups far from every bank group only by position?)
  bank at test density   training clouds randomly thinned to the test clouds' median point
                         spacing before their groups are taken (Real3D-AD's templates are
                         denser than its one-sided test scans, so k nearest points span a
                         smaller patch in training than in test)
  4x test groups         4x n_groups_test AGCS centres (are defects between test groups?)

A second row scores the model as fitted with scan-border groups (border offset > 0.25, below)
left out of the object score. For the model as fitted, per test cloud: the five highest group
scores, each group's border offset (|mean of its k points - centre| / group radius: about 0
inside a surface, 0.4 or more on a scan's border) and whether it holds ground-truth anomalous
points; the highest score among the groups that hold anomalous points; the share of anomalous
points inside some group. The coordinate branch's O-AUROC is given for reference. Writes
benchmarks/results/<name>.md and .json.

The recorded results (feature_branch_flange.md, feature_branch_fish_banks.md) are of the demo
preset before its bank was drawn from 4096 groups per training cloud (n_groups_bank, the fix
this diagnosis led to); with today's demo preset "as fitted" is already that bank.
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (os.path.join(ROOT, "python"), ROOT):
    if p not in sys.path:
        sys.path.insert(0, p)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from benchmarks.common import Table  # noqa: E402

BORDER_OFFSET = 0.25  # group border offset above which a group counts as a scan-border group


def spacing(points: np.ndarray) -> float:
    import group3ad_ext

    return group3ad_ext.point_spacing(torch.as_tensor(np.ascontiguousarray(points, dtype=np.float32)))


def fitted(root: str, category: str, preset: str, seed: int):
    """(model, registered training clouds, registered test clouds, test samples, test clouds)."""
    from group3ad.config import Group3ADConfig
    from group3ad.data import open_dataset
    from group3ad.evaluate import Workspace, _load
    from group3ad.pipeline import Group3AD, centred, points_of

    ds = open_dataset(root)
    train = [_load(s) for s in ds.train(category)]
    tests = ds.test(category)
    test_clouds = [_load(s) for s in tests]
    cfg = (Group3ADConfig.demo if preset == "demo" else Group3ADConfig)(seed=seed)
    ws = Workspace()
    model = Group3AD(cfg).fit([c.points for c in train], workspace=ws)
    reg_train = [centred(points_of(c.points)) for c in train]
    if cfg.registration.enabled:
        reg_train = [reg_train[0]] + [ws.registered(("train", i), p, model.registrar)
                                      for i, p in enumerate(reg_train) if i > 0]
    reg_test = [ws.registered(("test", s.name), centred(points_of(c.points)), model.registrar)
                if cfg.registration.enabled else centred(points_of(c.points))
                for s, c in zip(tests, test_clouds)]
    return model, reg_train, reg_test, tests, test_clouds


def feature_bank(model, clouds, groups_per_cloud: int):
    from group3ad import kernels
    from group3ad.memory_bank import MemoryBank

    cfg = model.config
    feats = []
    for p in clouds:
        pt = kernels.as_tensor(p, model.device)
        feats.append(model._features(pt, kernels.fps(pt, min(groups_per_cloud, len(p)), model.device)))
    return MemoryBank(cfg.memory_size, cfg.proj_dim, cfg.seed).fit(torch.cat(feats))


def score_clouds(model, bank, clouds, labels, n_groups: int, details: bool = False):
    """Feature-branch (object scores (T,), point scores [(N_i,)], per-cloud details or None)."""
    from group3ad import kernels
    from group3ad.object_score import object_score, supported_points

    cfg = model.config
    saved, cfg.n_groups_test = cfg.n_groups_test, n_groups
    objs, points, rows = [], [], []
    try:
        for p, lab in zip(clouds, labels):
            pt = kernels.as_tensor(p, model.device)
            centres = model.test_centres(p)
            f, radii = model._features(pt, centres, return_radius=True)
            g = bank.query(f, k=1)[0][:, 0].cpu().numpy().astype(np.float64)
            cdist, nearest = kernels.nearest(p, p[centres], model.device)
            radii = radii.cpu().numpy().astype(np.float64)
            supported = supported_points(radii, nearest, cfg.support_ratio)
            objs.append(object_score(g[nearest], supported))
            points.append(g[nearest])
            if details:
                rows.append(_cloud_details(model, p, centres, g, radii, cdist, nearest, lab))
    finally:
        cfg.n_groups_test = saved
    return np.array(objs), points, rows


def _cloud_details(model, p, centres, g, radii, cdist, nearest, lab) -> dict:
    from group3ad import kernels

    _, nb = kernels.knn(p[centres], p, model.config.group_size, model.device)
    offset = np.linalg.norm(p[nb].mean(1) - p[centres], axis=1) / np.maximum(radii, 1e-12)
    anomalous = lab[nb].max(1) > 0
    top = np.argsort(-g, kind="stable")[:5]
    bad = lab > 0
    interior = (offset <= BORDER_OFFSET)[nearest]
    return {
        "interior_object_score": round(float(g[nearest][interior].max()), 2) if interior.any() else None,
        "top5_scores": np.round(g[top], 2).tolist(),
        "top5_border_offsets": np.round(offset[top], 2).tolist(),
        "top5_anomalous": anomalous[top].astype(int).tolist(),
        "border_groups_share": round(float((offset > BORDER_OFFSET).mean()), 3),
        "max_anomalous_group": round(float(g[anomalous].max()), 2) if anomalous.any() else None,
        "anomaly_points_in_a_group": (round(float((cdist[bad] <= radii[nearest[bad]]).mean()), 2)
                                      if bad.any() else None),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--category", required=True)
    ap.add_argument("--preset", default="demo", choices=["demo", "paper"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default=None)
    ap.add_argument("--bank-multipliers", type=lambda v: [int(x) for x in v.split(",")], default=[8],
                    help="bank variants from this many times n_groups_train groups per training cloud "
                         "(comma-separated, default 8)")
    args = ap.parse_args(argv)
    from group3ad import kernels
    from group3ad.object_score import object_score

    model, reg_train, reg_test, tests, test_clouds = fitted(args.data, args.category, args.preset, args.seed)
    cfg = model.config
    labels = [np.asarray(c.labels) for c in test_clouds]
    obj_labels = np.array([int(s.is_anomalous) for s in tests])
    point_labels = np.concatenate(labels)
    s_train = float(np.median([spacing(p) for p in reg_train]))
    s_test = float(np.median([spacing(p) for p in reg_test]))
    keep = min(1.0, (s_train / s_test) ** 2)
    rng = np.random.default_rng(args.seed)
    thinned = [p[np.sort(rng.choice(len(p), max(1, int(len(p) * keep)), replace=False))] for p in reg_train]

    coord = []
    for p in reg_test:
        d, _ = kernels.nearest(kernels.as_tensor(p, model.device), model.coord_bank, model.device)
        coord.append(d)
    name = args.name or f"feature_branch_{args.category}"
    table = Table(name, f"Feature branch diagnosis: {args.category} ({args.preset} config)")
    variants = [("as fitted", model.feature_bank, cfg.n_groups_test)] + [
        (f"{x}x bank groups", feature_bank(model, reg_train, x * cfg.n_groups_train), cfg.n_groups_test)
        for x in args.bank_multipliers] + [
        ("bank at test density", feature_bank(model, thinned, cfg.n_groups_train), cfg.n_groups_test),
        ("4x test groups", model.feature_bank, 4 * cfg.n_groups_test),
    ]
    details = None
    for label, bank, groups in variants:
        objs, points, rows = score_clouds(model, bank, reg_test, labels, groups, details=details is None)
        table.add(variant=label, bank_entries=len(bank), test_groups=groups,
                  o_auroc=round(float(roc_auc_score(obj_labels, objs)), 3),
                  p_auroc=round(float(roc_auc_score(point_labels, np.concatenate(points))), 3))
        if details is None:
            details = rows
            interior = [r["interior_object_score"] for r in rows]
            if all(v is not None for v in interior):
                table.add(variant="as fitted, object score without scan-border groups",
                          bank_entries=len(bank), test_groups=groups,
                          o_auroc=round(float(roc_auc_score(obj_labels, interior)), 3), p_auroc="-")
    coord_objs = [object_score(d, np.ones(len(d), bool)) for d in coord]
    per_cloud = [{"cloud": s.name, "anomalous": int(a), **row} for s, a, row in zip(tests, obj_labels, details)]
    table.notes += [
        f"Data: {os.path.abspath(args.data)}, category {args.category}: {len(reg_train)} training and "
        f"{len(tests)} test clouds; median point spacing {s_train:.4f} (training) vs {s_test:.4f} (test), "
        f"so 'bank at test density' keeps {keep:.3f} of each training cloud.",
        f"Coordinate branch alone (plain max), for reference: O-AUROC "
        f"{roc_auc_score(obj_labels, coord_objs):.3f}, P-AUROC "
        f"{roc_auc_score(point_labels, np.concatenate(coord)):.3f}.",
        "Per test cloud, the model as fitted (border offset: |mean of the group's points - centre| / "
        f"radius; > {BORDER_OFFSET} is a scan-border group):",
    ] + [", ".join(f"{k} {v}" for k, v in row.items()) for row in per_cloud]
    table.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
