"""The common dataset API: ``Cloud``, ``Sample``, ``Dataset`` and ``open_dataset``.

A dataset lists its samples cheaply (file names only) and reads a cloud only when
``Sample.load()`` is called: a Real3D-AD category is about 100 clouds of up to 1.6M points.
Every list is in natural sort order of the file names (``2_good`` before ``10_good``), so the
first training sample (the usual registration template) never depends on the file system's
listing order.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DataError
from .pcd_io import POINT_SUFFIXES, read_labelled_txt, read_point_count, read_points


def natural_key(name: str):
    """Sort key: digit runs compare as numbers, the rest as text; ties by the raw name."""
    parts = re.split(r"(\d+)", name)
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts], name


@dataclass
class Cloud:
    """One loaded point cloud.

    ``points``: float64 (N, 3), in the file's coordinates (no centring, no scaling).
    ``labels``: uint8 (N,), 1 = anomalous point; all zeros for good and training samples.
    ``name``: the sample name (file stem). ``dropped_nan``: NaN/Inf points dropped on load.
    """

    points: np.ndarray
    labels: np.ndarray
    name: str
    dropped_nan: int = 0

    def __len__(self) -> int:
        return int(self.points.shape[0])

    @property
    def anomalous_fraction(self) -> float:
        return float(self.labels.mean()) if len(self) else 0.0

    def centered(self) -> "Cloud":
        """A copy with the mean subtracted (the reference loader's only preprocessing)."""
        return Cloud(self.points - self.points.mean(axis=0), self.labels.copy(), self.name,
                     self.dropped_nan)


@dataclass(frozen=True)
class Sample:
    """One sample of a dataset: where it is and what it is. ``load()`` reads the file(s).

    For a defective sample with a ground-truth file the points AND labels come from the gt
    file (as the Real3D-AD reference loader does); the point cloud file, when present, must
    have the same number of points. Good and training samples: the cloud file, labels all 0.
    """

    category: str
    split: str  # "train" or "test"
    name: str
    path: Path
    gt_path: Path | None
    is_anomalous: bool
    defect_kind: str | None

    def point_count(self) -> int:
        """Number of points, from the file header where possible (no full read for PCD/PLY)."""
        if self.path.exists() or self.gt_path is None:
            return read_point_count(self.path)
        return read_labelled_txt(self.gt_path, drop_nan=True)[0].shape[0]

    def load(self, drop_nan: bool = False) -> Cloud:
        """Reads the sample now. Raises ``DataError`` naming the file on any problem; NaN/Inf
        points raise unless ``drop_nan`` (then they are dropped, a warning says how many)."""
        if self.is_anomalous:
            if self.gt_path is None:
                raise DataError(self.path, "defective test sample has no ground-truth file")
            pts, labels, dropped = read_labelled_txt(self.gt_path, drop_nan=drop_nan)
            if self.path.exists():
                n_cloud = read_point_count(self.path)
                n_gt = pts.shape[0] + dropped
                if n_cloud != n_gt:
                    raise DataError(self.gt_path, f"ground truth has {n_gt} points but the point "
                                                  f"cloud {self.path} has {n_cloud}")
        else:
            pts, dropped = read_points(self.path, drop_nan=drop_nan)
            labels = np.zeros(pts.shape[0], dtype=np.uint8)
        if dropped:
            warnings.warn(f"{self.gt_path if self.is_anomalous else self.path}: dropped {dropped} "
                          f"NaN/Inf points", stacklevel=2)
        return Cloud(pts, labels, self.name, dropped)


@dataclass
class Dataset:
    """Base of the dataset readers: subclasses fill ``_index`` = {category: (train, test)}."""

    root: Path
    _index: dict = field(default_factory=dict, repr=False)

    kind = "dataset"

    def categories(self) -> list[str]:
        return sorted(self._index, key=natural_key)

    def _entry(self, category: str):
        if category not in self._index:
            raise DataError(self.root, f"unknown category {category!r}; known: "
                                       f"{', '.join(self.categories()) or '(none)'}")
        return self._index[category]

    def train(self, category: str) -> list[Sample]:
        """Training (good) samples of a category, natural-sorted by name."""
        return list(self._entry(category)[0])

    def test(self, category: str) -> list[Sample]:
        """Test samples of a category, natural-sorted by name."""
        return list(self._entry(category)[1])

    def samples(self):
        """Every sample, category by category, train before test."""
        for cat in self.categories():
            yield from self.train(cat)
            yield from self.test(cat)


def point_files(folder: Path) -> list[Path]:
    """Point-cloud files of a folder (by suffix), natural-sorted by name."""
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in POINT_SUFFIXES]
    return sorted(files, key=lambda p: natural_key(p.name))


def open_dataset(root) -> Dataset:
    """Opens a Real3D-AD or Anomaly-ShapeNet tree, detecting which from the layout.

    Anomaly-ShapeNet: ``root/pcd/<cat>/{train,test,GT}`` or ``root/<cat>/{train,test,GT}``
    (upper-case ``GT``); Real3D-AD: ``root/<cat>/{train,test,gt}``.
    """
    from .anomaly_shapenet import AnomalyShapeNet, looks_like_anomaly_shapenet
    from .real3d import Real3DAD

    root = Path(root)
    if not root.exists():
        raise DataError(root, "dataset folder not found")
    if not root.is_dir():
        raise DataError(root, "not a folder")
    if looks_like_anomaly_shapenet(root):
        return AnomalyShapeNet(root)
    return Real3DAD(root)


def category_dirs(root: Path) -> list[Path]:
    """Sub-folders of root that hold a train/ or test/ folder."""
    return sorted((d for d in root.iterdir() if d.is_dir()
                   and ((d / "train").is_dir() or (d / "test").is_dir())),
                  key=lambda d: natural_key(d.name))


def defect_kind_from_stem(stem: str) -> str:
    """``482_bulge_cut`` -> ``bulge_cut``; ``ashtray0_bulge3`` -> ``bulge``: drops the sample
    number and the category prefix where the name carries them."""
    s = re.sub(r"^\d+[_-]?", "", stem)
    s = re.sub(r"\d+$", "", s)
    return s.strip("_-") or stem


def ensure_nonempty(root: Path, index: dict, what: str) -> None:
    if not index:
        raise DataError(root, f"no {what} categories found (expected <category>/train and "
                              f"<category>/test folders)")


__all__ = ["Cloud", "Sample", "Dataset", "open_dataset", "natural_key", "point_files",
           "category_dirs", "defect_kind_from_stem"]
