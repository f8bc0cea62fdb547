"""The encoder side of the pipeline: where the encoder comes from, and group features.

Encoder source, in order (``Group3ADConfig``): a Point-MAE checkpoint the user brings
(``encoder_checkpoint``); otherwise ``pretrain_epochs`` of self-supervised MAE pretraining on
the category's training clouds (0 keeps the seeded random initialisation). Then, when
``use_iun_ian``, ``train_epochs`` of IUN (first half) and IAN (second half) per Algorithm 1.
"""

from __future__ import annotations

import numpy as np
import torch

from . import kernels
from .config import Group3ADConfig


def new_encoder(seed: int) -> torch.nn.Module:
    from .model import PointMAEEncoder

    torch.manual_seed(seed)
    return PointMAEEncoder()


def prepare_encoder(config: Group3ADConfig, clouds: list[torch.Tensor], device, log=print) -> torch.nn.Module:
    """The pretrained (and, with use_iun_ian, IUN/IAN-trained) encoder for these clouds."""
    encoder = pretrained_encoder(config, clouds, device, log)
    if config.use_iun_ian and config.train_epochs > 0:
        encoder = train_iun_ian(encoder, config, clouds, device)
    return encoder.eval()


def pretrained_encoder(config: Group3ADConfig, clouds: list[torch.Tensor], device, log=print) -> torch.nn.Module:
    encoder = new_encoder(config.seed)
    if config.encoder_checkpoint:
        from .model.checkpoint import load_pointmae_checkpoint

        report = load_pointmae_checkpoint(encoder, config.encoder_checkpoint)
        log(str(report))
    elif config.pretrain_epochs > 0:
        from .model import pretrain

        encoder = pretrain.pretrain_encoder(encoder, clouds, epochs=config.pretrain_epochs,
                                            device=device, seed=config.seed) or encoder
    return encoder.to(device).eval()


def train_iun_ian(encoder: torch.nn.Module, config: Group3ADConfig, clouds, device) -> torch.nn.Module:
    import copy

    from .model.train import train_group3ad

    encoder = copy.deepcopy(encoder).to(device)
    out = train_group3ad(encoder, clouds, config, device=device, seed=config.seed)
    return (out if isinstance(out, torch.nn.Module) else encoder).eval()


@torch.no_grad()
def group_features(encoder: torch.nn.Module, points: torch.Tensor, center_idx, group_size: int) -> torch.Tensor:
    """(G, D) float32 features of the groups of ``group_size`` nearest points around
    ``points[center_idx]`` (neighbourhoods relative to their centres); all groups of a cloud
    are one encoder sequence, as in Reg3D-AD."""
    idx = torch.as_tensor(np.asarray(center_idx), dtype=torch.int64, device=points.device)
    k = min(int(group_size), points.shape[0])
    neighborhood, _ = kernels.group(points, idx, k)
    was_training = encoder.training
    encoder.eval()
    feats = encoder(neighborhood[None].to(points.dtype), points[idx][None])[0]
    encoder.train(was_training)
    return feats.float()
