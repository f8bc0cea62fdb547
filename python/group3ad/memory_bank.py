"""The memory bank of normal features that Group3AD / PatchCore / Reg3D-AD score against."""

from __future__ import annotations

import os

import torch

from group3ad_ext.coreset import coreset
from group3ad_ext.nn_search import nn_search

FORMAT = "group3ad.MemoryBank"
FORMAT_VERSION = 1


class MemoryBank:
    """Normal features, subsampled by a greedy coreset, queried by exact nearest neighbour.

    Args:
        memory_size: largest number of rows kept (>= 1). fit() keeps every row when it gets
            at most this many, else selects ``memory_size`` rows with :func:`coreset`.
        proj_dim: coreset's random projection dimension (None: no projection).
        seed: coreset's projection seed.
        start_idx: coreset's first row (int) or "auto" (PatchCore's first pick).

    Example::

        bank = MemoryBank(memory_size=10000).fit(train_features)      # (N, 1152)
        dist, idx = bank.query(test_features, k=1)                      # (Q, 1) each
        bank.save("bank.pt"); bank = MemoryBank.load("bank.pt")
    """

    def __init__(self, memory_size: int = 10000, proj_dim: int | None = 128, seed: int = 0,
                 start_idx: int | str = 0):
        if isinstance(memory_size, bool) or not isinstance(memory_size, int) or memory_size < 1:
            raise ValueError(f"memory_size must be an int >= 1; got {memory_size!r}")
        if proj_dim is not None and (isinstance(proj_dim, bool) or not isinstance(proj_dim, int)
                                     or proj_dim < 1):
            raise ValueError(f"proj_dim must be None or an int >= 1; got {proj_dim!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int; got {seed!r}")
        if not (start_idx == "auto" or (isinstance(start_idx, int) and not isinstance(start_idx, bool)
                                        and start_idx >= 0)):
            raise ValueError(f"start_idx must be an int >= 0 or 'auto'; got {start_idx!r}")
        self.memory_size = memory_size
        self.proj_dim = proj_dim
        self.seed = seed
        self.start_idx = start_idx
        self._features: torch.Tensor | None = None
        self._source_rows: torch.Tensor | None = None

    # -- building ------------------------------------------------------------------------------

    def fit(self, features: torch.Tensor) -> "MemoryBank":
        """Keep `features` (N, D) whole when N <= memory_size, else the coreset of
        memory_size rows (selection order). Returns self."""
        if not isinstance(features, torch.Tensor) or features.dim() != 2:
            shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise ValueError(f"features must be a (N, D) tensor; got {shape}")
        n = features.shape[0]
        if n == 0:
            raise ValueError("features is empty; fit needs at least one row")
        if n > self.memory_size:
            start = self.start_idx
            if start != "auto" and start >= n:
                raise ValueError(f"start_idx={start} is out of range for {n} feature rows")
            rows = coreset(features, self.memory_size, proj_dim=self.proj_dim,
                           start_idx=start, seed=self.seed)
        else:
            if not bool(torch.isfinite(features).all()):
                raise ValueError("features contains NaN or Inf values")
            rows = torch.arange(n, device=features.device)
        self._source_rows = rows
        self._features = features.index_select(0, rows).contiguous()
        return self

    # -- using ---------------------------------------------------------------------------------

    @property
    def features(self) -> torch.Tensor:
        """(M, D) bank rows, M <= memory_size."""
        if self._features is None:
            raise RuntimeError("MemoryBank is empty: call fit() or load() first")
        return self._features

    @property
    def source_rows(self) -> torch.Tensor:
        """(M,) int64: row of the fitted features each bank row came from."""
        if self._source_rows is None:
            raise RuntimeError("MemoryBank is empty: call fit() or load() first")
        return self._source_rows

    def __len__(self) -> int:
        return 0 if self._features is None else self._features.shape[0]

    @property
    def device(self) -> torch.device:
        return self.features.device

    def query(self, x: torch.Tensor, k: int = 1):
        """Exact k nearest bank rows of each row of x (Q, D): dist (Q, k) float32 Euclidean
        (not squared), idx (Q, k) int64 bank rows; see group3ad_ext.nn_search. x is cast to
        the bank's dtype and device."""
        bank = self.features
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 2 or x.shape[1] != bank.shape[1]:
            raise ValueError(f"x must have shape (Q, {bank.shape[1]}); got {tuple(x.shape)}")
        return nn_search(x.to(device=bank.device, dtype=bank.dtype), bank, k)

    def to(self, device) -> "MemoryBank":
        """Moves the bank to `device` in place; returns self."""
        self._features = self.features.to(device)
        self._source_rows = self.source_rows.to(device)
        return self

    # -- persistence ---------------------------------------------------------------------------

    def config(self) -> dict:
        return {"memory_size": self.memory_size, "proj_dim": self.proj_dim, "seed": self.seed,
                "start_idx": self.start_idx}

    def state_dict(self) -> dict:
        return {"format": FORMAT, "version": FORMAT_VERSION, "config": self.config(),
                "features": self.features.cpu(), "source_rows": self.source_rows.cpu()}

    @classmethod
    def from_state_dict(cls, state, device="cpu") -> "MemoryBank":
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError("not a group3ad MemoryBank state (missing format tag "
                             f"{FORMAT!r}); was it written by MemoryBank.save()?")
        version = state.get("version")
        if version != FORMAT_VERSION:
            raise ValueError(f"MemoryBank state has format version {version!r}; this group3ad "
                             f"reads version {FORMAT_VERSION}: rebuild the bank with fit()")
        try:
            bank = cls(**state["config"])
            features, rows = state["features"], state["source_rows"]
        except (KeyError, TypeError) as e:
            raise ValueError(f"MemoryBank state is incomplete or corrupt: {e}") from e
        if (not isinstance(features, torch.Tensor) or features.dim() != 2 or features.shape[0] == 0
                or not isinstance(rows, torch.Tensor) or rows.shape != (features.shape[0],)):
            raise ValueError("MemoryBank state has malformed features/source_rows tensors")
        bank._features = features.to(device)
        bank._source_rows = rows.to(device)
        return bank

    def save(self, path) -> None:
        """Writes config, tensors and the format version with torch.save."""
        torch.save(self.state_dict(), os.fspath(path))

    @classmethod
    def load(cls, path, device="cpu") -> "MemoryBank":
        """Reads a file written by save(); ValueError on any other file."""
        try:
            state = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as e:  # not a torch file, or pickled objects we refuse to run
            raise ValueError(f"{path} is not a MemoryBank file written by MemoryBank.save(): {e}") from e
        return cls.from_state_dict(state, device=device)

    def __repr__(self) -> str:
        shape = tuple(self._features.shape) if self._features is not None else None
        return (f"MemoryBank(memory_size={self.memory_size}, proj_dim={self.proj_dim}, "
                f"seed={self.seed}, start_idx={self.start_idx!r}, features={shape})")
