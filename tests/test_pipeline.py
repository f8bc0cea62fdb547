"""Group3AD fit / score / save / load on tiny clouds, with a tiny encoder."""

import numpy as np
import pytest
import torch

from group3ad import encoding
from group3ad.config import Group3ADConfig
from group3ad.errors import UserError
from group3ad.pipeline import MODEL_FORMAT_VERSION, Group3AD, leave_one_out


class TinyEncoder(torch.nn.Module):
    """forward(neighborhood (B,G,k,3), center (B,G,3)) -> (B,G,8): a seeded random MLP over
    pooled local geometry (deterministic, no training needed)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.lin = torch.nn.Linear(6, 8)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(8, 6, generator=g))
            self.lin.bias.zero_()

    def forward(self, neighborhood, center):
        spread = neighborhood.abs().mean(2)
        peak = neighborhood.norm(dim=-1).max(2).values[..., None].expand_as(spread)
        return torch.tanh(self.lin(torch.cat([spread, peak], -1)))


def _blob(n, seed, bump=False):
    g = np.random.default_rng(seed)
    v = g.normal(size=(n, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    th = np.arctan2(v[:, 1], v[:, 0])
    r = 10 * (1 + 0.2 * np.sin(3 * th) + 0.1 * v[:, 2])
    p = v * r[:, None] * np.array([1.0, 0.8, 0.6])
    labels = np.zeros(n, np.uint8)
    if bump:
        d = np.linalg.norm(p - p[0], axis=1)
        labels = (d < 3.0).astype(np.uint8)
        p[labels > 0] *= 1.3
    return p, labels


def _with_stray_points(cloud):
    """``cloud`` (N,3) plus 3 scanner outliers, its first 3 points lifted 16 units off the surface
    (the last 3 rows)."""
    stray = cloud[:3] + np.array([[0.0, 0.0, 16.0], [0.1, 0.0, 16.0], [0.0, 0.1, 16.0]])
    return np.concatenate([cloud, stray])


def _cfg(**kw):
    cfg = Group3ADConfig(n_groups_train=64, n_groups_test=96, group_size=16, memory_size=100,
                         coord_memory_size=2000, use_iun_ian=False, train_epochs=0, device="cpu")
    cfg.registration.enabled = False
    return cfg.update(kw)


@pytest.fixture(autouse=True)
def tiny_encoder(monkeypatch):
    monkeypatch.setattr(encoding, "new_encoder", lambda seed: TinyEncoder())


@pytest.fixture(scope="module")
def data():
    train = [_blob(3000, s)[0] for s in range(3)]
    good = _blob(3000, 10)
    bad = _blob(3000, 11, bump=True)
    return train, good, bad


def test_fit_score_shapes_and_anomaly_ranks_higher(data):
    train, good, bad = data
    model = Group3AD(_cfg(use_agcs=False)).fit(train, show_progress=False)
    ps, obj = model.score(bad[0])
    assert ps.shape == (3000,) and ps.dtype == np.float64 and isinstance(obj, float)
    _, obj_good = model.score(good[0])
    assert obj > obj_good
    assert ps[bad[1] > 0].mean() > ps[bad[1] == 0].mean()


def test_feature_bank_draws_n_groups_bank_per_training_cloud(data):
    train, _, _ = data
    # memory_size above the feature count: the coreset keeps every row, so the bank's size is
    # the number of groups it was drawn from.
    default = Group3AD(_cfg(memory_size=10_000)).fit(train, show_progress=False)
    assert len(default.feature_bank) == 3 * 96  # n_groups_test, as Reg3D-AD
    more = Group3AD(_cfg(memory_size=10_000, n_groups_bank=160)).fit(train, show_progress=False)
    assert len(more.feature_bank) == 3 * 160
    assert _cfg(n_groups_bank=160).bank_groups == 160 and _cfg().bank_groups == 96
    assert Group3ADConfig.demo().bank_groups == 4096
    for bad in (0, -3, 2.5, "many"):
        with pytest.raises(UserError, match="n_groups_bank"):
            _cfg(n_groups_bank=bad)


def test_branches_and_object_score_is_max(data):
    train, _, bad = data
    model = Group3AD(_cfg(use_agcs=False)).fit(train, show_progress=False)
    br = model.score_branches(bad[0])
    assert set(br) == {"feature", "coord"}
    for pts, obj in br.values():  # a clean surface: every group is supported
        assert obj == pts.max()
    nocoord = Group3AD(_cfg(use_agcs=False, use_coordinates=False)).fit(train, show_progress=False)
    assert set(nocoord.score_branches(bad[0])) == {"feature"}


def test_stray_points_do_not_set_the_object_score(data):
    """Three scanner outliers far off a good surface: FPS gives them a centre whose group
    spans the gap, so they hold the cloud's highest scores. The plain max (support_ratio=0,
    Reg3D-AD) then ranks the good cloud above the defective one; the supported max does not,
    and the point scores are the same either way."""
    train, good, bad = data
    noisy = _with_stray_points(good[0])
    plain = Group3AD(_cfg(use_agcs=False, support_ratio=0)).fit(train, show_progress=False)
    robust = Group3AD(_cfg(use_agcs=False)).fit(train, show_progress=False)
    for name in ("feature", "coord"):
        p_pts, p_obj = plain.score_branches(noisy)[name]
        r_pts, r_obj = robust.score_branches(noisy)[name]
        np.testing.assert_array_equal(p_pts, r_pts)
        assert p_obj == p_pts.max() == p_pts[-3:].max()
        assert r_obj == p_pts[:-3].max() < p_obj
    assert plain.score(noisy)[1] > plain.score(bad[0])[1]
    assert robust.score(noisy)[1] < robust.score(bad[0])[1]


@pytest.mark.parametrize("kind", ["patchcore", "patchcore_raw", "btf"])
def test_baselines_use_the_same_object_score_rule(data, kind):
    from group3ad.baselines import FPFHMethod

    train, good, _ = data
    noisy = _with_stray_points(good[0])
    lengths = {"units": "spacing", "spacing_scale": 2.0}
    plain = FPFHMethod(_cfg(use_agcs=False, support_ratio=0, registration=lengths), kind)
    robust = FPFHMethod(_cfg(use_agcs=False, registration=lengths), kind)
    plain.fit(train, show_progress=False)
    robust.fit(train, show_progress=False)
    for name, (p_pts, p_obj) in plain.score_branches(noisy).items():
        r_pts, r_obj = robust.score_branches(noisy)[name]
        np.testing.assert_array_equal(p_pts, r_pts)
        assert p_obj == p_pts.max()
        assert r_obj == p_pts[:-3].max() <= p_obj


def test_idw_interpolation_is_smooth_and_bounded(data):
    train, _, bad = data
    model = Group3AD(_cfg(use_agcs=False, interpolation="idw", idw_k=3)).fit(train, show_progress=False)
    near = Group3AD(_cfg(use_agcs=False)).fit(train, show_progress=False)
    a, b = model.score_branches(bad[0])["feature"][0], near.score_branches(bad[0])["feature"][0]
    assert a.min() >= b.min() - 1e-9 and a.max() <= b.max() + 1e-9
    assert len(np.unique(a)) > len(np.unique(b))


def test_save_load_round_trip(tmp_path, data):
    train, _, bad = data
    model = Group3AD(_cfg(use_agcs=False)).fit(train, show_progress=False)
    path = model.save(str(tmp_path / "m.g3ad"))
    again = Group3AD.load(path)
    a, b = model.score(bad[0]), again.score(bad[0])
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]
    assert again.config.to_dict() == model.config.to_dict()


def test_load_rejects_other_versions_and_other_files(tmp_path, data):
    train, _, _ = data
    model = Group3AD(_cfg(use_agcs=False)).fit(train[:1], show_progress=False)
    state = model.state_dict()
    state["format_version"] = MODEL_FORMAT_VERSION + 1
    state["group3ad_version"] = "9.9.9"
    torch.save(state, tmp_path / "new.g3ad")
    with pytest.raises(UserError, match="9.9.9.*refit"):
        Group3AD.load(str(tmp_path / "new.g3ad"))
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a group3ad model"):
        Group3AD.load(str(tmp_path / "other.pt"))
    (tmp_path / "junk.g3ad").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a group3ad model"):
        Group3AD.load(str(tmp_path / "junk.g3ad"))
    with pytest.raises(UserError, match="does not exist"):
        Group3AD.load(str(tmp_path / "missing.g3ad"))


def test_user_errors(data):
    with pytest.raises(UserError, match="empty"):
        Group3AD(_cfg()).fit([], show_progress=False)
    with pytest.raises(UserError, match="not fitted"):
        Group3AD(_cfg()).score(data[1][0])
    with pytest.raises(UserError, match="NaN"):
        Group3AD(_cfg()).fit([np.full((10, 3), np.nan)], show_progress=False)
    with pytest.raises(UserError, match="alpha"):
        Group3AD(_cfg(alpha=1.5))


def test_deterministic_two_runs(data):
    train, _, bad = data
    a = Group3AD(_cfg()).fit(train, show_progress=False).score(bad[0])
    b = Group3AD(_cfg()).fit(train, show_progress=False).score(bad[0])
    np.testing.assert_array_equal(a[0], b[0])


def test_leave_one_out_skips_self_matches():
    d = np.array([[0.0, 2.0], [1.0, 3.0], [0.0, 4.0]])
    np.testing.assert_array_equal(leave_one_out(d, np.array([True, False, False])), [2.0, 1.0, 0.0])


def test_workspace_encoder_cache_keys_on_registration():
    # evaluate() shares encoders between methods of a category; an encoder pretrained on the
    # unregistered clouds (PatchCore(PointMAE)) must not be reused by a registered method, or a
    # method's result would depend on which methods ran before it.
    from group3ad.evaluate import Workspace

    ws = Workspace()
    clouds = [torch.from_numpy(_blob(500, s)[0]).float() for s in range(2)]
    registered = _cfg()
    registered.registration.enabled = True
    unregistered = _cfg()
    a = ws.encoder(unregistered, clouds, "cpu")
    b = ws.encoder(registered, clouds, "cpu")
    assert a is not b
    assert ws.encoder(registered, clouds, "cpu") is b and ws.encoder(_cfg(), clouds, "cpu") is a
