"""The group3ad command: user errors exit 2 with a message and no traceback; a tiny fit and
score end to end."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from group3ad import cli, encoding
from group3ad.config import Group3ADConfig
from group3ad.pipeline import MODEL_FORMAT_VERSION

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_pipeline import TinyEncoder, _blob  # noqa: E402


def _write_dataset(root, with_gt=True, empty_train=False):
    from group3ad.data import write_labelled_txt, write_pcd

    for cat in ("blob",):
        for d in ("train", "test", "gt"):
            os.makedirs(os.path.join(root, cat, d), exist_ok=True)
        if not empty_train:
            for i in range(2):
                write_pcd(os.path.join(root, cat, "train", f"{i}_template.pcd"), _blob(2000, i)[0])
        write_pcd(os.path.join(root, cat, "test", "0_good.pcd"), _blob(2000, 10)[0])
        pts, lab = _blob(2000, 11, bump=True)
        write_pcd(os.path.join(root, cat, "test", "1_bulge.pcd"), pts)
        if with_gt:
            write_labelled_txt(os.path.join(root, cat, "gt", "1_bulge.txt"), pts, lab)
    return str(root)


TINY = {"n_groups_train": 32, "n_groups_test": 48, "group_size": 16, "memory_size": 64,
        "coord_memory_size": 500, "use_iun_ian": False, "use_agcs": False, "train_epochs": 0,
        "pretrain_epochs": 0, "registration": {"enabled": False}}


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY))
    return str(path)


@pytest.fixture(autouse=True)
def tiny_encoder(monkeypatch):
    monkeypatch.setattr(encoding, "new_encoder", lambda seed: TinyEncoder())
    monkeypatch.setenv("GROUP3AD_NO_PROGRESS", "1")


def _run(argv, capsys):
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_unknown_category(tmp_path, capsys, tiny_config):
    data = _write_dataset(tmp_path / "d")
    rc, _, err = _run(["evaluate", "--data", data, "--category", "teapot", "--config", tiny_config], capsys)
    assert rc == 2 and "unknown category 'teapot'" in err and "blob" in err
    rc, _, err = _run(["fit", "--data", data, "--category", "teapot"], capsys)
    assert rc == 2 and "teapot" in err


def test_empty_training_set(tmp_path, capsys, tiny_config):
    data = _write_dataset(tmp_path / "d", empty_train=True)
    rc, _, err = _run(["fit", "--data", data, "--category", "blob", "--config", tiny_config], capsys)
    assert rc == 2 and ("train" in err) and "Traceback" not in err


def test_data_without_gt(tmp_path, capsys, tiny_config):
    data = _write_dataset(tmp_path / "d", with_gt=False)
    rc, _, err = _run(["evaluate", "--data", data, "--config", tiny_config, "--no-figures",
                       "--methods", "Group3AD", "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "gt" in err.lower()


def test_missing_data_root_and_bad_config(tmp_path, capsys):
    rc, _, err = _run(["evaluate", "--data", str(tmp_path / "nowhere")], capsys)
    assert rc == 2 and "nowhere" in err
    bad = tmp_path / "bad.json"
    bad.write_text('{"n_groups_tset": 5}')
    rc, _, err = _run(["evaluate", "--data", str(tmp_path), "--config", str(bad)], capsys)
    assert rc == 2 and "n_groups_tset" in err
    bad.write_text("{not json")
    rc, _, err = _run(["evaluate", "--data", str(tmp_path), "--config", str(bad)], capsys)
    assert rc == 2 and "not valid JSON" in err
    rc, _, err = _run(["evaluate", "--data", str(tmp_path), "--methods", "Nope"], capsys)
    assert rc == 2 and "unknown method" in err


def test_fit_score_and_model_from_another_version(tmp_path, capsys, tiny_config):
    data = _write_dataset(tmp_path / "d")
    model = str(tmp_path / "blob.g3ad")
    rc, out, err = _run(["fit", "--data", data, "--category", "blob", "--config", tiny_config,
                         "--out", model, "--seed", "3"], capsys)
    assert rc == 0, err
    test_file = os.path.join(data, "blob", "test", "1_bulge.pcd")
    prefix = str(tmp_path / "scored")
    rc, out, err = _run(["score", test_file, "--model", model, "--out", prefix], capsys)
    assert rc == 0, err
    summary = json.loads(open(prefix + ".json").read())
    assert summary["n_points"] == 2000 and np.isfinite(summary["object_score"])
    assert summary["registration"] is None  # registration is off in the tiny config
    import open3d as o3d

    ply = o3d.io.read_point_cloud(prefix + ".ply")
    assert len(ply.points) == 2000 and ply.has_colors()
    state = torch.load(model, weights_only=True)
    assert state["config"]["seed"] == 3
    state["format_version"] = MODEL_FORMAT_VERSION + 1
    torch.save(state, tmp_path / "future.g3ad")
    rc, _, err = _run(["score", test_file, "--model", str(tmp_path / "future.g3ad")], capsys)
    assert rc == 2 and "refit" in err
    rc, _, err = _run(["score", str(tmp_path / "none.pcd"), "--model", model], capsys)
    assert rc == 2 and "does not exist" in err


def test_score_reports_registration_and_warns_when_unaligned(tmp_path, capsys):
    """With registration on, score's JSON carries the fitness; a cloud that does not fit the
    template (a random box of points) is flagged on stderr and in the JSON, not silently scored."""
    from group3ad.data import write_pcd

    data = _write_dataset(tmp_path / "d")
    cfg = dict(TINY, registration={"enabled": True, "units": "spacing", "max_iteration": 2000})
    cfg_path = tmp_path / "reg.json"
    cfg_path.write_text(json.dumps(cfg))
    model = str(tmp_path / "blob.g3ad")
    rc, _, err = _run(["fit", "--data", data, "--category", "blob", "--config", str(cfg_path),
                       "--out", model], capsys)
    assert rc == 0, err
    part = os.path.join(data, "blob", "test", "0_good.pcd")
    rc, _, err = _run(["score", part, "--model", model, "--out", str(tmp_path / "part")], capsys)
    reg = json.loads((tmp_path / "part.json").read_text())["registration"]
    assert rc == 0 and reg["aligned"] and reg["fitness"] > 0.9 and "warning" not in err
    box = str(tmp_path / "box.pcd")
    write_pcd(box, np.random.default_rng(0).uniform(-10, 10, size=(2000, 3)))
    rc, _, err = _run(["score", box, "--model", model, "--out", str(tmp_path / "box")], capsys)
    reg = json.loads((tmp_path / "box.json").read_text())["registration"]
    assert rc == 0 and not reg["aligned"] and reg["fitness"] < 0.9
    assert reg["attempts"] == 5  # every restart was tried before giving up
    assert reg["found_by"] in ("ransac", "rotation_search")
    assert "warning: registration fitness" in err and "unreliable" in err


def test_evaluate_writes_json_markdown_and_figures(tmp_path, capsys, tiny_config):
    data = _write_dataset(tmp_path / "d")
    out_dir = tmp_path / "o"
    rc, out, err = _run(["evaluate", "--data", data, "--config", tiny_config, "--out", str(out_dir),
                         "--methods", "PatchCore(FPFH)", "Group3AD", "--name", "Anomaly-ShapeNet"], capsys)
    assert rc == 0, err
    assert "Table 1: O-AUROC on Anomaly-ShapeNet" in out and "| Group3AD |" in out
    assert "Table 1: O-AUROC on Anomaly-ShapeNet" in (out_dir / "results.md").read_text()
    rep = json.loads((out_dir / "results.json").read_text())
    assert set(rep["methods"]) == {"PatchCore(FPFH)", "Group3AD"}
    assert rep["methods"]["Group3AD"]["categories"]["blob"]["O-AUROC"] in (0.0, 0.5, 1.0)
    from sklearn.metrics import roc_auc_score

    for method in rep["methods"].values():  # per-cloud object scores, consistent with O-AUROC
        objects = method["objects"]["blob"]
        assert [(o["name"], o["anomalous"]) for o in objects] == [("0_good", False), ("1_bulge", True)]
        auroc = roc_auc_score([o["anomalous"] for o in objects], [o["score"] for o in objects])
        assert auroc == pytest.approx(method["categories"]["blob"]["O-AUROC"])
        assert all(o["branches"] and all(np.isfinite(list(o["branches"].values()))) for o in objects)
    assert set(rep["methods"]["Group3AD"]["objects"]["blob"][0]["branches"]) == {"coord", "feature"}
    for method in rep["methods"].values():  # every fusion of the same branch scores
        by = method["by_fusion"]
        assert set(by) == {"testset", "rank", "train"}
        assert by["testset"]["categories"] == method["categories"] and by["testset"]["mean"] == method["mean"]
        assert all(0.0 <= by[f]["mean"]["P-AUROC"] <= 1.0 for f in by)
    assert "testset O-AUROC | testset P-AUROC | train O-AUROC" in (out_dir / "results.md").read_text()
    assert (out_dir / "roc_blob.png").stat().st_size > 1000
    assert (out_dir / "scored_blob.png").stat().st_size > 1000


@pytest.mark.slow
def test_real_process_prints_no_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "python"), ROOT]))
    r = subprocess.run([sys.executable, "-m", "group3ad.cli", "fit", "--data", str(tmp_path / "x"),
                        "--category", "c"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "group3ad fit: error:" in r.stderr


def test_config_file_yaml_round_trip(tmp_path):
    cfg = Group3ADConfig.demo(seed=7)
    cfg.save(str(tmp_path / "c.yaml"))
    assert Group3ADConfig.from_file(str(tmp_path / "c.yaml")).to_dict() == cfg.to_dict()
    cfg.save(str(tmp_path / "c.json"))
    assert Group3ADConfig.from_file(str(tmp_path / "c.json")).to_dict() == cfg.to_dict()
