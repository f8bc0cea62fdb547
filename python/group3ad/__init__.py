"""group3ad: the Group3AD (ACM MM 2024) high-resolution 3D anomaly detection pipeline.

Built on the group3ad_ext kernels. Subpackages: ``data`` (Real3D-AD / Anomaly-ShapeNet readers
and the synthetic benchmark), ``model`` (Point-MAE group encoder, IUN/IAN training), the
pipeline (registration, memory banks, AGCS inference, metrics) and ``cli`` (the ``group3ad``
command).
"""

__version__ = "0.1.0"
