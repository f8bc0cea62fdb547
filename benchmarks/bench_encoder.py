"""Point-MAE group encoder: forward time and peak memory at 4096 and 16384 groups x 128 points
(one attention sequence per cloud, fused SDPA), and the feature distribution before and after a
short IUN/IAN training on a synthetic category.

    python benchmarks/bench_encoder.py [--device cpu|cuda] [--quick]

Part 1 feeds random neighbourhoods (the encoder's cost does not depend on the geometry) to a
freshly initialised full-size encoder (384 dims, 12 blocks, 6 heads) in a fresh subprocess per
size, so the peak RSS (CPU) / peak allocated memory (CUDA) is that of one forward pass.
Part 2 generates the synthetic ``tiny`` preset's ``gear`` category (group3ad.data.synth), pretrains
an encoder self-supervised on its training clouds (no checkpoint can be downloaded), measures
feature uniformity/alignment on all training clouds' groups, runs IUN + IAN and measures again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in (os.path.join(ROOT, "python"), ROOT):
    if p not in sys.path:
        sys.path.insert(0, p)

from benchmarks.common import Table, measure_in_subprocess  # noqa: E402

FORWARD = r"""
import sys, json, time, torch
sys.path[:0] = [{python!r}, {root!r}]
from group3ad.model import PointMAEEncoder
G, K, dev, prec = {groups}, {k}, {device!r}, {precision!r}
torch.manual_seed(0)
enc = PointMAEEncoder().to(dev).eval()
g = torch.Generator().manual_seed(1)
nb = (0.3 * torch.randn(1, G, K, 3, generator=g)).to(dev)
center = (10.0 * torch.randn(1, G, 3, generator=g)).to(dev)
def run():
    with torch.no_grad(), torch.autocast(dev, dtype=torch.bfloat16, enabled=prec == "bf16"):
        out = enc(nb, center)
    if dev == "cuda":
        torch.cuda.synchronize()
    return out
if dev == "cuda":
    run()  # warm-up (kernel selection, allocator); on the CPU one pass is long enough to time cold
    torch.cuda.reset_peak_memory_stats()
times = []
for _ in range({repeat}):
    t0 = time.perf_counter(); out = run(); times.append(time.perf_counter() - t0)
res = {{"seconds": sorted(times)[len(times) // 2], "shape": list(out.shape)}}
if dev == "cuda":
    res["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
print(json.dumps(res))
"""


def bench_forward(table: Table, device: str, sizes, repeat: int) -> None:
    for groups in sizes:
        for precision in ("fp32", "bf16"):
            code = FORWARD.format(python=os.path.join(ROOT, "python"), root=ROOT, groups=groups,
                                  k=128, device=device, repeat=repeat, precision=precision)
            r = measure_in_subprocess(code)
            table.add(part="forward", device=device, precision=precision, groups=groups,
                      group_size=128, seconds=r["seconds"], peak_rss_mib=r["peak_rss_mib"],
                      cuda_peak_mib=r.get("cuda_peak_mib", float("nan")),
                      out_shape="x".join(map(str, r["shape"])))


def synthetic_category(n_clouds: int):
    """Training clouds of the synthetic tiny preset's gear category, centred, float32."""
    import torch

    from group3ad.data import open_dataset
    from group3ad.data.synth import generate

    out = tempfile.mkdtemp(prefix="g3bench_")
    generate(out, preset="tiny", seed=0, categories=["gear"], n_test=2, progress=False)
    ds = open_dataset(out)
    clouds = []
    for s in ds.train("gear")[:n_clouds]:
        p = torch.from_numpy(s.load().points).double()
        clouds.append((p - p.mean(0)).float())
    return clouds


def bench_training(table: Table, device: str, quick: bool) -> dict:
    import torch

    from group3ad.model import (Group3ADTrainConfig, PretrainConfig, extract_group_features,
                                feature_distribution, pretrain_encoder, train_group3ad)

    clouds = synthetic_category(4)
    groups, size = (128, 32) if quick else (512, 64)
    pre = PretrainConfig(n_groups=groups, group_size=size, epochs=2 if quick else 6, steps_per_cloud=2,
                         progress=False)
    encoder, pre_hist = pretrain_encoder(clouds, pre, device=device)
    cfg = Group3ADTrainConfig(n_groups=groups, group_size=size, epochs=4 if quick else 10, lr=1e-4,
                              progress=False)

    def measure(stage):
        feats = torch.cat([extract_group_features(encoder, c, group_size=size, n_groups=groups) for c in clouds])
        m = feature_distribution(feats, k_max=cfg.k_max, seed=0)
        table.add(part="features", device=device, stage=stage, groups=f"{len(clouds)}x{groups}", group_size=size,
                  **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items()})
        return m

    before = measure("before IUN/IAN")
    hist = train_group3ad(encoder, clouds, cfg, device=device)
    after = measure("after IUN/IAN")
    return {"pretrain_epochs": pre_hist["epochs"], "evaluation": hist["evaluation"], "before": before,
            "after": after}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--quick", action="store_true",
                    help="1024 and 4096 groups (unless --groups) and a very short training")
    ap.add_argument("--groups", type=int, nargs="*", help="group counts to time (default 4096 16384)")
    ap.add_argument("--skip-training", action="store_true")
    args = ap.parse_args(argv)
    forward = Table("encoder", "Point-MAE group encoder: forward time and peak memory")
    sizes = args.groups if args.groups is not None else ((1024, 4096) if args.quick else (4096, 16384))
    forward.notes += [
        "Full-size encoder (384 dims, 12 blocks, 6 heads), random weights and random neighbourhoods "
        "(the cost depends on neither), batch 1, all groups in ONE attention sequence (torch SDPA: "
        "flash kernel on the CPU, memory-efficient kernel for float32 on CUDA), mini-PointNet in "
        "chunks of 1024 groups, no autograd. seconds: one cold pass on the CPU, median of 5 after a "
        "warm-up on CUDA. peak_rss_mib: peak resident memory of a fresh Python process doing only "
        "this (torch itself is ~0.4 GiB of it); cuda_peak_mib: torch.cuda.max_memory_allocated.",
        "precision: fp32, or bf16 = torch.autocast(bfloat16): matrix products in bfloat16 with float32 "
        "accumulation (config precision); on this CPU oneDNN runs them on AMX tiles.",
    ]
    if sizes:
        bench_forward(forward, args.device, sizes, repeat=1 if args.device == "cpu" else 5)
        forward.write()
    if not args.skip_training:
        features = Table("encoder_training", "Group feature distribution before / after IUN + IAN")
        extra = bench_training(features, args.device, args.quick)
        features.notes += [
            "Synthetic tiny preset, gear category, its 4 training clouds (~10k points each), centred; "
            "encoder pretrained self-supervised on them first (Point-MAE MAE, Chamfer-L2), then "
            "Algorithm 1 phases 1 + 2 (Adam lr 1e-4, T 1). Metrics over the groups of all 4 clouds, "
            "k-means with the elbow rule (seed 0): uniformity = log E exp(-2|x-y|^2) over all pairs, "
            "alignment = E|x-y|^2 over same-cluster pairs, both on L2-normalised features (lower is "
            "better for both); min_center_distance / mean_intra_spread in raw feature units.",
            "training: " + json.dumps({k: extra[k] for k in ("pretrain_epochs", "evaluation")}, default=float),
            "CPU, shared 2-core machine (noisy).",
        ]
        features.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
