"""group3ad: the Group3AD (ACM MM 2024) high-resolution 3D anomaly detection pipeline.

Built on the group3ad_ext kernels. Subpackages: ``data`` (Real3D-AD / Anomaly-ShapeNet readers
and the synthetic benchmark), ``model`` (Point-MAE group encoder, IUN/IAN training), the
pipeline (registration, memory banks, AGCS inference, metrics) and ``cli`` (the ``group3ad``
command).
"""

import os

# MKL's strict CNR mode makes matrix products bit-identical for any thread count (its default
# splits long sums between threads), so training gives the same encoder on 2 or 16 cores; with
# model/norms.py the whole pipeline does. MKL reads this at its first BLAS call: it takes effect
# when group3ad is imported before torch multiplies its first matrices (the group3ad command
# always is). AUTO keeps MKL's fastest code path for this CPU; a user's own setting wins.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

__version__ = "0.1.0"
