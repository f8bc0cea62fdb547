"""Normalisation layers whose training arithmetic does not depend on the CPU thread count.

PyTorch's CPU kernels for BatchNorm statistics over (rows, channels) and for LayerNorm's
weight/bias gradients sum each thread's share of rows into its own buffer and then add the
buffers, so the rounding, and from there the whole trained encoder, changes with
torch.get_num_threads(). Here the same maths is written with reductions that PyTorch splits
across channels instead (every channel summed over all rows by one thread, in row order), so a
2-core and a 16-core machine train bit-identical encoders. Inference keeps the fused kernels:
they do not reduce over rows there. Matrix products are made thread-invariant by MKL's strict
CNR mode (``group3ad/__init__.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm(nn.LayerNorm):
    """nn.LayerNorm (same parameters and state dict) whose affine gradients are reduced by
    autograd's per-channel sum when the weight is trained; the fused kernel otherwise."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight is None or not (torch.is_grad_enabled() and self.weight.requires_grad):
            return super().forward(x)
        normed = F.layer_norm(x, self.normalized_shape, None, None, self.eps)
        return torch.addcmul(self.bias, normed, self.weight)


def batch_norm_rows(x: torch.Tensor, bn: nn.BatchNorm1d) -> torch.Tensor:
    """``bn(x)`` for x (R,C) rows; in training mode the batch statistics (and the running-stat
    update, with nn.BatchNorm1d's momentum and unbiased running variance) come from per-channel
    reductions. Equal to ``bn(x)`` up to float rounding."""
    if not bn.training or x.shape[0] < 2:
        return bn(x)
    var, mean = torch.var_mean(x, 0, correction=0)
    if bn.track_running_stats:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            momentum = (1.0 / float(bn.num_batches_tracked)) if bn.momentum is None else bn.momentum
            n = x.shape[0]
            bn.running_mean.lerp_(mean.detach(), momentum)
            bn.running_var.lerp_(var.detach() * (n / (n - 1)), momentum)
    scale = torch.rsqrt(var + bn.eps)
    if bn.affine:
        scale = scale * bn.weight
        return torch.addcmul(bn.bias - mean * scale, x, scale)
    return (x - mean) * scale
