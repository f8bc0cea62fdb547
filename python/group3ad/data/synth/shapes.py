"""Procedural mechanical parts in millimetres, 20-40 mm across, as ``Solid`` CSG trees.

Each builder takes a ``Jitter`` that perturbs its dimensions slightly (part-to-part variation of
a production run: about 1.5% per dimension); ``Jitter.none()`` gives the nominal part.
"""

from __future__ import annotations

import numpy as np

from .primitives import (Difference, Extrusion, Revolved, Transformed, Union, box, cylinder,
                         polar_polygon, rotation)


class Jitter:
    """``j(x)`` returns x scaled by a random factor in [1 - rel, 1 + rel]."""

    def __init__(self, rng=None, rel: float = 0.015):
        self.rng, self.rel = rng, rel

    @classmethod
    def none(cls):
        return cls(None, 0.0)

    def __call__(self, x: float) -> float:
        if self.rng is None or self.rel == 0:
            return float(x)
        return float(x) * (1.0 + self.rel * (2 * self.rng.random() - 1))


def gear(j: Jitter):
    """Spur gear with 18 trapezoidal teeth, a hub, a keyed bore and four lightening holes."""
    teeth, root, tip, width = 18, j(12.6), j(15.0), j(7.0)

    def profile(th):
        ph = (th * teeth / (2 * np.pi)) % 1.0
        up = np.clip(ph / 0.12, 0, 1)
        down = np.clip((0.5 - ph) / 0.12, 0, 1)
        return root + (tip - root) * np.minimum(up, down) * (ph < 0.5)

    body = Extrusion(polar_polygon(profile, n=teeth * 40), 0.0, width)
    hub = cylinder(j(6.5), j(-3.0), width + j(3.0))
    bore = cylinder(j(3.0), -6.0, width + 6.0)
    key = box(2.2, j(4.0), -0.9, 0.9, -6.0, width + 6.0)
    pitch, hole = j(9.3), j(1.8)
    holes = [Transformed(cylinder(hole, -1.0, width + 1.0), shift=(pitch * np.cos(a), pitch * np.sin(a), 0))
             for a in np.deg2rad([45, 135, 225, 315])]
    return Difference(Union(body, hub), bore, key, *holes)


def flange(j: Jitter):
    """Pipe flange: disc with a chamfered hub, a bore and six bolt holes."""
    t, hub_r, top = j(4.0), j(9.0), j(12.0)
    body = Revolved([0.0, t, t, top - 1.0, top], [j(17.0), j(17.0), hub_r, hub_r, hub_r - 1.0])
    bore = cylinder(j(5.0), -1.0, top + 1.0)
    pitch, hole = j(13.4), j(1.7)
    holes = [Transformed(cylinder(hole, -1.0, t + 1.0), shift=(pitch * np.cos(a), pitch * np.sin(a), 0))
             for a in np.deg2rad(np.arange(6) * 60.0 + 30.0)]
    return Difference(body, bore, *holes)


def bracket(j: Jitter):
    """L-bracket (angle bracket) with two holes in the base and a slot-like hole in the upright."""
    length, height, thick, width = j(28.0), j(24.0), j(4.0), j(20.0)
    poly = [(0, 0), (length, 0), (length, thick), (thick, thick), (thick, height), (0, height)]
    # profile in the (x, z) plane, extruded along y: local (u, v, w) -> world (x, z, y)
    to_world = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]])
    body = Transformed(Extrusion(poly, -width / 2, width / 2, centre=(thick / 2, thick / 2)), to_world)
    r = j(2.2)
    base_holes = [Transformed(cylinder(r, -1.0, thick + 1.0), shift=(j(19.0), y, 0))
                  for y in (-j(5.5), j(5.5))]
    upright_hole = Transformed(cylinder(j(3.0), -1.0, thick + 1.0), rotation("y", 90.0),
                               shift=(0.0, 0.0, j(15.5)))
    return Difference(body, *base_holes, upright_hole)


def bolt(j: Jitter):
    """Hex bolt: hexagonal head and a shank with thread-like grooves and a chamfered tip."""
    apothem, head_h = j(6.5), j(5.5)

    def hexagon(th):
        return apothem / np.cos(((th + np.pi / 6) % (np.pi / 3)) - np.pi / 6)

    head = Extrusion(polar_polygon(hexagon, n=360), 0.0, head_h)
    length, r_out, r_in, pitch = j(24.0), j(4.0), j(3.4), 1.25
    zs, rs = [-length, -length + 0.6], [r_in - 0.4, r_in]
    z = -length + 0.6
    while z + pitch < -2.0:
        zs += [z + pitch / 2, z + pitch]
        rs += [r_out, r_in]
        z += pitch
    zs += [z + 0.3, 0.6]
    rs += [r_out, r_out]
    shank = Revolved(zs, rs)
    washer = cylinder(apothem * 0.95, -0.5, 0.05)  # washer face under the head
    return Union(head, washer, shank)


def knob(j: Jitter):
    """Fluted control knob with a domed top, a pointer ridge, a blind bore and a set-screw hole."""
    r, flutes, h = j(12.0), 12, j(10.0)
    grip = Extrusion(polar_polygon(lambda th: r * (1 + 0.06 * np.cos(flutes * th)), n=720), 0.0, h)
    dome = Revolved([h - 0.5, h + 1.0, h + 2.0, h + 2.8, h + 3.2],
                    [r * 0.93, r * 0.86, r * 0.7, r * 0.45, 0.0])
    ridge = box(j(2.0), j(9.5), -0.8, 0.8, h, h + j(2.6))
    bore = cylinder(j(3.0), -1.0, j(7.0))
    set_screw = Transformed(cylinder(j(1.2), 0.0, r + 2.0), rotation("y", 90.0), shift=(0.0, 0.0, j(3.5)))
    return Difference(Union(grip, dome, ridge), bore, set_screw)


def pulley(j: Jitter):
    """V-belt pulley with a long hub, a bore and five lightening holes."""
    R, groove = j(14.0), j(10.6)
    rim = Revolved([0.0, 1.5, 4.5, 5.0, 8.0, 9.5], [R, R, groove, groove, R, R])
    hub = cylinder(j(6.0), j(-2.5), 9.5 + j(2.5))
    bore = cylinder(j(3.0), -4.0, 14.0)
    pitch, hole = j(8.2), j(1.7)
    holes = [Transformed(cylinder(hole, -1.0, 10.5), shift=(pitch * np.cos(a), pitch * np.sin(a), 0))
             for a in np.deg2rad(np.arange(5) * 72.0)]
    return Difference(Union(rim, hub), bore, *holes)


PROCEDURAL = {"gear": gear, "flange": flange, "bracket": bracket, "bolt": bolt, "knob": knob,
              "pulley": pulley}
