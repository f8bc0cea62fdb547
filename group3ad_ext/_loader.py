"""Loads the compiled extension once; importing it registers torch.ops.group3ad_ext.*."""

from __future__ import annotations

import functools

import torch  # noqa: F401  (loads libtorch/libc10 that _C links against)

try:
    from . import _C  # noqa: F401  (registers the ops)
except ImportError as e:  # pragma: no cover - only on a broken install
    raise ImportError(
        "group3ad_ext's compiled module is missing or does not load: reinstall with "
        "`pip install --no-build-isolation .` against the torch you import "
        f"(original error: {e})"
    ) from e


def build_info() -> dict:
    """What this binary was compiled with.

    Returns a dict: ``version`` (package), ``torch_version`` (built against), ``cuda`` (bool:
    CUDA kernels compiled), ``cuda_archs`` (str, e.g. "8.0;9.0+PTX"), ``cpu_threads`` (threads
    the CPU kernels use now: torch's intra-op pool), ``parallel_backend`` (text).
    """
    return dict(_C.build_info())


@functools.lru_cache(maxsize=None)
def cuda_compiled() -> bool:
    return bool(_C.build_info()["cuda"])
