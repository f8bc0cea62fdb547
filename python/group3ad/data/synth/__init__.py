"""Synthetic Real3D-AD-format benchmark: ``generate(out, preset, seed)`` or ``group3ad synth``.

Procedural mechanical parts (``shapes``: gear, flange, bracket, bolt, knob, pulley) and shipped
meshes (``meshes``: airplane, fish, duck, penguin, cow, imu), scanned completely for training and
one-sided from a random viewpoint for testing (``scan``), with bulge, sink, cut and added-material
defects and exact per-point labels (``defects``).
"""

from .generate import CATALOG, PRESETS, Preset, generate

__all__ = ["CATALOG", "PRESETS", "Preset", "generate"]
