"""Every knob of Group3AD encoder training (IUN/IAN) and of self-supervised pretraining."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..validation import check_fields, positive, positive_int


class _DictMixin:
    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


@dataclass
class Group3ADTrainConfig(_DictMixin):
    """IUN/IAN training (Algorithm 1, phases 1 and 2).

    Paper values: n_groups 4096, group_size 128, FPS centres (no AGCS in training), r in
    [1%, 10%], sigma^2 in [0.01, 0.05], K by the elbow method. Everything else is our choice:
    epochs E = 10 (phase 1: E // 2 epochs, phase 2: the other E - E // 2); Adam, lr 1e-4, no weight
    decay, no schedule (a fine-tuning rate for a pretrained transformer; with Adam the step size
    barely depends on the loss scale, so T mainly scales the reported IAN loss); T = 1; k_max 10;
    the final LayerNorm frozen (``freeze_final_norm``): its gain scales every feature, so without
    the freeze IUN is solved by inflating it and IAN by shrinking it to zero, neither of which
    changes the feature distribution's shape.
    """

    n_groups: int = 4096
    group_size: int = 128
    epochs: int = 10
    lr: float = 1e-4
    temperature: float = 1.0
    k_max: int = 10
    k_fixed: int | None = None          # skip the elbow search and use this K
    kmeans_max_iter: int = 50
    ratio_range: tuple = (0.01, 0.10)
    variance_range: tuple = (0.01, 0.05)
    noise_unit: float = 1.0             # length of 1 mm in the clouds' coordinates
    combine: str = "union"              # FakeAnomaly(P) = P U A ("union") or in-place ("replace")
    fpfh_radius: float | None = None    # None: 10 x mean point spacing
    freeze_final_norm: bool = True
    embed_chunk: int = 1024             # groups per mini-PointNet pass (memory)
    eps: float = 1e-6                   # distance guard in the IUN loss
    evaluate: bool = True               # mean loss of each phase on all clouds before/after it
    checkpoint_dir: str | None = None   # writes iun.pth after phase 1, ian.pth after phase 2
    progress: bool = True
    seed: int = 0

    def validate(self) -> None:
        check_fields(self, ("n_groups", "group_size", "epochs", "k_max", "kmeans_max_iter", "embed_chunk"),
                     positive_int, "a positive integer")
        if self.k_max < 2:
            raise ValueError(f"k_max must be >= 2; got {self.k_max}")
        if self.k_fixed is not None and self.k_fixed < 2:
            raise ValueError(f"k_fixed must be >= 2 or None; got {self.k_fixed}")
        check_fields(self, ("lr", "temperature", "noise_unit", "eps"), positive, "> 0")
        if self.combine not in ("union", "replace"):
            raise ValueError(f"combine must be 'union' or 'replace'; got {self.combine!r}")


@dataclass
class PretrainConfig(_DictMixin):
    """Self-supervised Point-MAE pretraining on the category's own training clouds, used when no
    Point-MAE checkpoint is given. Point-MAE's recipe (mask ratio 0.6 random, 4-block decoder,
    Chamfer-L2 on the masked groups' points, AdamW lr 1e-3, weight decay 0.05, cosine decay) on
    groups of the full-resolution clouds: each step takes one cloud, FPS from a random start point
    (so every step sees a different group layout), ``n_groups`` x ``group_size``. Sizes are small
    by default so a few epochs run on a CPU; group_size should equal the inference group size."""

    n_groups: int = 512
    group_size: int = 128
    mask_ratio: float = 0.6
    decoder_depth: int = 4
    decoder_heads: int = 6
    epochs: int = 20
    steps_per_cloud: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.05
    embed_chunk: int = 1024
    progress: bool = True
    seed: int = 0

    def validate(self) -> None:
        check_fields(self, ("n_groups", "group_size", "decoder_depth", "decoder_heads", "epochs",
                            "steps_per_cloud"), positive_int, "a positive integer")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1); got {self.mask_ratio}")
        if int(self.mask_ratio * self.n_groups) < 1 or int(self.mask_ratio * self.n_groups) >= self.n_groups:
            raise ValueError(f"mask_ratio * n_groups must leave >= 1 masked and >= 1 visible group; "
                             f"got {self.mask_ratio} x {self.n_groups}")
        if not self.lr > 0 or self.weight_decay < 0:
            raise ValueError(f"lr must be > 0 and weight_decay >= 0; got {self.lr}, {self.weight_decay}")
