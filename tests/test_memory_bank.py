"""MemoryBank: fit (coreset cap), query (exact nn_search), device moves, save/load."""

import pytest
import torch

from group3ad.memory_bank import FORMAT_VERSION, MemoryBank
from group3ad_ext import coreset


def brute_force(x, bank, k):
    d2 = ((x.double()[:, None] - bank.double()[None]) ** 2).sum(-1)
    d2, idx = torch.sort(d2, dim=1, stable=True)
    return d2[:, :k].sqrt(), idx[:, :k]


def features(n=600, d=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(10, d, generator=g) * 3
    return c[torch.randint(0, 10, (n,), generator=g)] + torch.randn(n, d, generator=g)


def test_fit_keeps_everything_below_the_cap():
    f = features(100)
    bank = MemoryBank(memory_size=100).fit(f)
    assert torch.equal(bank.features, f)
    assert torch.equal(bank.source_rows, torch.arange(100))
    assert len(bank) == 100


def test_fit_subsamples_with_the_coreset_above_the_cap():
    f = features(600)
    bank = MemoryBank(memory_size=50, proj_dim=16, seed=3, start_idx=7).fit(f)
    rows = coreset(f, 50, proj_dim=16, start_idx=7, seed=3)
    assert torch.equal(bank.source_rows, rows)
    assert torch.equal(bank.features, f[rows])
    assert int(bank.source_rows[0]) == 7


def test_query_is_exact_nearest_neighbour():
    f = features(600)
    bank = MemoryBank(memory_size=80).fit(f)
    x = features(40, seed=1)
    dist, idx = bank.query(x, k=3)
    ref_d, ref_i = brute_force(x, bank.features, 3)
    assert torch.equal(idx, ref_i)
    torch.testing.assert_close(dist.double(), ref_d, rtol=2 ** -23, atol=0)


def test_bank_rows_score_zero():
    f = features(300)
    bank = MemoryBank(memory_size=30).fit(f)
    dist, idx = bank.query(bank.features)
    assert torch.equal(dist[:, 0], torch.zeros(30))
    assert torch.equal(idx[:, 0], torch.arange(30))


def test_query_casts_to_the_bank_dtype():
    bank = MemoryBank(memory_size=20).fit(features(20).double())
    dist, idx = bank.query(features(5, seed=2))  # float32 query against a float64 bank
    ref_d, ref_i = brute_force(features(5, seed=2).double(), bank.features, 1)
    assert torch.equal(idx, ref_i)


def test_save_load_roundtrip(tmp_path):
    f = features(400)
    bank = MemoryBank(memory_size=40, proj_dim=8, seed=5, start_idx="auto").fit(f)
    path = tmp_path / "bank.pt"
    bank.save(path)
    loaded = MemoryBank.load(path)
    assert loaded.config() == bank.config()
    assert torch.equal(loaded.features, bank.features)
    assert torch.equal(loaded.source_rows, bank.source_rows)
    x = features(10, seed=9)
    assert torch.equal(loaded.query(x, 2)[1], bank.query(x, 2)[1])


def test_state_dict_roundtrip_and_version():
    bank = MemoryBank(memory_size=10).fit(features(30))
    state = bank.state_dict()
    assert state["version"] == FORMAT_VERSION
    again = MemoryBank.from_state_dict(state)
    assert torch.equal(again.features, bank.features)


def test_wrong_or_old_files_raise(tmp_path):
    bank = MemoryBank(memory_size=10).fit(features(30))
    old = bank.state_dict()
    old["version"] = FORMAT_VERSION + 1
    torch.save(old, tmp_path / "new.pt")
    with pytest.raises(ValueError, match="version"):
        MemoryBank.load(tmp_path / "new.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="MemoryBank"):
        MemoryBank.load(tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("not a torch file")
    with pytest.raises(ValueError, match="MemoryBank"):
        MemoryBank.load(tmp_path / "text.pt")
    broken = bank.state_dict()
    del broken["features"]
    with pytest.raises(ValueError, match="corrupt"):
        MemoryBank.from_state_dict(broken)


def test_to_moves_tensors():
    bank = MemoryBank(memory_size=10).fit(features(30))
    assert bank.to("cpu") is bank and bank.device.type == "cpu"


def test_unfitted_bank_raises():
    bank = MemoryBank()
    with pytest.raises(RuntimeError, match="fit"):
        bank.query(torch.randn(2, 3))
    assert len(bank) == 0


@pytest.mark.parametrize("kwargs,name", [
    ({"memory_size": 0}, "memory_size"), ({"memory_size": 2.5}, "memory_size"),
    ({"proj_dim": 0}, "proj_dim"), ({"seed": "x"}, "seed"), ({"start_idx": -1}, "start_idx"),
    ({"start_idx": "first"}, "start_idx"),
])
def test_bad_config(kwargs, name):
    with pytest.raises(ValueError, match=name):
        MemoryBank(**kwargs)


def test_bad_fit_and_query_input():
    with pytest.raises(ValueError, match="features"):
        MemoryBank().fit(torch.randn(10))
    with pytest.raises(ValueError, match="features"):
        MemoryBank().fit(torch.empty(0, 4))
    nan = features(30)
    nan[2, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        MemoryBank(memory_size=100).fit(nan)
    with pytest.raises(ValueError, match="features"):
        MemoryBank(memory_size=10).fit(nan)
    bank = MemoryBank(memory_size=10).fit(features(30))
    with pytest.raises(ValueError, match="x"):
        bank.query(torch.randn(4, 3))
    with pytest.raises(ValueError, match="k"):
        bank.query(features(4), k=11)


@pytest.mark.cuda
def test_cuda_bank_matches_cpu(tmp_path):
    f = features(2000, d=1152)
    cpu = MemoryBank(memory_size=200, proj_dim=None).fit(f.double())
    gpu = MemoryBank(memory_size=200, proj_dim=None).fit(f.double().cuda())
    assert torch.equal(gpu.source_rows.cpu(), cpu.source_rows)
    x = features(100, d=1152, seed=4).double()
    assert torch.equal(gpu.query(x.cuda(), 3)[1].cpu(), cpu.query(x, 3)[1])
    gpu.save(tmp_path / "g.pt")
    assert MemoryBank.load(tmp_path / "g.pt", device="cuda").device.type == "cuda"
