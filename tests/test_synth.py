"""The synthetic Real3D-AD-format benchmark: layout, labels, one-sided scans, determinism, defects."""

import hashlib
import json

import numpy as np
import pytest

from group3ad.cli import main as cli_main
from group3ad.data import DataError, Real3DAD, open_dataset, read_labelled_txt, read_points
from group3ad.data.synth import CATALOG, PRESETS, generate
from group3ad.data.synth import defects
from group3ad.data.synth.generate import REAL3D_LIMITS, make_part, plan_category, scan_test_sample
from group3ad.data.synth.meshes import MESHES
from group3ad.data.synth.scan import visible
from group3ad.data.synth.shapes import PROCEDURAL, Jitter

SEED = 3
TINY = PRESETS["tiny"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    manifest = generate(out, "tiny", SEED, progress=False)
    return out, manifest


def _tree_digest(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_tiny_layout_counts_and_names(tiny):
    root, manifest = tiny
    ds = open_dataset(root)
    assert isinstance(ds, Real3DAD)
    assert ds.categories() == sorted(TINY.categories)
    for cat in ds.categories():
        assert [s.name for s in ds.train(cat)] == [f"{i}_template" for i in range(TINY.n_train)]
        test = ds.test(cat)
        assert [int(s.name.split("_")[0]) for s in test] == list(range(TINY.n_test))
        bad = [s for s in test if s.is_anomalous]
        assert len(bad) == TINY.n_test // 2
        assert sorted(s.defect_kind for s in bad) == sorted(defects.KINDS)
        for s in test:
            assert s.name.endswith("_good") != s.is_anomalous
            assert (s.gt_path is not None) == s.is_anomalous
        assert not any((root / cat / "gt").glob("*_good.txt"))
        # the manifest describes exactly the files on disk
        entry = manifest["categories"][cat]
        assert [t["name"] for t in entry["test"]] == [s.name for s in test]
        assert [t["defect_kind"] for t in entry["test"]] == [s.defect_kind for s in test]
    assert json.loads((root / "manifest.json").read_text()) == json.loads(json.dumps(manifest))


def test_tiny_labels_and_fractions(tiny):
    root, manifest = tiny
    ds = open_dataset(root)
    for cat in ds.categories():
        info = {t["name"]: t for t in manifest["categories"][cat]["test"]}
        for s in ds.train(cat):
            c = s.load()
            assert 8_000 <= len(c) <= 12_500 and not c.labels.any()
        for s in ds.test(cat):
            c = s.load()
            assert 5_000 <= len(c) <= 11_000
            assert info[s.name]["points"] == len(c)
            if not s.is_anomalous:
                assert not c.labels.any()
                continue
            frac = c.labels.mean()
            assert 0.01 <= frac <= 0.05, (cat, s.name, frac)
            assert info[s.name]["anomalous_points"] == int(c.labels.sum())
            assert info[s.name]["anomalous_fraction"] == pytest.approx(frac, abs=1e-6)
            # gt and pcd hold the same float32 points, in the same order
            pcd, _ = read_points(s.path)
            np.testing.assert_array_equal(c.points.astype(np.float32), pcd.astype(np.float32))
            # the anomalous points form one compact region around the recorded centre
            centre = np.array(info[s.name]["centre"])
            d = np.linalg.norm(c.points - centre, axis=1)
            assert np.median(d[c.labels == 1]) < 0.5 * np.median(d[c.labels == 0])


def test_tiny_units_and_extent(tiny):
    root, _ = tiny
    ds = open_dataset(root)
    for cat in ds.categories():
        for s in ds.train(cat):
            p = s.load().centered().points
            axes = np.linalg.svd(p, full_matrices=False)[2]
            extent = np.ptp(p @ axes.T, axis=0).max()
            assert 20.0 <= extent <= 40.0, (cat, extent)


def _layered_share(points, view, pixel=1.0, gap=3.0):
    """Share of points in 1 mm pixels (looking along view) holding two layers: a depth gap of
    more than ``gap`` mm with no point between. About 1 for a complete scan (front and back in
    every pixel); small for a one-sided scan (only pixels on an occlusion boundary)."""
    a = np.eye(3)[np.argmin(np.abs(view))]
    u = np.cross(view, a)
    u /= np.linalg.norm(u)
    w = np.cross(view, u)
    ix, iy = np.floor(points @ u / pixel).astype(int), np.floor(points @ w / pixel).astype(int)
    key = (ix - ix.min()) * (iy.max() - iy.min() + 1) + (iy - iy.min())
    depth = points @ view
    order = np.lexsort((depth, key))
    k, d = key[order], depth[order]
    split = (k[1:] == k[:-1]) & (np.diff(d) > gap)
    layered = np.zeros(key.max() + 1, bool)
    layered[k[1:][split]] = True
    return float(layered[key].mean())


def test_test_scans_are_one_sided_and_training_scans_complete(tiny):
    root, manifest = tiny
    ds = open_dataset(root)
    rng = np.random.default_rng(0)
    for cat in ds.categories():
        info = {t["name"]: t for t in manifest["categories"][cat]["test"]}
        test = [_layered_share(s.load().points, np.array(info[s.name]["view_dir"])) for s in ds.test(cat)]
        train = []
        for s in ds.train(cat):  # complete scans, as a control: two layers from most directions
            views = rng.normal(size=(5, 3))
            pts = s.load().points
            train.append(np.median([_layered_share(pts, v / np.linalg.norm(v)) for v in views]))
        assert max(test) < 0.2 and min(train) > 0.5, (cat, test, train)


def test_same_seed_is_byte_identical_and_samples_are_independent(tiny, tmp_path):
    root, _ = tiny
    again = tmp_path / "again"
    generate(again, "tiny", SEED, progress=False)
    assert _tree_digest(again) == _tree_digest(root)
    # per-sample seeding: a category generated alone gives the same files
    alone = tmp_path / "alone"
    generate(alone, "tiny", SEED, categories=["duck"], progress=False)
    assert {k: v for k, v in _tree_digest(alone).items() if k.startswith("duck/")} == \
        {k: v for k, v in _tree_digest(root).items() if k.startswith("duck/")}
    other = tmp_path / "other"
    generate(other, "tiny", SEED + 1, categories=["duck"], n_test=2, progress=False)
    assert _tree_digest(other)["duck/train/0_template.pcd"] != _tree_digest(root)["duck/train/0_template.pcd"]


def test_manifest_records_defects(tiny):
    _, manifest = tiny
    assert manifest["seed"] == SEED and manifest["preset"]["name"] == "tiny" and manifest["units"] == "mm"
    recs = [t for c in manifest["categories"].values() for t in c["test"] if t["is_anomalous"]]
    for t in recs:
        assert t["radius_mm"] > 0 and t["size_mm"] > 0 and len(t["centre"]) == 3
        if t["subtle"]:
            assert 2.0 <= t["size_spacings"] <= 4.0
    assert any(t["subtle"] for t in recs), "no subtle defect in the tiny preset at this seed"


def test_synth_command(tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli_main(["synth", "--out", str(out), "--preset", "tiny", "--seed", "1",
                     "--categories", "bolt", "--tests", "2", "--no-progress"]) == 0
    assert "wrote 6 clouds in 1 categories" in capsys.readouterr().out
    ds = open_dataset(out)
    assert ds.categories() == ["bolt"] and len(ds.test("bolt")) == 2
    assert cli_main(["synth", "--out", str(out), "--preset", "tiny"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert cli_main(["synth", "--out", str(tmp_path / "x"), "--categories", "teapot"]) == 2
    assert "unknown teapot" in capsys.readouterr().err
    with pytest.raises(DataError):
        open_dataset(tmp_path / "x")


def test_real3d_preset_plan_matches_real3d_scale():
    preset = PRESETS["real3d"]
    assert len(preset.categories) == 12 and preset.n_test == 100
    for cat in preset.categories:
        train, test = plan_category(preset, cat, 0)
        assert len(train) == 4 and len(test) == 100
        assert all(REAL3D_LIMITS["train"][0] <= n <= REAL3D_LIMITS["train"][1] for _, n in train)
        assert all(REAL3D_LIMITS["test"][0] <= n <= REAL3D_LIMITS["test"][1] for _, n, _ in test)
        assert sum(k == "good" for _, _, k in test) == 50
    assert plan_category(preset, "gear", 0) == plan_category(preset, "gear", 0)


@pytest.mark.parametrize("category", CATALOG)
def test_every_part_has_outward_normals_and_size(category):
    rng = np.random.default_rng(1)
    part = make_part(category, rng, 0.015)
    pts, nrm = part.sample(2.0, rng)
    assert len(pts) > 1000
    np.testing.assert_allclose(np.linalg.norm(nrm, axis=1), 1.0, atol=1e-9)
    extent = np.ptp(pts, axis=0).max()
    assert 20.0 <= extent <= 40.0
    if category in PROCEDURAL:  # exact solids: just inside along -n, just outside along +n
        assert part.contains(pts - 0.02 * nrm).mean() > 0.999
        assert part.contains(pts + 0.02 * nrm).mean() < 0.001
    else:
        assert category in MESHES


def test_part_to_part_variation_is_small():
    a = make_part("flange", np.random.default_rng(1), 0.015).sample(3.0, np.random.default_rng(9))[0]
    b = make_part("flange", np.random.default_rng(2), 0.015).sample(3.0, np.random.default_rng(9))[0]
    nominal = PROCEDURAL["flange"](Jitter.none()).sample(3.0, np.random.default_rng(9))[0]
    for p in (a, b):
        ratio = np.ptp(p, axis=0) / np.ptp(nominal, axis=0)
        assert np.all(np.abs(ratio - 1) < 0.03) and not np.allclose(ratio, 1)


def _plane(n=40_000, size=20.0, seed=0):
    rng = np.random.default_rng(seed)
    pts = np.column_stack([rng.uniform(-size / 2, size / 2, (n, 2)), np.zeros(n)])
    return pts, np.tile([0.0, 0.0, 1.0], (n, 1))


@pytest.mark.parametrize("depth", [0.4, -0.4])
def test_bump_labels_follow_the_displacement(depth):
    pts, nrm = _plane()
    moved, _, lab = defects.bump(pts, nrm, np.zeros(3), np.array([0, 0, 1.0]), 3.0, depth)
    disp = moved[:, 2]
    assert np.abs(disp).max() == pytest.approx(abs(depth), rel=1e-3)
    assert np.sign(disp[np.abs(disp) > 0]).tolist() == [np.sign(depth)] * int((np.abs(disp) > 0).sum())
    np.testing.assert_array_equal(lab == 1, np.abs(disp) >= 0.1 * abs(depth))
    np.testing.assert_array_equal(moved[:, :2], pts[:, :2])  # moved along the normal only


def test_cut_removes_region_and_labels_rim_and_new_faces():
    # a slab 4 mm thick: top face z = 0, bottom face z = -4
    top, top_n = _plane()
    bottom, bottom_n = _plane(seed=1)
    bottom[:, 2] = -4.0
    pts, nrm = np.concatenate([top, bottom]), np.concatenate([top_n, -bottom_n])
    density = 40_000 / 400.0
    out, out_n, lab = defects.cut(pts, nrm, np.zeros(3), np.array([0, 0, 1.0]), 3.0, 1.0, density, 0.2,
                                  np.random.default_rng(0))
    r_top = np.hypot(out[:, 0], out[:, 1])
    on_top = np.abs(out[:, 2]) < 1e-12
    assert not (on_top & (r_top < 3.0 - 1e-9)).any()  # the cut disc is gone from the top face
    new = ~np.isin(out[:, 2], [0.0, -4.0])
    assert lab[new].all() and (out[new, 2] >= -1.0 - 1e-9).all()  # floor at 1 mm depth, wall above it
    floor = np.abs(out[:, 2] + 1.0) < 1e-9
    assert floor.sum() > 0.8 * density * np.pi * (9 - 1)  # the floor disc of radius sqrt(8)
    rim = on_top & (r_top < 3.2)
    assert lab[rim].all() and not lab[on_top & (r_top > 3.3)].any()
    assert not lab[out[:, 2] == -4.0].any()


def test_add_attaches_a_blob_outside_the_part():
    pts, nrm = _plane()
    density = 40_000 / 400.0
    out, out_n, lab = defects.add(pts, nrm, np.zeros(3), np.array([0, 0, 1.0]), 2.0, 1.5, density,
                                  np.random.default_rng(0))
    blob = lab == 1
    assert (out[blob, 2] > 0).all() and out[blob, 2].max() == pytest.approx(1.5, abs=0.05)
    centre = np.array([0, 0, -0.5])
    np.testing.assert_allclose(np.linalg.norm(out[blob] - centre, axis=1), 2.0)
    assert not (np.linalg.norm(out[~blob] - centre, axis=1) < 2.0).any()  # covered surface removed


def test_visibility_of_a_sphere_is_the_front_half():
    rng = np.random.default_rng(0)
    d = rng.normal(size=(50_000, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    pts = 10 * d
    vis = visible(pts, d, np.array([0, 0, 1.0]), spacing=np.sqrt(4 * np.pi * 100 / 50_000))
    assert (d[vis, 2] > 0.2 - 1e-12).all()
    assert vis.mean() == pytest.approx(0.4, abs=0.02)  # cap z > 0.2 R holds 40% of a sphere


@pytest.mark.slow
@pytest.mark.parametrize("category", CATALOG)
def test_every_category_takes_every_defect(category):
    for i, kind in enumerate(defects.KINDS):
        pts, labels, info = scan_test_sample(category, TINY, 8_000, kind, np.random.default_rng(i))
        assert 0.01 <= labels.mean() <= 0.05 and info["defect_kind"] == kind
        assert len(pts) == len(labels) == info["points"]


def test_progress_bar_follows_group3ad_no_progress(tmp_path, capsys, monkeypatch):
    """`group3ad demo --quiet` sets GROUP3AD_NO_PROGRESS=1; data generation must honour it too."""
    monkeypatch.setenv("GROUP3AD_NO_PROGRESS", "1")
    generate(tmp_path / "quiet", preset="tiny", seed=1, categories=["bolt"], n_test=2)
    assert "synth" not in capsys.readouterr().err
    monkeypatch.setenv("GROUP3AD_NO_PROGRESS", "0")
    generate(tmp_path / "loud", preset="tiny", seed=1, categories=["bolt"], n_test=2)
    assert "synth" in capsys.readouterr().err
