"""Point-MAE checkpoints in, Group3AD checkpoints out (same layout, so either tool reads both).

An official Point-MAE pretraining checkpoint is a dict with ``base_model`` (the state dict),
``optimizer``, ``epoch``, ``metrics``, ``best_metrics``; keys may carry ``module.`` (DataParallel)
and ``MAE_encoder.`` (the encoder inside Point_MAE) prefixes; fine-tuning checkpoints have the
encoder keys unprefixed. Our own checkpoints write ``base_model`` with ``MAE_encoder.``-prefixed
encoder keys plus a ``group3ad`` entry (encoder sizes, training config, history), so the official
code and ours load them alike.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field

import torch

from ..errors import UserError
from .encoder import PointMAEEncoder

_PREFIXES = ("module.", "base_model.", "MAE_encoder.")


@dataclass
class LoadReport:
    """What ``load_pointmae_checkpoint`` did: keys loaded, encoder keys the file lacked
    (left at their current values), file keys the encoder does not use (decoder, heads, ...)."""

    path: str
    loaded: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"{self.path}: loaded {len(self.loaded)} encoder tensors"]
        if self.missing:
            lines.append(f"  missing (kept as initialised): {len(self.missing)}: {', '.join(self.missing[:8])}"
                         + (" ..." if len(self.missing) > 8 else ""))
        if self.unexpected:
            lines.append(f"  unexpected (ignored): {len(self.unexpected)}: {', '.join(self.unexpected[:8])}"
                         + (" ..." if len(self.unexpected) > 8 else ""))
        return "\n".join(lines)


def strip_prefixes(key: str) -> str:
    """'module.MAE_encoder.blocks.blocks.0.norm1.weight' -> 'blocks.blocks.0.norm1.weight'."""
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p):], True
    return key


def _read(path) -> dict:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"checkpoint not found: {path}. Point-MAE weights cannot be downloaded here: "
                        "pass the file you have (e.g. pretrain.pth from Pang-Yatian/Point-MAE), or omit "
                        "it to pretrain the encoder self-supervised on the training clouds")
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            if "weights_only" not in str(e):
                raise
            # Older training scripts pickled extra objects (e.g. numpy scalars in metrics): the
            # user chose this file, so read it in full.
            obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # pickle/zip errors differ between torch versions
        raise UserError(f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise UserError(f"{path} is not a Point-MAE checkpoint: expected a dict, got {type(obj).__name__}")
    return obj


def _state_dict_of(obj: dict, path: str) -> dict:
    for key in ("base_model", "model", "state_dict"):
        if isinstance(obj.get(key), dict):
            return obj[key]
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj  # a bare state dict
    raise UserError(f"{path} is not a Point-MAE checkpoint: no 'base_model' state dict "
                    f"(top-level keys: {', '.join(map(str, list(obj)[:10]))})")


def load_pointmae_checkpoint(encoder: PointMAEEncoder, path, strict: bool = False) -> LoadReport:
    """Load Point-MAE encoder weights from ``path`` into ``encoder`` (in place).

    Prefixes ``module.``, ``base_model.``, ``MAE_encoder.`` are stripped. Decoder and head keys are
    reported as unexpected. Raises UserError when the file is absent or unreadable, is not a
    Point-MAE checkpoint (no encoder key at all), has a tensor of the wrong shape, or when
    ``strict`` and encoder keys are missing. Returns a LoadReport.
    """
    path = os.fspath(path)
    obj = _read(path)
    source = _state_dict_of(obj, path)
    own = encoder.state_dict()
    cleaned, unexpected = {}, []
    for k, v in source.items():
        name = strip_prefixes(k)
        if name in own and isinstance(v, torch.Tensor):
            cleaned[name] = v
        else:
            unexpected.append(k)
    if not cleaned:
        raise UserError(f"{path} is not a Point-MAE checkpoint: none of its {len(source)} keys is a "
                        "Point-MAE encoder key (expected e.g. MAE_encoder.blocks.blocks.0.attn.qkv.weight)")
    bad = [f"{k}: file {tuple(v.shape)} vs encoder {tuple(own[k].shape)}"
           for k, v in cleaned.items() if v.shape != own[k].shape]
    if bad:
        raise UserError(f"{path} does not fit this encoder (trans_dim/depth differ?): " + "; ".join(bad[:5]))
    missing = [k for k in own if k not in cleaned]
    if strict and missing:
        raise UserError(f"{path} lacks {len(missing)} encoder tensors: {', '.join(missing[:8])}")
    encoder.load_state_dict(cleaned, strict=False)
    meta = obj.get("group3ad", {}) if isinstance(obj.get("group3ad"), dict) else {}
    return LoadReport(path, sorted(cleaned), missing, unexpected, meta)


def save_checkpoint(encoder: PointMAEEncoder, path, **meta) -> str:
    """Write ``encoder`` in Point-MAE layout (``base_model`` with ``MAE_encoder.`` keys) plus
    ``group3ad``: encoder sizes and any ``meta`` (config, history, phase). Returns the path."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    state = {f"MAE_encoder.{k}": v.detach().cpu().clone() for k, v in encoder.state_dict().items()}
    info = {"trans_dim": encoder.trans_dim, "depth": encoder.depth, "num_heads": encoder.num_heads,
            "feature_blocks": list(encoder.feature_blocks), **meta}
    tmp = path + ".tmp"
    torch.save({"base_model": state, "epoch": meta.get("epoch", 0), "group3ad": info}, tmp)
    os.replace(tmp, path)  # never leave a half-written checkpoint under the final name
    return path


def load_encoder(path, device="cpu") -> tuple[PointMAEEncoder, LoadReport]:
    """Build an encoder of the sizes recorded in a Group3AD checkpoint (Point-MAE defaults for an
    official file) and load it strictly. Returns (encoder in eval mode, report)."""
    obj = _read(path)
    info = obj.get("group3ad", {}) if isinstance(obj.get("group3ad"), dict) else {}
    enc = PointMAEEncoder(trans_dim=info.get("trans_dim", 384), depth=info.get("depth", 12),
                          num_heads=info.get("num_heads", 6),
                          feature_blocks=tuple(info.get("feature_blocks", (3, 7, 11))))
    report = load_pointmae_checkpoint(enc, path, strict=True)
    return enc.to(device).eval(), report
