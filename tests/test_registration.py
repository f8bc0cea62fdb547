"""Registration to the template: recovers a known rigid motion, deterministic, unit-scaled."""

import numpy as np
import pytest

from group3ad.config import RegistrationConfig
from group3ad.registration import TemplateRegistrar, resolve_lengths


def _rotation(rx, ry, rz):
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    Rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


def _part(n=20000, seed=0, scale=1.0):
    """An asymmetric bumpy closed surface about 30 mm across (millimetres)."""
    g = np.random.default_rng(seed)
    v = g.normal(size=(n, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    th, ph = np.arctan2(v[:, 1], v[:, 0]), np.arccos(np.clip(v[:, 2], -1, 1))
    r = 15.0 * (1 + 0.2 * np.sin(3 * th) * np.sin(2 * ph) + 0.1 * np.cos(5 * ph) + 0.08 * np.sin(th))
    p = v * r[:, None] * np.array([1.0, 0.75, 0.55])
    return (p - p.mean(0)) * scale


@pytest.fixture(scope="module")
def template():
    return _part(8000, seed=0)


def _fast_cfg(**kw):
    return RegistrationConfig(max_iteration=20000, **kw)


def test_recovers_rotation_and_translation(template):
    R = _rotation(0.4, -1.1, 2.0)
    moved = template @ R.T + np.array([3.0, -2.0, 1.0])
    reg = TemplateRegistrar(template, _fast_cfg(), seed=0)
    res = reg.register(moved)
    back = reg.apply(moved, res.transform)
    assert res.fitness > 0.9
    assert np.abs(back - template).max() < 0.05  # mm: ICP lands on the template itself


def test_registration_is_deterministic(template):
    moved = template @ _rotation(1.0, 0.3, -0.7).T
    a = TemplateRegistrar(template, _fast_cfg(), seed=3).register(moved).transform
    b = TemplateRegistrar(template, _fast_cfg(), seed=3).register(moved).transform
    np.testing.assert_array_equal(a, b)


def test_spacing_units_register_a_cloud_in_metres(template):
    metres = template / 1000.0
    R = _rotation(-0.6, 0.9, 0.2)
    moved = metres @ R.T
    cfg = _fast_cfg(units="spacing")
    reg = TemplateRegistrar(metres, cfg, seed=0)
    assert reg.lengths.voxel < 0.01  # scaled to the data, not 0.5 m
    back = reg(moved)
    assert np.abs(back - metres).max() < 5e-5


def test_lengths_keep_reg3d_ratios_in_spacing_units(template):
    L = resolve_lengths(RegistrationConfig(units="spacing", spacing_scale=4.0), template)
    assert L.normal_radius / L.voxel == pytest.approx(2.0)
    assert L.fpfh_radius / L.voxel == pytest.approx(5.0)
    assert L.ransac_distance / L.voxel == pytest.approx(1.5)
    mm = resolve_lengths(RegistrationConfig(), template)
    assert (mm.voxel, mm.normal_radius, mm.fpfh_radius, mm.ransac_distance) == (0.5, 1.0, 2.5, 0.75)


def test_disabled_registration_is_identity(template):
    reg = TemplateRegistrar(template, RegistrationConfig(enabled=False))
    np.testing.assert_array_equal(reg.register(template + 1).transform, np.eye(4))


def test_state_round_trip_registers_identically(template):
    moved = template @ _rotation(0.2, 0.5, 1.5).T
    reg = TemplateRegistrar(template, _fast_cfg(), seed=0)
    again = TemplateRegistrar.from_state_dict(reg.state_dict(), _fast_cfg())
    np.testing.assert_array_equal(reg.register(moved).transform, again.register(moved).transform)
