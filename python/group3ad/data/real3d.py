"""Real3D-AD reader: ``<root>/<category>/{train,test,gt}``.

- train/: files whose name contains ``template`` or ``prototype`` (case-insensitive; the
  reference code globs ``*template*``, the README example says ``1_prototype.pcd``);
- test/: every point file except names containing ``temp`` (skipped, as the reference loader
  does); a name containing ``good`` is a good sample, anything else is defective and its
  defect kind is the name without the sample number (``482_bulge_cut`` -> ``bulge_cut``);
- gt/<stem>.txt: ``x y z label`` rows, space- or comma-separated (detected). A defective
  sample's points and labels come from this file; its .pcd, when present, must agree in size.
"""

from __future__ import annotations

from pathlib import Path

from .dataset import (Dataset, Sample, category_dirs, defect_kind_from_stem, ensure_nonempty,
                      point_files)
from .errors import DataError

TEMPLATE_WORDS = ("template", "prototype")


def _gt_dir(cat_dir: Path) -> Path:
    for name in ("gt", "GT"):
        if (cat_dir / name).is_dir():
            return cat_dir / name
    return cat_dir / "gt"


def _gt_file(gt_dir: Path, stem: str) -> Path | None:
    p = gt_dir / f"{stem}.txt"
    return p if p.is_file() else None


class Real3DAD(Dataset):
    """A Real3D-AD tree (or a synthetic one written by ``group3ad synth``)."""

    kind = "real3d-ad"

    def __init__(self, root):
        super().__init__(Path(root))
        if not self.root.is_dir():
            raise DataError(self.root, "dataset folder not found")
        for cat_dir in category_dirs(self.root):
            self._index[cat_dir.name] = (self._train(cat_dir), self._test(cat_dir))
        ensure_nonempty(self.root, self._index, "Real3D-AD")

    @staticmethod
    def _train(cat_dir: Path) -> list[Sample]:
        files = [p for p in point_files(cat_dir / "train")
                 if any(w in p.name.lower() for w in TEMPLATE_WORDS)]
        if not files:
            raise DataError(cat_dir / "train", "no training files (names must contain "
                                               "'template' or 'prototype')")
        return [Sample(cat_dir.name, "train", p.stem, p, None, False, None) for p in files]

    @staticmethod
    def _test(cat_dir: Path) -> list[Sample]:
        gt_dir = _gt_dir(cat_dir)
        out = []
        for p in point_files(cat_dir / "test"):
            low = p.name.lower()
            if "temp" in low:
                continue
            good = "good" in low
            out.append(Sample(cat_dir.name, "test", p.stem, p, _gt_file(gt_dir, p.stem),
                              not good, None if good else defect_kind_from_stem(p.stem)))
        return out
