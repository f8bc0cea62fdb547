"""Readers of group3ad.data against small hand-made fixtures of every format, layout and failure."""

import json
import pathlib
import warnings

import numpy as np
import open3d as o3d
import pytest

from group3ad.cli import main as cli_main
from group3ad.data import (AnomalyShapeNet, DataError, Real3DAD, natural_key, open_dataset,
                           read_labelled_txt, read_point_count, read_points, write_labelled_txt,
                           write_pcd)

RNG = np.random.default_rng(7)
PTS = (RNG.random((50, 3)) * 30 - 15).astype(np.float32).astype(np.float64)  # float32-exact


def o3d_cloud(points):
    return o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, np.float64)))


# ----------------------------------------------------------------------------- formats

@pytest.mark.parametrize("encoding", ["ascii", "binary", "binary_compressed"])
def test_pcd_encodings_round_trip(tmp_path, encoding):
    p = tmp_path / f"c_{encoding}.pcd"
    write_pcd(p, PTS, encoding=encoding)
    got, dropped = read_points(p)
    assert dropped == 0 and got.dtype == np.float64
    np.testing.assert_array_equal(got, PTS)
    assert read_point_count(p) == len(PTS)
    # and Open3D, an independent reader, agrees (it parses ascii straight to float64)
    np.testing.assert_allclose(np.asarray(o3d.io.read_point_cloud(str(p)).points), PTS, rtol=1e-7, atol=0)


def test_open3d_written_pcd_is_read(tmp_path):
    for ascii_, comp in ((True, False), (False, False), (False, True)):
        p = tmp_path / f"o3d_{ascii_}_{comp}.pcd"
        o3d.io.write_point_cloud(str(p), o3d_cloud(PTS), write_ascii=ascii_, compressed=comp)
        np.testing.assert_allclose(read_points(p)[0], PTS, rtol=0, atol=1e-5)


def test_pcd_with_extra_fields_and_counts(tmp_path):
    # rgb before xyz, a 2-wide field between: the reader must find the right columns
    rec = np.zeros(3, dtype=[("rgb", "<f4"), ("n", "<f4", (2,)), ("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("i", "<u2")])
    rec["x"], rec["y"], rec["z"] = [1, 2, 3], [4, 5, 6], [7, 8, 9]
    rec["n"] = 99
    head = ("VERSION 0.7\nFIELDS rgb n x y z i\nSIZE 4 4 4 4 4 2\nTYPE F F F F F U\nCOUNT 1 2 1 1 1 1\n"
            "WIDTH 3\nHEIGHT 1\nPOINTS 3\nDATA {}\n")
    pb = tmp_path / "extra_bin.pcd"
    pb.write_bytes(head.format("binary").encode() + rec.tobytes())
    pa = tmp_path / "extra_ascii.pcd"
    pa.write_text(head.format("ascii") + "".join(f"0 99 99 {x} {y} {z} 5\n" for x, y, z in zip([1, 2, 3], [4, 5, 6], [7, 8, 9])))
    want = np.array([[1, 4, 7], [2, 5, 8], [3, 6, 9]], np.float64)
    np.testing.assert_array_equal(read_points(pb)[0], want)
    np.testing.assert_array_equal(read_points(pa)[0], want)


@pytest.mark.parametrize("ascii_", [True, False])
def test_ply_round_trip(tmp_path, ascii_):
    p = tmp_path / "c.ply"
    o3d.io.write_point_cloud(str(p), o3d_cloud(PTS), write_ascii=ascii_)
    # Open3D writes ascii PLY with 6 significant digits
    np.testing.assert_allclose(read_points(p)[0], PTS, rtol=1e-5 if ascii_ else 0, atol=0)
    assert read_point_count(p) == len(PTS)


def test_ply_mesh_reads_vertices(tmp_path):
    mesh = o3d.geometry.TriangleMesh.create_box(2.0, 3.0, 4.0)
    p = tmp_path / "box.ply"
    o3d.io.write_triangle_mesh(str(p), mesh)
    got = read_points(p)[0]
    np.testing.assert_allclose(got, np.asarray(mesh.vertices), atol=1e-6)


@pytest.mark.parametrize("suffix,sep", [(".xyz", " "), (".txt", " "), (".txt", ","), (".csv", ","), (".xyz", "\t")])
def test_text_formats(tmp_path, suffix, sep):
    p = tmp_path / f"c{suffix}"
    p.write_text("".join(sep.join(f"{v:.9g}" for v in row) + "\n" for row in PTS))
    got = read_points(p)[0]
    assert got.dtype == np.float64 and got.shape == PTS.shape
    np.testing.assert_array_equal(got.astype(np.float32), PTS.astype(np.float32))  # 9 digits round-trip


def test_labelled_txt_space_and_comma(tmp_path):
    labels = (np.arange(len(PTS)) % 7 == 0).astype(np.uint8)
    for delim in (" ", ","):
        p = tmp_path / f"gt{ord(delim)}.txt"
        write_labelled_txt(p, PTS, labels, delimiter=delim)
        pts, lab, dropped = read_labelled_txt(p)
        np.testing.assert_array_equal(pts.astype(np.float32), PTS.astype(np.float32))
        np.testing.assert_array_equal(lab, labels)
        assert lab.dtype == np.uint8 and dropped == 0
    # "1.0"-style float labels are accepted, anything else is not
    p = tmp_path / "float_labels.txt"
    p.write_text("1 2 3 1.0\n4 5 6 0.0\n")
    assert read_labelled_txt(p)[1].tolist() == [1, 0]
    p.write_text("1 2 3 2\n")
    with pytest.raises(DataError, match="labels must be 0 or 1"):
        read_labelled_txt(p)


# ----------------------------------------------------------------------------- malformed files

def test_missing_and_empty(tmp_path):
    with pytest.raises(DataError, match="nope.pcd: file not found"):
        read_points(tmp_path / "nope.pcd")
    for suffix in (".pcd", ".ply", ".xyz", ".txt"):
        p = tmp_path / f"empty{suffix}"
        p.write_bytes(b"")
        with pytest.raises(DataError, match=rf"empty{suffix}: file is empty"):
            read_points(p)
    with pytest.raises(DataError, match="not a regular file"):
        read_points(tmp_path)


def test_unsupported_suffix(tmp_path):
    p = tmp_path / "c.obj"
    p.write_text("v 1 2 3\n")
    with pytest.raises(DataError, match="unsupported point-cloud suffix"):
        read_points(p)


def test_truncated_binary_pcd(tmp_path):
    p = tmp_path / "t.pcd"
    write_pcd(p, PTS)
    p.write_bytes(p.read_bytes()[:-7])
    with pytest.raises(DataError, match="t.pcd: truncated binary payload"):
        read_points(p)


def test_truncated_ascii_pcd(tmp_path):
    # Open3D returns uninitialised memory for this file; we must refuse it
    p = tmp_path / "t.pcd"
    write_pcd(p, PTS, encoding="ascii")
    lines = p.read_text().splitlines()
    p.write_text("\n".join(lines[:-1] + [lines[-1].rsplit(" ", 1)[0]]) + "\n")  # last row cut short
    with pytest.raises(DataError, match="t.pcd: malformed text data"):
        read_points(p)
    lines = p.read_text().splitlines()
    p.write_text("\n".join(lines[:-5]) + "\n")  # whole lines missing
    with pytest.raises(DataError, match="header says 50 points, the ascii data has"):
        read_points(p)


def test_truncated_and_corrupt_binary_compressed_pcd(tmp_path):
    p = tmp_path / "c.pcd"
    write_pcd(p, PTS, encoding="binary_compressed")
    good = p.read_bytes()
    p.write_bytes(good[:-10])
    with pytest.raises(DataError, match="truncated binary_compressed payload"):
        read_points(p)
    head_end = good.index(b"DATA binary_compressed\n") + len(b"DATA binary_compressed\n")
    p.write_bytes(good[:head_end + 4] + np.uint32(12345).tobytes() + good[head_end + 8:])
    with pytest.raises(DataError, match="uncompressed size 12345"):
        read_points(p)
    p.write_bytes(good[:head_end + 8] + bytes(len(good) - head_end - 8))  # zeroed LZF stream
    with pytest.raises(DataError, match="c.pcd: corrupt binary_compressed payload"):
        read_points(p)


@pytest.mark.parametrize("content,problem", [
    (bytes(range(256)) * 8, "garbage"),
    (b"VERSION 0.7\nFIELDS x y z\nDATA binary\n", "no SIZE line"),
    (b"VERSION 0.7\nFIELDS x y\nSIZE 4 4\nTYPE F F\nWIDTH 1\nHEIGHT 1\nDATA ascii\n1 2\n", "no 'z' field"),
    (b"FIELDS x y z\nSIZE 4 4\nTYPE F F F\nWIDTH 1\nHEIGHT 1\nDATA ascii\n1 2 3\n", "differ in length"),
    (b"FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nWIDTH a\nHEIGHT 1\nDATA ascii\n1 2 3\n", "non-integer"),
    (b"FIELDS x y z\nSIZE 3 4 4\nTYPE F F F\nWIDTH 1\nHEIGHT 1\nDATA ascii\n1 2 3\n", "unsupported TYPE"),
    (b"FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nWIDTH 1\nHEIGHT 1\nDATA lzma\n", "unsupported PCD DATA"),
    (b"FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nWIDTH 0\nHEIGHT 1\nPOINTS 0\nDATA ascii\n", "empty"),
    (b"FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nWIDTH 1\nHEIGHT 1\nDATA ascii\nfoo bar baz\n", "malformed text data"),
])
def test_garbage_pcd_headers(tmp_path, content, problem):
    p = tmp_path / "bad.pcd"
    p.write_bytes(content)
    with pytest.raises(DataError, match=f"bad.pcd: .*{problem}"):
        read_points(p)


def test_malformed_ply(tmp_path):
    p = tmp_path / "bad.ply"
    p.write_bytes(b"not a ply\nend_header\n")
    with pytest.raises(DataError, match="first line is not 'ply'"):
        read_points(p)
    o3d.io.write_point_cloud(str(p), o3d_cloud(PTS), write_ascii=False)
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(DataError, match="bad.ply: truncated binary payload"):
        read_points(p)
    o3d.io.write_point_cloud(str(p), o3d_cloud(PTS), write_ascii=True)
    lines = p.read_text().splitlines()
    p.write_text("\n".join(lines[:-3]) + "\n")
    with pytest.raises(DataError, match="header says 50 vertices, found 47"):
        read_points(p)
    p.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\n")
    with pytest.raises(DataError, match="no end of header"):
        read_points(p)


def test_malformed_text(tmp_path):
    p = tmp_path / "bad.xyz"
    p.write_text("1 2 3\n4 5\n")
    with pytest.raises(DataError, match="bad.xyz: malformed text data"):
        read_points(p)
    p.write_text("1 2\n3 4\n")
    with pytest.raises(DataError, match="at least 3 columns"):
        read_points(p)
    p.write_text("# only a comment\n\n")
    with pytest.raises(DataError, match="no data lines"):
        read_points(p)


@pytest.mark.parametrize("fmt", ["ascii", "binary", "xyz", "gt"])
def test_nan_points_are_reported_or_dropped(tmp_path, fmt):
    pts = PTS.copy()
    pts[[3, 10]] = np.nan
    pts[20, 1] = np.inf
    if fmt == "xyz":
        p = tmp_path / "n.xyz"
        p.write_text("".join(" ".join(repr(float(v)) for v in r) + "\n" for r in pts))
        read = read_points
    elif fmt == "gt":
        p = tmp_path / "n.txt"
        write_labelled_txt(p, pts, np.arange(len(pts)) % 2)
        read = lambda path, drop_nan=False: read_labelled_txt(path, drop_nan)  # noqa: E731
    else:
        p = tmp_path / "n.pcd"
        write_pcd(p, pts, encoding=fmt)
        read = read_points
    with pytest.raises(DataError, match=r"n\.\w+: 3 of 50 points have NaN/Inf coordinates \(first at index 3\)"):
        read(p)
    out = read(p, drop_nan=True)
    keep = np.setdiff1d(np.arange(50), [3, 10, 20])
    np.testing.assert_array_equal(out[0].astype(np.float32), PTS[keep].astype(np.float32))
    assert out[-1] == 3
    if fmt == "gt":
        np.testing.assert_array_equal(out[1], keep % 2)


# ----------------------------------------------------------------------------- Real3D-AD layout

def _cloud(path, n, seed=0):
    pts = np.random.default_rng(seed).random((n, 3)).astype(np.float32)
    write_pcd(path, pts)
    return pts.astype(np.float64)


def make_real3d_tree(root: pathlib.Path):
    for cat in ("shell", "airplane"):
        for sub in ("train", "test", "gt"):
            (root / cat / sub).mkdir(parents=True)
    a = root / "airplane"
    for name in ("10_template", "2_template", "1_prototype"):
        _cloud(a / "train" / f"{name}.pcd", 20)
    _cloud(a / "train" / "notes.pcd", 5)           # neither template nor prototype: ignored
    (a / "train" / "readme.md").write_text("x")
    _cloud(a / "test" / "10_good.pcd", 30)
    _cloud(a / "test" / "9_good.pcd", 31)
    pts = _cloud(a / "test" / "482_bulge_cut.pcd", 40, seed=1)
    lab = (np.arange(40) < 3).astype(np.uint8)
    write_labelled_txt(a / "gt" / "482_bulge_cut.txt", pts, lab, delimiter=",")
    pts = _cloud(a / "test" / "12_sink.pcd", 25, seed=2)
    write_labelled_txt(a / "gt" / "12_sink.txt", pts, (np.arange(25) % 5 == 0), delimiter=" ")
    _cloud(a / "test" / "5_temp.pcd", 10)          # skipped by the reference loader
    _cloud(a / "test" / "3_template_temp.pcd", 10)
    s = root / "shell"
    _cloud(s / "train" / "0_template.pcd", 15)
    _cloud(s / "test" / "0_good.pcd", 15)
    pts = _cloud(s / "test" / "1_cut.pcd", 12)
    write_labelled_txt(s / "gt" / "1_cut.txt", pts[:10], np.ones(10))  # size mismatch
    _cloud(s / "test" / "2_sink.pcd", 12)                                # no gt at all
    (root / "manifest.json").write_text("{}")
    (root / "not_a_category").mkdir()
    return root


def test_real3d_layout(tmp_path):
    ds = open_dataset(make_real3d_tree(tmp_path))
    assert isinstance(ds, Real3DAD) and ds.kind == "real3d-ad"
    assert ds.categories() == ["airplane", "shell"]
    assert [s.name for s in ds.train("airplane")] == ["1_prototype", "2_template", "10_template"]
    test = ds.test("airplane")
    assert [s.name for s in test] == ["9_good", "10_good", "12_sink", "482_bulge_cut"]
    assert [s.is_anomalous for s in test] == [False, False, True, True]
    assert [s.defect_kind for s in test] == [None, None, "sink", "bulge_cut"]
    assert all(s.split == "test" and s.category == "airplane" for s in test)
    assert test[0].gt_path is None and test[3].gt_path.name == "482_bulge_cut.txt"


def test_real3d_loading_and_labels(tmp_path):
    ds = Real3DAD(make_real3d_tree(tmp_path))
    good = ds.test("airplane")[0].load()
    assert good.points.shape == (31, 3) and good.labels.dtype == np.uint8 and not good.labels.any()
    assert good.name == "9_good"
    tmpl = ds.train("airplane")[0].load()
    assert len(tmpl) == 20 and not tmpl.labels.any()
    bad = ds.test("airplane")[3].load()  # comma-separated gt
    np.testing.assert_array_equal(bad.points.astype(np.float32), _cloud(tmp_path / "x.pcd", 40, seed=1).astype(np.float32))
    assert bad.labels.tolist() == [1, 1, 1] + [0] * 37
    sink = ds.test("airplane")[2].load()  # space-separated gt
    assert sink.labels.sum() == 5 and abs(sink.anomalous_fraction - 0.2) < 1e-12
    c = sink.centered()
    np.testing.assert_allclose(c.points.mean(0), 0, atol=1e-12)
    np.testing.assert_array_equal(c.labels, sink.labels)
    assert sink.points.mean() > 0.1  # the reader itself does not centre


def test_real3d_gt_points_take_precedence(tmp_path):
    # the reference loader takes a defective sample's points from the gt file
    root = make_real3d_tree(tmp_path)
    gt_pts = np.full((25, 3), 7.0)
    write_labelled_txt(root / "airplane" / "gt" / "12_sink.txt", gt_pts, np.zeros(25))
    np.testing.assert_array_equal(Real3DAD(root).test("airplane")[2].load().points, gt_pts)


def test_real3d_gt_size_mismatch_and_missing_gt(tmp_path):
    ds = Real3DAD(make_real3d_tree(tmp_path))
    cut, sink = ds.test("shell")[1], ds.test("shell")[2]
    with pytest.raises(DataError, match=r"1_cut.txt: ground truth has 10 points but the point cloud .*1_cut.pcd has 12"):
        cut.load()
    with pytest.raises(DataError, match="2_sink.pcd: defective test sample has no ground-truth file"):
        sink.load()


def test_unknown_category_names_known_ones(tmp_path):
    ds = Real3DAD(make_real3d_tree(tmp_path))
    with pytest.raises(DataError, match="unknown category 'car'; known: airplane, shell"):
        ds.train("car")
    with pytest.raises(ValueError):  # DataError is a ValueError for library callers
        ds.test("car")


def test_order_does_not_depend_on_listing_order(tmp_path, monkeypatch):
    root = make_real3d_tree(tmp_path)
    first = [(s.category, s.split, s.name) for s in Real3DAD(root).samples()]
    orig = pathlib.Path.iterdir
    monkeypatch.setattr(pathlib.Path, "iterdir", lambda self: iter(sorted(orig(self), reverse=True)))
    assert [(s.category, s.split, s.name) for s in Real3DAD(root).samples()] == first
    monkeypatch.setattr(pathlib.Path, "iterdir",
                        lambda self: iter(sorted(orig(self), key=lambda p: hash(p.name) % 97)))
    assert [(s.category, s.split, s.name) for s in Real3DAD(root).samples()] == first


def test_natural_key():
    names = ["10_good", "9_good", "1_prototype", "100_bulge", "a", "9_good_b"]
    assert sorted(names, key=natural_key) == ["1_prototype", "9_good", "9_good_b", "10_good", "100_bulge", "a"]


def test_real3d_errors(tmp_path):
    with pytest.raises(DataError, match="dataset folder not found"):
        open_dataset(tmp_path / "missing")
    with pytest.raises(DataError, match="no Real3D-AD categories found"):
        open_dataset(tmp_path)
    (tmp_path / "cat" / "train").mkdir(parents=True)
    _cloud(tmp_path / "cat" / "train" / "1.pcd", 5)
    with pytest.raises(DataError, match="train: no training files .*'template' or 'prototype'"):
        open_dataset(tmp_path)


def test_lazy_listing_reads_no_cloud(tmp_path):
    root = make_real3d_tree(tmp_path)
    (root / "airplane" / "test" / "10_good.pcd").write_bytes(b"garbage")  # broken, but not read yet
    ds = Real3DAD(root)
    assert len(ds.test("airplane")) == 4
    with pytest.raises(DataError, match="10_good.pcd"):
        ds.test("airplane")[1].load()


def test_nan_in_sample_load(tmp_path):
    root = make_real3d_tree(tmp_path)
    pts = np.random.default_rng(0).random((30, 3))
    pts[4] = np.nan
    write_pcd(root / "airplane" / "test" / "10_good.pcd", pts)
    s = Real3DAD(root).test("airplane")[1]
    with pytest.raises(DataError, match="1 of 30 points have NaN"):
        s.load()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        c = s.load(drop_nan=True)
    assert len(c) == 29 and c.dropped_nan == 1 and "dropped 1 NaN/Inf points" in str(w[0].message)


# ----------------------------------------------------------------------------- Anomaly-ShapeNet layout

def make_shapenet_tree(root: pathlib.Path, with_pcd_dir=True):
    base = root / "pcd" if with_pcd_dir else root
    for cat in ("bowl1", "ashtray0"):
        for sub in ("train", "test", "GT"):
            (base / cat / sub).mkdir(parents=True)
        for i in range(4):
            _cloud(base / cat / "train" / f"{cat}_template{i}.pcd", 20, seed=i)
        _cloud(base / cat / "test" / f"{cat}_positive0.pcd", 20)
        _cloud(base / cat / "test" / f"{cat}_positive10.pcd", 20)
        pts = _cloud(base / cat / "test" / f"{cat}_bulge2.pcd", 20, seed=3)
        write_labelled_txt(base / cat / "GT" / f"{cat}_bulge2.txt", pts, np.arange(20) < 4, delimiter=",")
        pts = _cloud(base / cat / "test" / f"{cat}_concavity0.pcd", 20, seed=4)
        write_labelled_txt(base / cat / "GT" / f"{cat}_concavity0.txt", pts, np.arange(20) < 2, delimiter=" ")
    return root


@pytest.mark.parametrize("with_pcd_dir", [True, False])
def test_anomaly_shapenet_layout(tmp_path, with_pcd_dir):
    ds = open_dataset(make_shapenet_tree(tmp_path, with_pcd_dir))
    assert isinstance(ds, AnomalyShapeNet) and ds.kind == "anomaly-shapenet"
    assert ds.categories() == ["ashtray0", "bowl1"]
    assert [s.name for s in ds.train("bowl1")] == [f"bowl1_template{i}" for i in range(4)]
    test = ds.test("ashtray0")
    assert [s.name for s in test] == ["ashtray0_bulge2", "ashtray0_concavity0", "ashtray0_positive0", "ashtray0_positive10"]
    assert [s.is_anomalous for s in test] == [True, True, False, False]
    assert [s.defect_kind for s in test] == ["bulge", "concavity", None, None]
    assert test[0].load().labels.sum() == 4 and test[1].load().labels.sum() == 2
    assert not test[2].load().labels.any()


# ----------------------------------------------------------------------------- data-summary

def test_data_summary_command(tmp_path, capsys):
    root = make_real3d_tree(tmp_path)
    (root / "shell" / "test" / "1_cut.pcd").unlink()    # keep only consistent files
    (root / "shell" / "test" / "2_sink.pcd").unlink()
    (root / "shell" / "gt" / "1_cut.txt").unlink()
    assert cli_main(["data-summary", str(root)]) == 0
    out = capsys.readouterr().out
    assert "| 1 | airplane | 3 | 2 | 2 | 7 | 20 / 20 / 20 | 25 / 40 / 32 |" in out
    assert "7.50% / 20.00% / 13.75%" in out and "bulge_cut 1, sink 1" in out
    assert "| 2 | shell | 1 | 1 | 0 | 2 |" in out
    assert cli_main(["data-summary", str(root), "--json", "--category", "shell"]) == 0
    rows = json.loads(capsys.readouterr().out)["categories"]
    assert [r["category"] for r in rows] == ["shell"] and rows[0]["test_points"] == [15]


def test_data_summary_user_error(tmp_path, capsys):
    assert cli_main(["data-summary", str(tmp_path / "missing")]) == 2
    assert "dataset folder not found" in capsys.readouterr().err


def test_point_count_without_reading_and_error_forms(tmp_path):
    ds = Real3DAD(make_real3d_tree(tmp_path))
    assert [s.point_count() for s in ds.test("airplane")] == [31, 30, 25, 40]
    e = DataError("just a message")
    assert str(e) == "just a message" and e.path is None
    e = DataError(tmp_path / "f.pcd", "broken")
    assert str(e) == f"{tmp_path / 'f.pcd'}: broken" and e.problem == "broken"
    from group3ad.errors import UserError
    assert isinstance(e, UserError) and isinstance(e, ValueError)
