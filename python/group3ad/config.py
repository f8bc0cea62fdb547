"""Group3AD settings: one dataclass, read from and written to JSON or YAML.

Defaults are the paper's (Supplementary C) and Reg3D-AD's (registration, memory banks):
4096 training groups of 128 points, memory_size 10000, AGCS alpha 0.2, voxel 0.5 mm,
normal radius 1.0 mm, FPFH radius 2.5 mm, RANSAC 0.75 mm / 100000 iterations / 0.999.
``Group3ADConfig.demo()`` is the small setting of ``group3ad demo`` (a few minutes on 2 cores).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field

from .errors import UserError
from .validation import check_fields, int_at_least, positive, positive_int

REGISTRATION_UNITS = ("mm", "spacing")
FUSIONS = ("testset", "train", "rank")
INTERPOLATIONS = ("nearest", "idw")
PRECISIONS = ("fp32", "bf16")


@dataclass
class RegistrationConfig:
    """FPFH + RANSAC global registration, then point-to-plane ICP (see registration.py).

    Lengths are millimetres when ``units == "mm"`` (Reg3D-AD on Real3D-AD). With
    ``units == "spacing"`` every length is multiplied by ``spacing_scale`` times the template's
    point spacing (``group3ad_ext.point_spacing``) divided by ``voxel_size``, i.e. the voxel
    becomes ``spacing_scale`` point spacings and the other lengths keep Reg3D-AD's ratios to
    it: the setting for data in other units or of another density.

    Robustness beyond Reg3D-AD (see registration.py): ``flip_normals`` also tries the source
    with its unoriented normals negated; ``restarts`` more RANSAC seeds are tried while the best
    fitness is below ``min_fitness``, each with RANSAC's confidence raised to
    ``restart_confidence`` and up to ``restart_max_iteration`` iterations (Open3D's RANSAC stops
    after a few hundred iterations on a wrong pose at confidence 0.999). Before those restarts,
    ``rotation_search`` runs ICP from that many starting rotations (coarse on
    ``search_points`` samples of the source), for scans whose FPFH matches are wrong wholesale.
    ``restarts=0, flip_normals=False, rotation_search=0`` is Reg3D-AD's single try.
    """

    enabled: bool = True
    units: str = "mm"
    spacing_scale: float = 4.0
    voxel_size: float = 0.5
    normal_radius: float = 1.0
    normal_max_nn: int = 30
    fpfh_radius: float = 2.5
    fpfh_max_nn: int = 100
    ransac_distance: float = 0.75
    ransac_n: int = 3
    edge_length_ratio: float = 0.9
    mutual_filter: bool = True
    max_iteration: int = 100000
    confidence: float = 0.999
    icp: bool = True
    icp_distance: float = 0.5
    icp_max_iteration: int = 30
    flip_normals: bool = True
    restarts: int = 4
    min_fitness: float = 0.9
    restart_confidence: float = 0.9999999
    restart_max_iteration: int = 1000000
    rotation_search: int = 200
    search_points: int = 500

    def validate(self) -> None:
        if self.units not in REGISTRATION_UNITS:
            raise UserError(f"registration.units must be one of {REGISTRATION_UNITS}, got {self.units!r}")
        check_fields(self, ("spacing_scale", "voxel_size", "normal_radius", "fpfh_radius",
                            "ransac_distance", "icp_distance"),
                     positive, "> 0", UserError, "registration.")
        check_fields(self, ("normal_max_nn", "fpfh_max_nn", "max_iteration", "icp_max_iteration",
                            "restart_max_iteration"),
                     lambda v: int(v) >= 1, ">= 1", UserError, "registration.")
        check_fields(self, ("restarts", "rotation_search"), int_at_least(0),
                     "a non-negative integer", UserError, "registration.")
        check_fields(self, ("search_points",), int_at_least(6), "an integer >= 6", UserError,
                     "registration.")
        if not 0 <= self.min_fitness <= 1:
            raise UserError(f"registration.min_fitness must be in [0, 1], got {self.min_fitness!r}")
        if not 3 <= self.ransac_n <= 10:
            raise UserError(f"registration.ransac_n must be in [3, 10], got {self.ransac_n!r}")
        if (not 0 < self.edge_length_ratio < 1 or not 0 < self.confidence < 1
                or not 0 < self.restart_confidence < 1):
            raise UserError("registration.edge_length_ratio, confidence and restart_confidence "
                            "must be in (0, 1)")


@dataclass
class Group3ADConfig:
    """Everything a Group3AD model needs besides data; saved inside every model file.

    Method switches (the paper's ablations, Tables 5-6): ``use_iun_ian`` (train the encoder
    with IUN then IAN; off = the pretrained encoder as is), ``use_agcs`` (AGCS test centres;
    off = plain FPS), ``use_coordinates`` (Reg3D-AD's registered-xyz memory bank).
    Encoder source: ``encoder_checkpoint`` (a Point-MAE checkpoint file the user brings); when
    None, ``pretrain_epochs`` of self-supervised MAE pretraining on the training clouds
    (0: random initialisation).
    ``support_ratio``: the object score counts only points whose group radius is at most this
    many times the cloud's median group radius (object_score.py; 0 = the plain maximum, as
    Reg3D-AD).
    ``precision``: "fp32", or "bf16" for the encoder's matrix products at inference (memory
    banks and scoring; about 2.5x faster on CPUs with AMX/AVX512-BF16 and on GPUs, features within
    about 1%); training always runs in fp32.
    ``n_groups_bank``: FPS groups per training cloud whose features fill the feature bank (before
    the coreset); None: ``n_groups_test``, as Reg3D-AD fills its bank with the 16384 groups it
    scores with. More groups give test groups closer bank entries (the features carry each
    centre's position): the demo preset draws 4x its test groups, which lifted the feature
    branch's real3d O-AUROC from 0.464 to 0.714 (benchmarks/results/bank_groups_real3d.md).
    """

    n_groups_train: int = 4096
    n_groups_test: int = 16384
    n_groups_bank: int | None = None
    group_size: int = 128
    memory_size: int = 10000
    coord_memory_size: int = 10000
    proj_dim: int = 128
    alpha: float = 0.2
    use_iun_ian: bool = True
    use_agcs: bool = True
    use_coordinates: bool = True
    encoder_checkpoint: str | None = None
    pretrain_epochs: int = 0
    train_epochs: int = 10
    learning_rate: float = 1e-4
    pretrain_options: dict = field(default_factory=dict)
    train_options: dict = field(default_factory=dict)
    interpolation: str = "nearest"
    idw_k: int = 3
    support_ratio: float = 4.0
    fusion: str = "testset"
    precision: str = "fp32"
    seed: int = 0
    device: str = "auto"
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)

    def validate(self) -> "Group3ADConfig":
        check_fields(self, ("n_groups_train", "n_groups_test", "group_size", "memory_size",
                            "coord_memory_size", "proj_dim", "idw_k"),
                     positive_int, "a positive integer", UserError)
        if self.n_groups_bank is not None:
            check_fields(self, ("n_groups_bank",), positive_int, "a positive integer or null", UserError)
        check_fields(self, ("pretrain_epochs", "train_epochs", "seed"),
                     lambda v: isinstance(v, int) and v >= 0, "a non-negative integer", UserError)
        if not 0 <= self.alpha < 1:
            raise UserError(f"alpha must be in [0, 1), got {self.alpha!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise UserError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        if self.precision not in PRECISIONS:
            raise UserError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.fusion not in FUSIONS:
            raise UserError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if not isinstance(self.pretrain_options, dict) or not isinstance(self.train_options, dict):
            raise UserError("pretrain_options and train_options must be mappings")
        check_fields(self, ("support_ratio",),
                     lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0,
                     "a number >= 0", UserError)
        if not self.learning_rate > 0:
            raise UserError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if self.device != "auto" and not (self.device == "cpu" or self.device.startswith("cuda")):
            raise UserError(f"device must be auto, cpu or cuda[:N], got {self.device!r}")
        self.registration.validate()
        return self

    @property
    def bank_groups(self) -> int:
        """Groups per training cloud for the feature bank (``n_groups_bank`` or ``n_groups_test``)."""
        return self.n_groups_bank if self.n_groups_bank is not None else self.n_groups_test

    # -- presets -----------------------------------------------------------------------------

    @classmethod
    def demo(cls, **overrides) -> "Group3ADConfig":
        """The ``group3ad demo`` setting: the paper's method at a size that runs in a few
        minutes on 2 CPU cores: 512 training / 1024 test groups of 64 points, a feature bank
        drawn from 4096 groups per training cloud and coreset to 2000 entries, 2 pretraining and
        2 IUN/IAN epochs, 20000 RANSAC iterations (the small synthetic preset registers well
        below that)."""
        cfg = cls(n_groups_train=512, n_groups_test=1024, n_groups_bank=4096, group_size=64,
                  memory_size=2000, coord_memory_size=5000, pretrain_epochs=2, train_epochs=2)
        cfg.registration.max_iteration = 20000
        return cfg.update(overrides)

    # -- (de)serialisation --------------------------------------------------------------------

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Group3ADConfig":
        return cls().update(d)

    def update(self, d: dict) -> "Group3ADConfig":
        """Apply the keys of ``d`` (nested ``registration`` dict allowed); unknown keys are a
        UserError naming them, so a typo in a config file never passes silently."""
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"unknown config key(s) {unknown}; known: {sorted(known)}")
        reg = d.pop("registration", None)
        for k, v in d.items():
            setattr(self, k, v)
        if reg is not None:
            if isinstance(reg, RegistrationConfig):
                reg = dataclasses.asdict(reg)
            rknown = {f.name for f in dataclasses.fields(RegistrationConfig)}
            bad = sorted(set(reg) - rknown)
            if bad:
                raise UserError(f"unknown registration key(s) {bad}; known: {sorted(rknown)}")
            for k, v in reg.items():
                setattr(self.registration, k, v)
        return self.validate()

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    def save(self, path: str) -> None:
        text = self.to_json()
        if path.endswith((".yaml", ".yml")):
            import yaml

            text = yaml.safe_dump(self.to_dict(), sort_keys=True)
        with open(path, "w") as f:
            f.write(text)

    @classmethod
    def from_file(cls, path: str, base: "Group3ADConfig | None" = None) -> "Group3ADConfig":
        """Read a JSON or YAML file (by extension; .yaml/.yml is YAML) over ``base``
        (default: the paper defaults)."""
        if not os.path.isfile(path):
            raise UserError(f"config file {path!r} does not exist")
        with open(path) as f:
            text = f.read()
        try:
            if path.endswith((".yaml", ".yml")):
                import yaml

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except Exception as e:  # the parser's own message says where the file is broken
            raise UserError(f"config file {path!r} is not valid {'YAML' if path.endswith(('.yaml', '.yml')) else 'JSON'}: {e}") from None
        if data is not None and not isinstance(data, dict):
            raise UserError(f"config file {path!r} must hold a mapping of settings")
        cfg = base if base is not None else cls()
        return cfg.update(data or {})


def resolve_device(name: str):
    """"auto" -> cuda when a GPU and CUDA kernels are there, else cpu; otherwise as given."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            import group3ad_ext

            if group3ad_ext.cuda_compiled():
                return torch.device("cuda")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA device is available here; use --device cpu")
    return dev
