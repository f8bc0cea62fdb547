"""The synthetic Real3D-AD-format benchmark: presets, per-sample generation and the writer.

Layout written (exactly Real3D-AD's)::

    <out>/<category>/train/<i>_template.pcd      4 complete 360-degree scans of good parts
    <out>/<category>/test/<i>_<kind>.pcd         one-sided scans; kind good|bulge|sink|cut|add
    <out>/<category>/gt/<i>_<kind>.txt           "x y z label" for every defective test scan
    <out>/manifest.json                          parameters and per-sample defect records

Manifest records per test sample: ``name``, ``is_anomalous``, ``defect_kind``, ``points``,
``anomalous_points``, ``anomalous_fraction``, ``spacing_mm`` (surface sampling spacing),
``view_dir`` (unit vector from the part towards the scanner, output frame) and, for defects,
``centre``/``normal`` (output frame), ``radius_mm`` (bump support radius / cut tool radius / blob
radius), ``size_mm`` (bump depth / cut floor depth / blob height above the surface),
``size_spacings`` (size in point spacings) and ``subtle`` (size drawn as 2-4 spacings).

Every sample has its own random generator seeded from (seed, category, split, index), so a
sample does not depend on which other samples or categories were generated, and two runs with
the same arguments write byte-identical files. Clouds are float32 binary PCD in millimetres; the
gt file repeats the same float32 coordinates (9 significant digits round-trip exactly).
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..pcd_io import write_labelled_txt, write_pcd
from . import defects
from .meshes import MESHES, mesh_part
from .primitives import dot, matmul
from .scan import add_noise, random_direction, random_rotation, visible
from .shapes import PROCEDURAL, Jitter

CATALOG = ("gear", "flange", "bracket", "bolt", "knob", "pulley",
           "airplane", "fish", "duck", "penguin", "cow", "imu")
FRACTION_RANGE = (0.01, 0.05)  # anomalous share of a defective test cloud (Real3D-AD: 1.17-5.40%)


@dataclass(frozen=True)
class Preset:
    name: str
    categories: tuple
    n_train: int
    n_test: int
    train_points: tuple  # (lo, hi): per-category base count drawn log-uniformly in this range
    test_points: tuple
    spread: float = 0.1  # per-sample count variation around the category's base count
    noise_mm: float = 0.015  # sensor noise (Gaussian sigma, mm)
    variation: float = 0.015  # part-to-part dimension variation (relative)
    subtle_share: float = 0.3  # share of defects only a few point spacings deep


PRESETS = {
    "tiny": Preset("tiny", ("gear", "bracket", "duck"), 4, 8, (9_000, 11_000), (7_000, 9_000)),
    "small": Preset("small", ("gear", "flange", "duck"), 4, 12, (90_000, 110_000), (50_000, 70_000)),
    "real3d": Preset("real3d", CATALOG, 4, 100, (250_000, 2_200_000), (60_000, 1_300_000)),
}
REAL3D_LIMITS = {"train": (200_000, 2_500_000), "test": (50_000, 1_500_000)}


def source_of(category: str) -> str:
    if category in PROCEDURAL:
        return "procedural"
    return f"mesh {MESHES[category][0]} (see group3ad/assets/meshes/README.md)"


def make_part(category: str, rng, variation: float):
    """A good part of the category with random part-to-part variation."""
    if category in PROCEDURAL:
        return PROCEDURAL[category](Jitter(rng, variation))
    if category in MESHES:
        return mesh_part(category, rng, variation)
    raise ValueError(f"category: unknown {category!r}; known: {', '.join(CATALOG)}")


def surface_area(part, rng) -> float:
    """Exact for meshes; for CSG parts estimated from a pilot sample (the filtering leaves
    area * density points on average)."""
    if hasattr(part, "tri_area"):
        return part.area()
    density = 40_000 / part.area()
    return len(part.sample(density, rng)[0]) / density


def _rng(seed: int, category: str, split: int, index: int):
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(category.encode()), split, index]))


def _round(x, nd=6):
    return np.round(np.asarray(x, np.float64), nd).tolist()


def _pose(points, rng):
    rot = random_rotation(rng)
    shift = rng.uniform(-5.0, 5.0, 3)
    return matmul(points, rot.T) + shift, rot, shift


def scan_train_sample(category, preset, n_points, rng):
    part = make_part(category, rng, preset.variation)
    density = n_points / surface_area(part, rng)
    pts, _ = part.sample(density, rng)
    pts = add_noise(pts, preset.noise_mm, rng)
    pts, rot, shift = _pose(pts, rng)
    return pts, {"points": len(pts), "spacing_mm": round(float(density ** -0.5), 6)}


def _defect(kind, pts, nrm, c, nc, radius, size, density, spacing, rng):
    if kind in ("bulge", "sink"):
        return defects.bump(pts, nrm, c, nc, radius, size if kind == "bulge" else -size)
    if kind == "cut":
        return defects.cut(pts, nrm, c, nc, radius, size, density, 2.0 * spacing, rng)
    return defects.add(pts, nrm, c, nc, radius, size, density, rng)


# support radius per labelled radius: the bump is labelled out to w >= 0.1, i.e. r <= 0.732 R
_RADIUS_FACTOR = {"bulge": 1 / 0.732, "sink": 1 / 0.732, "cut": 0.85, "add": 0.6}


def scan_test_sample(category, preset, n_points, kind, rng):
    """One-sided scan of a good part (kind 'good') or of a part with a defect of ``kind``."""
    part = make_part(category, rng, preset.variation)
    area = surface_area(part, rng)
    view = random_direction(rng)
    pilot = 20_000 / area
    p0, n0 = part.sample(pilot, rng)
    seen = max(float(visible(p0, n0, view, pilot ** -0.5).mean()), 0.05)
    density = n_points / (area * seen)
    spacing = density ** -0.5
    pts, nrm = part.sample(density, rng)
    vis = visible(pts, nrm, view, spacing)
    info = {"spacing_mm": round(spacing, 6)}
    if kind == "good":
        out, labels = pts[vis], np.zeros(int(vis.sum()), np.uint8)
    else:
        out, labels, dinfo = _defective(kind, pts, nrm, vis, view, density, spacing, preset, rng)
        info.update(dinfo)
    out = add_noise(out, preset.noise_mm, rng)
    out, rot, shift = _pose(out, rng)
    info["view_dir"] = _round(rot @ view)
    if "centre" in info:
        info["centre"] = _round(rot @ np.asarray(info["centre"]) + shift)
        info["normal"] = _round(rot @ np.asarray(info["normal"]))
    info["points"] = len(out)
    info["anomalous_points"] = int(labels.sum())
    info["anomalous_fraction"] = round(float(labels.mean()), 6)
    return out, labels, info


def _defective(kind, pts, nrm, vis, view, density, spacing, preset, rng):
    lo, hi = FRACTION_RANGE
    for _ in range(8):  # a new centre when a region cannot reach the target share
        facing = np.flatnonzero(vis & (dot(nrm, view) > 0.5))
        cands = facing if len(facing) else np.flatnonzero(vis)
        ic = int(cands[rng.integers(len(cands))])
        c, nc = pts[ic], nrm[ic]
        target = rng.uniform(0.015, 0.045)
        dist = np.sort(np.linalg.norm(pts[vis] - c, axis=1))
        radius = float(dist[min(int(target * len(dist)), len(dist) - 1)]) * _RADIUS_FACTOR[kind]
        subtle = bool(rng.random() < preset.subtle_share)
        if subtle:
            size = rng.uniform(2.0, 4.0) * spacing
        elif kind in ("bulge", "sink"):
            size = min(rng.uniform(max(0.3, 5 * spacing), max(1.0, 8 * spacing)), 0.5 * radius)
        else:
            size = max(rng.uniform(0.3, 0.6) * radius, 3 * spacing)
        for _ in range(6):
            p2, n2, l2 = _defect(kind, pts, nrm, c, nc, radius, size, density, spacing, rng)
            v2 = visible(p2, n2, view, spacing)
            frac = float(l2[v2].mean()) if v2.any() else 0.0
            if lo <= frac <= hi:
                info = {"defect_kind": kind, "subtle": subtle, "centre": c, "normal": nc,
                        "radius_mm": round(radius, 6), "size_mm": round(float(size), 6),
                        "size_spacings": round(float(size / spacing), 3)}
                return p2[v2], l2[v2], info
            radius *= float(np.clip(np.sqrt(target / max(frac, 1e-4)), 0.5, 2.0))
    raise RuntimeError(f"could not place a {kind} defect covering {lo:.0%}-{hi:.0%} of the scan")


def _count_plan(preset, category, seed):
    """Per-sample point counts: a category base count, then a small per-sample spread."""
    rng = _rng(seed, category, 2, 0)

    def base(lo, hi):
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))

    train_base = base(*preset.train_points)
    test_base = base(preset.test_points[0], min(preset.test_points[1], train_base))
    lim = REAL3D_LIMITS if preset.name == "real3d" else {"train": (1, 1 << 40), "test": (1, 1 << 40)}
    spread = lambda b, key: int(np.clip(b * rng.uniform(1 - preset.spread, 1 + preset.spread), *lim[key]))  # noqa: E731
    return ([spread(train_base, "train") for _ in range(preset.n_train)],
            [spread(test_base, "test") for _ in range(preset.n_test)], rng)


def plan_category(preset, category, seed):
    """File names, kinds and point counts of one category (cheap, deterministic)."""
    n_train, n_test, rng = _count_plan(preset, category, seed)
    n_bad = preset.n_test // 2
    kinds = ["good"] * (preset.n_test - n_bad) + [defects.KINDS[i % len(defects.KINDS)] for i in range(n_bad)]
    kinds = [kinds[i] for i in rng.permutation(len(kinds))]
    train = [(f"{i}_template", n) for i, n in enumerate(n_train)]
    test = [(f"{i}_{k}", n, k) for i, (n, k) in enumerate(zip(n_test, kinds))]
    return train, test


def generate(out, preset="tiny", seed=0, categories=None, n_test=None, progress=True) -> dict:
    """Writes the benchmark under ``out`` and returns the manifest (also ``out/manifest.json``)."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"preset: expected one of {', '.join(PRESETS)}, got {preset!r}")
        preset = PRESETS[preset]
    if categories:
        unknown = [c for c in categories if c not in CATALOG]
        if unknown:
            raise ValueError(f"categories: unknown {', '.join(unknown)}; known: {', '.join(CATALOG)}")
        preset = Preset(**{**asdict(preset), "categories": tuple(categories)})
    if n_test is not None:
        if n_test < 2:
            raise ValueError(f"n_test: expected at least 2, got {n_test}")
        preset = Preset(**{**asdict(preset), "n_test": int(n_test)})
    from tqdm import tqdm

    from ...progress import enabled

    out = Path(out)
    plans = {cat: plan_category(preset, cat, seed) for cat in preset.categories}
    total = sum(len(tr) + len(te) for tr, te in plans.values())
    manifest = {"format": "Real3D-AD", "generator": "group3ad synth", "units": "mm",
                "seed": int(seed), "preset": asdict(preset), "anomalous_fraction_range": list(FRACTION_RANGE),
                "categories": {}}
    bar = tqdm(total=total, disable=not enabled(progress), desc="synth", unit="cloud")
    for cat, (train, test) in plans.items():
        cat_dir = out / cat
        for sub in ("train", "test", "gt"):
            (cat_dir / sub).mkdir(parents=True, exist_ok=True)
        entry = {"source": source_of(cat), "train": [], "test": []}
        for i, (name, n) in enumerate(train):
            bar.set_postfix_str(f"{cat}/train/{name}")
            pts, info = scan_train_sample(cat, preset, n, _rng(seed, cat, 0, i))
            write_pcd(cat_dir / "train" / f"{name}.pcd", pts)
            entry["train"].append({"name": name, **info})
            bar.update()
        for i, (name, n, kind) in enumerate(test):
            bar.set_postfix_str(f"{cat}/test/{name}")
            pts, labels, info = scan_test_sample(cat, preset, n, kind, _rng(seed, cat, 1, i))
            write_pcd(cat_dir / "test" / f"{name}.pcd", pts)
            if kind != "good":
                write_labelled_txt(cat_dir / "gt" / f"{name}.txt", pts, labels)
            entry["test"].append({"name": name, "is_anomalous": kind != "good",
                                  "defect_kind": None if kind == "good" else kind, **info})
            bar.update()
        manifest["categories"][cat] = entry
    bar.close()
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, out / "manifest.json")
    return manifest


__all__ = ["CATALOG", "PRESETS", "Preset", "generate", "plan_category", "make_part"]
