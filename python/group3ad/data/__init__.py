"""Datasets: Real3D-AD and Anomaly-ShapeNet readers, point-cloud file I/O, dataset summaries
and the synthetic Real3D-AD-format benchmark (``group3ad.data.synth``).

    from group3ad.data import open_dataset
    ds = open_dataset("/data/Real3D-AD")      # or Real3DAD(root) / AnomalyShapeNet(root)
    for cat in ds.categories():
        template = ds.train(cat)[0].load()     # natural-sorted: deterministic template choice
        for s in ds.test(cat):
            cloud = s.load()                   # cloud.points (N,3) float64, cloud.labels (N,) uint8
"""

from .anomaly_shapenet import AnomalyShapeNet
from .dataset import Cloud, Dataset, Sample, natural_key, open_dataset
from .errors import DataError
from .pcd_io import (read_labelled_txt, read_point_count, read_points, write_labelled_txt,
                     write_pcd)
from .real3d import Real3DAD
from .summary import summarize

__all__ = ["AnomalyShapeNet", "Cloud", "DataError", "Dataset", "Real3DAD", "Sample",
           "natural_key", "open_dataset", "read_labelled_txt", "read_point_count", "read_points",
           "summarize", "write_labelled_txt", "write_pcd"]
