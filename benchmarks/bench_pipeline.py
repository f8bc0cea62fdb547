"""Scoring one high-resolution cloud end to end, stage by stage: group3ad vs a Reg3D-AD-style
path built from the peers; and (``--quality``) the paper's methods on a synthetic preset.

Speed (default): one fitted model (2 training clouds, untrained encoder: weights do not change
the cost) scores one N-point cloud (N = 1M; 200k with --quick). Stages:
  register   voxel 0.5 + normals + FPFH + RANSAC + ICP (ours: group3ad_ext normals/FPFH;
             peer: Open3D's estimate_normals/compute_fpfh_feature; both Open3D RANSAC)
  centres    AGCS (ours) / FPS (peer: fpsample's exact bucket FPS)
  group      k=128 nearest points per centre (ours: group op; peer: scipy cKDTree)
  encode     the Point-MAE encoder over all groups as one sequence (same module for both)
  bank       nearest feature-bank entry (ours: nn_search; peer: faiss IndexFlatL2)
  to_points  nearest centre of every point (ours: knn; peer: scipy cKDTree)
  coords     nearest coordinate-bank entry of every point (ours: knn; peer: faiss IndexFlatL2)
Each path runs in a fresh subprocess and scores the cloud --reps times (medians reported); peak
RSS is read after every stage (monotone: the peak so far). Quality (--quality [--preset small] [--tests N]
[--methods A,B]): ``evaluate`` over all methods (or those named), Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (os.path.join(ROOT, "python"), ROOT):
    if p not in sys.path:
        sys.path.insert(0, p)

from benchmarks.common import Table, measure_in_subprocess  # noqa: E402

STAGES = ("register", "centres", "group", "encode", "bank", "to_points", "coords")

_SETUP = r"""
import sys, time, json, resource
sys.path[:0] = [{python!r}, {root!r}]
import numpy as np, torch
torch.manual_seed(0)
from benchmarks.common import surface_cloud
from group3ad.config import Group3ADConfig
from group3ad.pipeline import Group3AD, centred
N, G, DEV, PREC, REPS = {n}, {groups}, {device!r}, {precision!r}, {reps}
# n_groups_bank 5000 per training cloud: a full 10000-entry feature bank, as Reg3D-AD's.
cfg = Group3ADConfig(n_groups_train=1024, n_groups_test=G, n_groups_bank=5000, memory_size=10000,
                     coord_memory_size=10000, use_iun_ian=False, pretrain_epochs=0, device=DEV,
                     precision=PREC)
def encoder_precision():
    return torch.autocast(DEV.split(':')[0], dtype=torch.bfloat16, enabled=PREC == 'bf16')
cfg.registration.max_iteration = 100000
train = [surface_cloud(N, seed=s).double().numpy() for s in (0, 1)]
model = Group3AD(cfg).fit(train, show_progress=False)
R = np.array([[0.36, 0.48, -0.8], [-0.8, 0.6, 0.0], [0.48, 0.64, 0.6]])
cloud = centred(surface_cloud(N, seed=2).double().numpy() @ R.T)
times, peaks = {{}}, {{}}
def stage(name, fn):
    if DEV.startswith('cuda'): torch.cuda.synchronize()
    t0 = time.perf_counter(); out = fn()
    if DEV.startswith('cuda'): torch.cuda.synchronize()
    times.setdefault(name, []).append(time.perf_counter() - t0)
    peaks[name] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return out
"""

_OURS = r"""
from group3ad import kernels
from group3ad.encoding import group_features
dev = model.device
for _rep in range(REPS):
    reg = stage('register', lambda: model.register(cloud))
    pts = kernels.as_tensor(reg, dev)
    ci = stage('centres', lambda: model.test_centres(reg))
    idx_t = torch.as_tensor(ci, device=dev)
    neigh = stage('group', lambda: kernels.group(pts, idx_t, cfg.group_size)[0])
    with torch.no_grad(), encoder_precision():
        feats = stage('encode', lambda: model.encoder(neigh[None], pts[idx_t][None])[0].float())
    gs = stage('bank', lambda: model.feature_bank.query(feats, k=1)[0][:, 0].cpu().numpy())
    ps = stage('to_points', lambda: model.interpolate(reg, reg[ci], gs.astype(np.float64)))
    cs = stage('coords', lambda: kernels.nearest(pts, model.coord_bank, dev)[0])
print(json.dumps({{'times': times, 'peaks': peaks}}))
"""

_PEER = r"""
import open3d as o3d, fpsample, faiss
from scipy.spatial import cKDTree
from group3ad.registration import _cloud
reg3 = o3d.pipelines.registration
L = model.registrar.lengths
def prep(x):
    d = _cloud(x).voxel_down_sample(L.voxel)
    d.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=L.normal_radius, max_nn=30))
    f = reg3.compute_fpfh_feature(d, o3d.geometry.KDTreeSearchParamHybrid(radius=L.fpfh_radius, max_nn=100))
    return d, f
tgt = prep(model.registrar.template.points)
def register():
    s = prep(cloud)
    o3d.utility.random.seed(0)
    r = reg3.registration_ransac_based_on_feature_matching(s[0], tgt[0], s[1], tgt[1], True, L.ransac_distance,
        reg3.TransformationEstimationPointToPoint(False), 3,
        [reg3.CorrespondenceCheckerBasedOnEdgeLength(0.9), reg3.CorrespondenceCheckerBasedOnDistance(L.ransac_distance)],
        reg3.RANSACConvergenceCriteria(100000, 0.999))
    T = np.asarray(r.transformation)
    return cloud @ T[:3, :3].T + T[:3, 3]
for _rep in range(REPS):
    reg = stage('register', register)
    ci = stage('centres', lambda: np.asarray(fpsample.bucket_fps_kdline_sampling(reg.astype(np.float32), G, h=7), dtype=np.int64))
    def group():
        tree = cKDTree(reg)
        _, nb = tree.query(reg[ci], k=cfg.group_size, workers=-1)
        return tree, torch.from_numpy((reg[nb] - reg[ci][:, None]).astype(np.float32))
    tree, neigh = stage('group', group)
    with torch.no_grad(), encoder_precision():
        feats = stage('encode', lambda: model.encoder(neigh[None].to(model.device), torch.from_numpy(reg[ci].astype(np.float32))[None].to(model.device))[0].float().cpu().numpy())
    def bank_search():
        b = np.ascontiguousarray(BANK)
        index = faiss.IndexFlatL2(b.shape[1]); index.add(b)
        return index.search(np.ascontiguousarray(feats), 1)[0][:, 0]
    BANK = model.feature_bank.features.float().cpu().numpy()
    gs = stage('bank', bank_search)
    def to_points():
        _, nn = cKDTree(reg[ci]).query(reg, k=1, workers=-1)
        return gs[nn]
    ps = stage('to_points', to_points)
    def coords():
        cb = np.ascontiguousarray(model.coord_bank.cpu().numpy())
        index = faiss.IndexFlatL2(3); index.add(cb)
        return index.search(reg.astype(np.float32), 1)[0]
    cs = stage('coords', coords)
print(json.dumps({{'times': times, 'peaks': peaks}}))
"""


def speed(n: int, groups: int, device: str, precisions=("fp32", "bf16"), reps: int = 3) -> Table:
    # The default 4096 groups keep the historical file name; other counts get their own table.
    suffix = "" if groups == 4096 else f"_{groups}g"
    t = Table(f"pipeline_speed_{device}{suffix}",
              f"Scoring one {n:,}-point cloud, stage by stage ({device}, {groups} test groups)")
    runs = {}
    for prec in precisions:
        for name, body in (("group3ad", _OURS), ("Reg3D-AD-style peers", _PEER)):
            if name != "group3ad" and device != "cpu":
                continue
            fmt = dict(python=os.path.join(ROOT, "python"), root=ROOT, n=n, groups=groups,
                       device=device, precision=prec, reps=reps)
            label = f"{name} {prec}"
            print(f"  running {label} ...", flush=True)
            runs[label] = measure_in_subprocess((_SETUP + body).format(**fmt))
    spread = {}
    for stage in (*STAGES, "total"):
        row = {"stage": stage}
        for label, r in runs.items():
            if stage == "total":  # the median run (by its total), not a sum of medians
                totals = [sum(ts[i] for ts in r["times"].values()) for i in range(reps)]
                row[f"{label} s"] = statistics.median(totals)
                row[f"{label} peak MiB"] = max(r["peaks"].values())
                spread[label] = (min(totals), max(totals))
            else:
                row[f"{label} s"] = statistics.median(r["times"][stage])
                row[f"{label} peak MiB"] = r["peaks"][stage]
        for prec in precisions:  # peer time / our time at the same encoder precision
            ours, peer = row.get(f"group3ad {prec} s"), row.get(f"Reg3D-AD-style peers {prec} s")
            if ours and peer:
                row[f"speed-up {prec}"] = peer / ours
        t.add(**row)
    runs_said = "one scoring" if reps == 1 else f"median of {reps} scorings"
    t.notes.append(f"Seconds: {runs_said} of the same cloud in one process (per stage; "
                   "total: the median run). Range of the totals: " + "; ".join(
                       f"{label} {lo:.2f}-{hi:.2f} s" for label, (lo, hi) in spread.items()) + ".")
    t.notes += [
        f"{groups} test groups of 128 points (Reg3D-AD and the default config score 16384), coordinate "
        "bank of 10000 points, feature bank of 10000 entries (2 training clouds x 5000 groups, the "
        "memory_size of Reg3D-AD and the default config), untrained encoder; peak MiB = process peak "
        "RSS after the stage.",
        "Both paths share the encoder module (same cost at the same precision); they differ in "
        "registration features, centre selection (ours AGCS, which also computes FPFH variation; "
        "peer plain FPS), kNN and bank search. fp32 / bf16: the encoder's arithmetic "
        "(config precision; bf16 = torch.autocast, matrix products in bfloat16).",
    ]
    return t


def quality(preset: str, out: str, seed: int, tests: int | None = None, methods=None) -> None:
    from group3ad.config import Group3ADConfig
    from group3ad.data import synth
    from group3ad.evaluate import DEFAULT_METHODS, evaluate
    from group3ad.metrics import markdown_tables

    data = os.path.join(out, "data", preset if tests is None else f"{preset}_{tests}tests")
    if not os.path.isdir(data):
        synth.generate(data, preset=preset, seed=seed, n_test=tests)
    cfg = Group3ADConfig.demo(seed=seed)
    t0 = time.perf_counter()
    report = evaluate(data, cfg, methods=methods or DEFAULT_METHODS, out_dir=out,
                      data_name=f"synthetic-{preset}")
    md = markdown_tables(report["methods"], f"synthetic-{preset}")
    sample = "" if tests is None else f", {tests} test clouds per category"
    secs = {m: round(r["seconds"], 1) for m, r in report["methods"].items()}
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", f"pipeline_quality_{preset}.md"), "w") as f:
        f.write(f"## Quality on the synthetic {preset!r} preset (demo config, seed {seed}{sample})\n\n")
        f.write(md)
        f.write(f"\n- seconds per method (fit + score, whole preset): {json.dumps(secs)}\n")
        f.write(f"- total {time.perf_counter() - t0:.0f} s; config: `Group3ADConfig.demo()`.\n")
    with open(os.path.join(HERE, "results", f"pipeline_quality_{preset}.json"), "w") as f:
        json.dump(report, f, indent=1, default=float)
    print(md)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="200k points, 1024 groups")
    ap.add_argument("--points", type=int, help="cloud size (default 1M, --quick 200k)")
    ap.add_argument("--groups", type=int, help="test groups (default 4096, --quick 1024)")
    ap.add_argument("--precision", choices=("fp32", "bf16", "both"), default="both",
                    help="encoder precision(s) to run (default both)")
    ap.add_argument("--reps", type=int, default=3, help="scorings per path, medians reported (default 3)")
    ap.add_argument("--quality", action="store_true", help="run the methods table instead")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "bench_quality"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tests", type=int, help="quality: test clouds per category (default: the preset's)")
    ap.add_argument("--methods", help="quality: comma-separated methods (default: all)")
    args = ap.parse_args(argv)
    if args.quality:
        quality(args.preset, args.out, args.seed, args.tests,
                tuple(args.methods.split(",")) if args.methods else None)
        return 0
    n = args.points or (200_000 if args.quick else 1_000_000)
    g = args.groups or (1024 if args.quick else 4096)
    precisions = ("fp32", "bf16") if args.precision == "both" else (args.precision,)
    speed(n, g, args.device, precisions, max(1, args.reps)).write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
