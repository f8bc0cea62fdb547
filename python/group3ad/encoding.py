"""The encoder side of the pipeline: where the encoder comes from, and group features.

Encoder source, in order (``Group3ADConfig``): a Point-MAE checkpoint the user brings
(``encoder_checkpoint``); otherwise ``pretrain_epochs`` of self-supervised Point-MAE
pretraining on the category's (registered) training clouds (``model.pretrain``; 0 keeps the
seeded random initialisation). Then, when ``use_iun_ian``, ``train_epochs`` of IUN (first half)
and IAN (second half), Algorithm 1 (``model.train``), on FPS groups of the training clouds.
``pretrain_options`` / ``train_options`` pass further knobs to ``PretrainConfig`` /
``Group3ADTrainConfig``.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from .config import Group3ADConfig
from .errors import UserError
from .progress import enabled


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


def _smallest(clouds) -> int:
    return min(int(c.shape[0]) for c in clouds)


def pretrained_encoder(config: Group3ADConfig, clouds: list[torch.Tensor], device, log=print) -> torch.nn.Module:
    encoder = new_encoder(config.seed)
    if config.encoder_checkpoint:
        from .model.checkpoint import load_pointmae_checkpoint

        log(str(load_pointmae_checkpoint(encoder, config.encoder_checkpoint)))
    elif config.pretrain_epochs > 0:
        from .model.config import PretrainConfig
        from .model.pretrain import pretrain_encoder

        opts = {"n_groups": 512, **config.pretrain_options}
        opts["n_groups"] = min(opts["n_groups"], _smallest(clouds))
        pc = _model_config(PretrainConfig, dict(opts, group_size=config.group_size,
                                                epochs=config.pretrain_epochs, seed=config.seed,
                                                progress=enabled()))
        encoder, _ = pretrain_encoder([c.cpu() for c in clouds], pc, device=device, encoder=encoder)
    return encoder.to(device).eval()


def train_iun_ian(encoder: torch.nn.Module, config: Group3ADConfig, clouds, device) -> torch.nn.Module:
    """A trained copy of ``encoder`` (the pretrained one stays as it is)."""
    from .model.config import Group3ADTrainConfig
    from .model.train import train_group3ad

    encoder = copy.deepcopy(encoder).to(device)
    tc = _model_config(Group3ADTrainConfig, dict(
        config.train_options, n_groups=min(config.n_groups_train, _smallest(clouds)),
        group_size=config.group_size, epochs=config.train_epochs, lr=config.learning_rate,
        seed=config.seed, progress=enabled(), evaluate=False))
    train_group3ad(encoder, [c.cpu() for c in clouds], tc, device=device)
    return encoder.eval()


def _model_config(cls, options: dict):
    try:
        cfg = cls.from_dict(options)
        cfg.validate()
    except (TypeError, ValueError) as e:
        raise UserError(f"encoder training settings: {e}") from None
    return cfg


@torch.no_grad()
def group_features(encoder: torch.nn.Module, points: torch.Tensor, center_idx, group_size: int,
                   precision: str = "fp32", return_radius: bool = False):
    """(G, D) float32 features of the groups of ``group_size`` nearest points around
    ``points[center_idx]`` (neighbourhoods relative to their centres); all groups of a cloud
    are one encoder sequence, as in Reg3D-AD and in training. ``precision``: "fp32" or "bf16"
    (see ``extract_group_features``). ``return_radius``: also the (G,) group radii."""
    from .model.features import extract_group_features

    idx = torch.as_tensor(np.asarray(center_idx), dtype=torch.int64, device=points.device)
    k = min(int(group_size), points.shape[0])
    return extract_group_features(encoder, points, center_idx=idx, group_size=k, precision=precision,
                                  return_radius=return_radius)
