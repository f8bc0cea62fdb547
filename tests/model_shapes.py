"""Tiny synthetic clouds for the model tests (the data package's generator lands separately)."""

import math

import pytest
import torch


def shape_cloud(kind: str, n: int, seed: int = 0) -> torch.Tensor:
    """(n,3) float32 points on a sphere / box surface / torus, ~20 mm across, 0.01 mm noise."""
    g = torch.Generator().manual_seed(seed)
    if kind == "sphere":
        v = torch.randn(n, 3, generator=g, dtype=torch.float64)
        p = 10.0 * v / v.norm(dim=1, keepdim=True)
    elif kind == "box":
        u = torch.rand(n, 3, generator=g, dtype=torch.float64) * 2 - 1
        axis = torch.randint(3, (n,), generator=g)
        side = torch.randint(2, (n,), generator=g).double() * 2 - 1
        u[torch.arange(n), axis] = side
        p = u * torch.tensor([10.0, 7.0, 5.0], dtype=torch.float64)
    elif kind == "torus":
        a = torch.rand(n, generator=g, dtype=torch.float64) * 2 * math.pi
        b = torch.rand(n, generator=g, dtype=torch.float64) * 2 * math.pi
        p = torch.stack([(8 + 3 * b.cos()) * a.cos(), (8 + 3 * b.cos()) * a.sin(), 3 * b.sin()], 1)
    else:
        raise ValueError(kind)
    p = p + 0.01 * torch.randn(n, 3, generator=g, dtype=torch.float64)
    return (p - p.mean(0)).float()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The model tests run tiny tensors: one intra-op thread avoids OpenMP synchronisation costs
    that dominate (10x-30x) on a loaded 2-core machine. Restored after the module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
