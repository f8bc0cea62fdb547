"""group3ad_ext: exact, deterministic point-cloud kernels for high-resolution 3D anomaly detection.

Ops run on CPU tensors (multi-threaded, spatial indexes) and on CUDA tensors (when the CUDA
kernels were compiled: see ``build_info()``), take million-point clouds whole, and agree
between backends: ties always go to the lowest index. Every op is also registered as
``torch.ops.group3ad_ext.<name>`` with a fake kernel, so it works under torch.compile.
"""

from ._loader import build_info, cuda_compiled
from .coreset import coreset
from .fps import fps, fps_features
from .geometry import agcs, fpfh, fpfh_variation, fpfh_with_variation, normals, point_spacing
from .knn import group, knn
from .nn_search import nn_search

__version__ = build_info()["version"]

__all__ = [
    "__version__", "build_info", "cuda_compiled",
    "fps", "fps_features", "knn", "group",
    "normals", "fpfh", "fpfh_variation", "fpfh_with_variation", "agcs", "point_spacing",
    "nn_search", "coreset",
]
