"""Anomaly-ShapeNet reader: ``<root>/pcd/<category>/{train,test,GT}`` (or ``<root>/<category>/...``).

- train/: every point file (the release names them ``*template*``);
- test/: a name containing ``positive`` is a good sample, anything else defective; the defect
  kind is the name without the category prefix and the sample number
  (``ashtray0_bulge3`` -> ``bulge``, ``1_bulge`` -> ``bulge``);
- GT/<stem>.txt: ``x y z label`` rows; the delimiter differs between releases (comma or
  space) and is detected per file. Defective samples take points and labels from it.
"""

from __future__ import annotations

from pathlib import Path

from .dataset import (Dataset, Sample, category_dirs, defect_kind_from_stem, ensure_nonempty,
                      point_files)
from .errors import DataError


def _category_root(root: Path) -> Path:
    return root / "pcd" if (root / "pcd").is_dir() else root


def looks_like_anomaly_shapenet(root: Path) -> bool:
    """True when the tree has a ``pcd/`` folder of categories, or categories with a ``GT``
    folder (upper case) and ``positive`` test names."""
    base = _category_root(root)
    if not base.is_dir():
        return False
    cats = category_dirs(base)
    if base != root and cats:
        return True
    for cat in cats:
        # compare listed names: on a case-insensitive file system "gt" / "GT" both exist
        if any(p.name == "GT" for p in cat.iterdir()) or \
                any("positive" in p.name.lower() for p in point_files(cat / "test")):
            return True
    return False


class AnomalyShapeNet(Dataset):
    """An Anomaly-ShapeNet tree."""

    kind = "anomaly-shapenet"

    def __init__(self, root):
        super().__init__(Path(root))
        if not self.root.is_dir():
            raise DataError(self.root, "dataset folder not found")
        base = _category_root(self.root)
        for cat_dir in category_dirs(base):
            cat = cat_dir.name
            train = [Sample(cat, "train", p.stem, p, None, False, None)
                     for p in point_files(cat_dir / "train")]
            if not train:
                raise DataError(cat_dir / "train", "no training point clouds")
            gt_dir = cat_dir / "GT" if (cat_dir / "GT").is_dir() else cat_dir / "gt"
            test = []
            for p in point_files(cat_dir / "test"):
                good = "positive" in p.name.lower()
                gt = gt_dir / f"{p.stem}.txt"
                kind = None if good else defect_kind_from_stem(p.stem[len(cat):] if p.stem.startswith(cat) else p.stem)
                test.append(Sample(cat, "test", p.stem, p, gt if gt.is_file() else None, not good, kind))
            self._index[cat] = (train, test)
        ensure_nonempty(self.root, self._index, "Anomaly-ShapeNet")
