"""Fake anomalies (eqs. 1-6), Algorithm 1 training (IUN then IAN) and Point-MAE pretraining on a
tiny synthetic set: the losses go down, runs repeat exactly, checkpoints load."""

import numpy as np
import open3d as o3d
import pytest
import torch
from scipy.stats import entropy

import group3ad_ext

from group3ad.model import (Group3ADTrainConfig, PointMAEEncoder, PretrainConfig, anomaly_center,
                            feature_distribution, extract_group_features, fpfh_entropy, load_encoder,
                            make_fake_anomaly, pretrain_encoder, train_group3ad)

from model_shapes import one_thread, shape_cloud  # noqa: F401  (autouse fixture)


def small_encoder():
    return PointMAEEncoder(trans_dim=48, depth=12, num_heads=6)


@pytest.fixture(scope="module")
def clouds():
    return [shape_cloud(k, 2000, seed=i) for i, k in enumerate(["sphere", "box", "torus"])]


def test_fpfh_entropy_hand_values():
    h = torch.zeros(3, 33, dtype=torch.float64)
    h[0] = 1.0
    h[1, 4] = 100.0
    torch.testing.assert_close(fpfh_entropy(h), torch.tensor([np.log(33.0), 0.0, 0.0], dtype=torch.float64))


def test_anomaly_centre_is_open3d_fpfh_entropy_argmax():
    pts = shape_cloud("box", 1500, seed=4)
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts.double().numpy()))
    # FPFH depends on the normals' signs, which are arbitrary for unoriented PCA normals: give
    # Open3D the same normals so the oracle checks the FPFH, the entropy and the argmax
    pcd.normals = o3d.utility.Vector3dVector(group3ad_ext.normals(pts, radius=None, max_nn=30).double().numpy())
    radius = 10.0 * group3ad_ext.point_spacing(pts)
    f = np.asarray(o3d.pipelines.registration.compute_fpfh_feature(
        pcd, o3d.geometry.KDTreeSearchParamHybrid(radius=radius, max_nn=100)).data).T
    assert anomaly_center(pts) == int(np.argmax(entropy(f.T + 0.0, axis=0)))


def test_fake_anomaly_union_region_and_seed():
    pts = shape_cloud("torus", 3000, seed=2)
    a = make_fake_anomaly(pts, seed=5, center_index=17)
    m = round(a.ratio * 3000)
    assert 0.01 <= a.ratio <= 0.10 and 0.01 <= a.variance <= 0.05
    assert a.points.shape == (3000 + m, 3) and int(a.mask.sum()) == m and a.mask[3000:].all()
    assert torch.equal(a.points[:3000], pts)                         # P is kept: P U A
    d = (pts - pts[17]).norm(dim=1)
    region = torch.sort(d.double() ** 2, stable=True).indices[:m]
    assert d[region].max() <= d[~torch.isin(torch.arange(3000), region)].min()  # the m nearest
    b = make_fake_anomaly(pts, seed=5, center_index=17)
    assert torch.equal(a.points, b.points) and a.ratio == b.ratio
    c = make_fake_anomaly(pts, seed=6, center_index=17)
    assert c.ratio != a.ratio


def test_fake_anomaly_replace_and_noise_scale():
    pts = shape_cloud("sphere", 4000, seed=1)
    a = make_fake_anomaly(pts, seed=0, ratio_range=(0.1, 0.1), variance_range=(0.04, 0.04),
                          noise_unit=0.5, combine="replace", center_index=0)
    assert a.points.shape == pts.shape and int(a.mask.sum()) == 400
    assert torch.equal(a.points[~a.mask], pts[~a.mask])
    noise = (a.points[a.mask] - pts[a.mask]).double()
    assert noise.std().item() == pytest.approx(0.2 * 0.5, rel=0.1)   # sigma * noise_unit
    assert abs(noise.mean().item()) < 0.02


@pytest.mark.parametrize("kw, name", [({"ratio_range": (0.0, 0.1)}, "ratio_range"),
                                      ({"variance_range": (0.05, 0.01)}, "variance_range"),
                                      ({"noise_unit": 0.0}, "noise_unit"), ({"combine": "add"}, "combine"),
                                      ({"center_index": 99}, "center_index")])
def test_fake_anomaly_bad_arguments(kw, name):
    with pytest.raises(ValueError, match=name):
        make_fake_anomaly(torch.randn(50, 3), **kw)


def test_training_lowers_both_losses_and_writes_checkpoints(clouds, tmp_path):
    torch.manual_seed(0)
    enc = small_encoder()
    before = feature_distribution(extract_group_features(enc, clouds[0], group_size=32, n_groups=64), k=3)
    norm_before = enc.norm.weight.detach().clone()
    cfg = Group3ADTrainConfig(n_groups=64, group_size=32, epochs=4, lr=1e-3, k_max=6, progress=False,
                              checkpoint_dir=str(tmp_path))
    h = train_group3ad(enc, clouds, cfg)
    ev = h["evaluation"]
    assert ev["iun_after"] < ev["iun_before"]
    assert ev["ian_after"] < ev["ian_before"]
    assert [s["phase"] for s in h["steps"]] == ["iun"] * 6 + ["ian"] * 6
    assert all(np.isfinite(s["loss"]) and s["k"] >= 2 for s in h["steps"])
    assert torch.equal(enc.norm.weight, norm_before)   # final LayerNorm frozen
    assert [p.rsplit("/", 1)[-1] for p in h["checkpoints"]] == ["iun.pth", "ian.pth"]
    loaded, report = load_encoder(h["checkpoints"][1])
    assert report.meta["phase"] == "ian" and report.meta["config"]["epochs"] == 4
    for k, v in enc.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    after = feature_distribution(extract_group_features(enc, clouds[0], group_size=32, n_groups=64), k=3)
    assert set(after) == set(before)


def test_training_is_deterministic_under_a_seed(clouds):
    cfg = Group3ADTrainConfig(n_groups=32, group_size=16, epochs=2, lr=1e-3, k_max=4, progress=False,
                              evaluate=False, seed=3)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        enc = small_encoder()
        h = train_group3ad(enc, clouds[:2], cfg)
        runs.append((h["steps"], enc.state_dict()))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(v, runs[1][1][k]) for k, v in runs[0][1].items())


def test_training_rejects_bad_inputs(clouds):
    with pytest.raises(ValueError, match="n_groups"):
        train_group3ad(small_encoder(), [clouds[0][:50]], Group3ADTrainConfig(n_groups=64, group_size=16))
    with pytest.raises(ValueError, match="clouds"):
        train_group3ad(small_encoder(), [], Group3ADTrainConfig())
    with pytest.raises(ValueError, match="k_max"):
        train_group3ad(small_encoder(), clouds, Group3ADTrainConfig(k_max=1))
    with pytest.raises(ValueError, match="unknown"):
        Group3ADTrainConfig.from_dict({"epochz": 3})
    cfg = Group3ADTrainConfig(epochs=6, ratio_range=(0.02, 0.05))
    assert Group3ADTrainConfig.from_dict(cfg.to_dict()) == cfg


def test_pretraining_lowers_chamfer_loss(clouds):
    cfg = PretrainConfig(n_groups=32, group_size=16, epochs=4, steps_per_cloud=2, lr=1e-3, progress=False)
    enc, h = pretrain_encoder(clouds[:2], cfg, encoder=small_encoder())
    means = [e["mean_loss"] for e in h["epochs"]]
    assert means[-1] < means[0] and all(np.isfinite(means))
    assert not enc.training and len(h["steps"]) == 16
    with pytest.raises(ValueError, match="mask_ratio"):
        pretrain_encoder(clouds[:1], PretrainConfig(n_groups=2, mask_ratio=0.3))
