"""Trains an encoder the way ``group3ad fit`` does (Point-MAE pretraining, then IUN/IAN) at a
given thread count and prints a digest of the weights and of the features they give.

Run as a script, in a fresh process: ``group3ad`` must be imported before torch multiplies its
first matrices for MKL's strict CNR mode to apply (see group3ad/__init__.py).
Usage: python _training_probe.py THREADS [THREADS ...]  -> one digest line per thread count.
"""

from __future__ import annotations

import hashlib
import os
import sys

import group3ad  # noqa: F401  (first: sets MKL_CBWR)
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _clouds import lumpy_surface  # noqa: E402


def blob(n: int, seed: int) -> torch.Tensor:
    return torch.as_tensor(lumpy_surface(n, seed), dtype=torch.float32)


def digest(threads: int) -> str:
    from group3ad.encoding import group_features
    from group3ad.model.config import Group3ADTrainConfig, PretrainConfig
    from group3ad.model.pretrain import pretrain_encoder
    from group3ad.model.train import train_group3ad

    torch.set_num_threads(threads)
    clouds = [blob(4000, s) for s in range(2)]
    # 128 groups x 32 points: 4096 rows per BatchNorm and weight gradient, enough for
    # PyTorch's and MKL's kernels to split those sums between threads.
    encoder, _ = pretrain_encoder(clouds, PretrainConfig(n_groups=128, group_size=32, epochs=1,
                                                         steps_per_cloud=1, progress=False, seed=3))
    train_group3ad(encoder, clouds, Group3ADTrainConfig(n_groups=128, group_size=32, epochs=2,
                                                         progress=False, evaluate=False, seed=3))
    feats = group_features(encoder.eval(), blob(4000, 7), np.arange(0, 4000, 40), 32)
    h = hashlib.sha256()
    for p in encoder.state_dict().values():
        h.update(p.detach().contiguous().numpy().tobytes())
    h.update(feats.numpy().tobytes())
    return h.hexdigest()


if __name__ == "__main__":
    for t in sys.argv[1:]:
        print(t, digest(int(t)), flush=True)
