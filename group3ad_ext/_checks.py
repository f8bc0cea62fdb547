"""Argument validation shared by every op wrapper.

Each check raises ValueError naming the argument and what was expected, before any kernel
runs: a caller's mistake must never reach a TORCH_CHECK, a segfault or a silent wrong answer.
"""

from __future__ import annotations

import math
import numbers

import torch

from ._loader import cuda_compiled

FLOAT_DTYPES = (torch.float32, torch.float64)


def check_tensor(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def check_device(x: torch.Tensor, name: str) -> None:
    """Only CPU and CUDA tensors; CUDA only when this build compiled the CUDA kernels."""
    if x.device.type == "cuda":
        if not cuda_compiled():
            raise ValueError(
                f"{name} is a CUDA tensor but this group3ad_ext build has no CUDA kernels "
                "(rebuild with a CUDA toolkit, or FORCE_CUDA=1); move it to the CPU with .cpu()"
            )
    elif x.device.type not in ("cpu", "meta"):
        raise ValueError(f"{name} must be on a CPU or CUDA device, got {x.device}")


def check_same_device(*named) -> None:
    """check_same_device(("query", q), ("points", p), ...)"""
    first_name, first = named[0]
    for name, t in named[1:]:
        if t.device != first.device:
            raise ValueError(
                f"{name} is on {t.device} but {first_name} is on {first.device}; "
                "put them on the same device"
            )


def check_float(x: torch.Tensor, name: str, dtypes=FLOAT_DTYPES) -> None:
    if x.dtype not in dtypes:
        names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise ValueError(f"{name} must have dtype {names}; got {str(x.dtype).replace('torch.', '')}")


def check_finite(x: torch.Tensor, name: str) -> None:
    if x.device.type == "meta" or x.numel() == 0:
        return
    # aminmax: one pass, no (N,3) bool temporary (4x faster on a million points); NaN and
    # +-Inf all show in the min or the max.
    lo, hi = torch.aminmax(x)
    if not (math.isfinite(float(lo)) and math.isfinite(float(hi))):
        bad = (~torch.isfinite(x)).reshape(x.shape[0], -1).any(dim=-1).nonzero()[:1]
        where = f" (first at row {int(bad[0, 0])})" if bad.numel() else ""
        raise ValueError(f"{name} contains NaN or Inf values{where}; drop or repair those points first")


def check_points(x, name: str, dims=(2, 3), last: int | None = 3, dtypes=FLOAT_DTYPES,
                 allow_empty: bool = False) -> torch.Tensor:
    """A float point tensor of shape (N,last) or (B,N,last), finite, on a supported device."""
    check_tensor(x, name)
    check_device(x, name)
    if x.dim() not in dims:
        shapes = " or ".join("(N,%s)" % (last or "D") if d == 2 else "(B,N,%s)" % (last or "D") for d in dims)
        raise ValueError(f"{name} must have shape {shapes}; got {tuple(x.shape)}")
    if last is not None and x.shape[-1] != last:
        raise ValueError(f"{name} must have last dimension {last}; got shape {tuple(x.shape)}")
    check_float(x, name, dtypes)
    if not allow_empty and x.shape[-2] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); need at least one point")
    check_finite(x, name)
    return x


def check_int(v, name: str, low: int | None = None, high: int | None = None) -> int:
    """An integer (bool excluded) within [low, high]."""
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        if isinstance(v, torch.Tensor) and v.numel() == 1 and not v.dtype.is_floating_point:
            v = int(v)
        else:
            raise ValueError(f"{name} must be an int, got {type(v).__name__}")
    v = int(v)
    if low is not None and v < low:
        raise ValueError(f"{name} must be >= {low}; got {v}")
    if high is not None and v > high:
        raise ValueError(f"{name} must be <= {high}; got {v}")
    return v


def check_positive_float(v, name: str, allow_none: bool = False):
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise ValueError(f"{name} must be a positive number, got {type(v).__name__}")
    v = float(v)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0; got {v}")
    return v


def check_lengths(lengths, name: str, batch: int, max_len: int, device) -> torch.Tensor:
    """(B,) int lengths in [1, max_len]; returned as int64 on `device`."""
    check_tensor(lengths, name)
    if lengths.dim() != 1 or lengths.shape[0] != batch:
        raise ValueError(f"{name} must have shape ({batch},); got {tuple(lengths.shape)}")
    if lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor; got {lengths.dtype}")
    if lengths.device != device:
        raise ValueError(f"{name} is on {lengths.device} but the points are on {device}")
    if batch and (int(lengths.min()) < 1 or int(lengths.max()) > max_len):
        raise ValueError(f"{name} must lie in [1, {max_len}]; got min {int(lengths.min())}, max {int(lengths.max())}")
    return lengths.to(torch.int64).contiguous()
