"""Point-MAE checkpoint loading (official layout created here), reports, errors, round trips."""

import pytest
import torch

from group3ad.errors import UserError
from group3ad.model import PointMAEEncoder, load_encoder, load_pointmae_checkpoint, save_checkpoint

from model_shapes import one_thread  # noqa: F401  (autouse fixture)

DECODER_KEYS = ("MAE_decoder.blocks.0.norm1.weight", "MAE_decoder.norm.weight", "mask_token",
                "decoder_pos_embed.0.weight", "increase_dim.0.weight")


def small():
    return PointMAEEncoder(trans_dim=48, depth=12, num_heads=6)


def official_checkpoint(path, encoder, prefix="module.MAE_encoder.", drop=(), extra=DECODER_KEYS):
    """Write a file in Point-MAE's pretraining layout with random encoder weights (returned)."""
    g = torch.Generator().manual_seed(7)
    weights = {k: (torch.randn(v.shape, generator=g, dtype=v.dtype) if v.is_floating_point()
                   else torch.full_like(v, 123))
               for k, v in encoder.state_dict().items()}
    base = {prefix + k: v for k, v in weights.items() if k not in drop}
    base.update({"module." + k: torch.zeros(3) for k in extra})
    torch.save({"base_model": base, "optimizer": {"state": {}, "param_groups": []}, "epoch": 300,
                "metrics": {"acc": 0.0}, "best_metrics": {"acc": 0.0}}, path)
    return weights


def test_official_layout_round_trips_exactly(tmp_path):
    enc = small()
    path = tmp_path / "pretrain.pth"
    want = official_checkpoint(path, enc)
    report = load_pointmae_checkpoint(enc, path)
    assert report.missing == []
    assert sorted(report.unexpected) == sorted("module." + k for k in DECODER_KEYS)
    assert len(report.loaded) == len(want)
    for k, v in enc.state_dict().items():
        assert torch.equal(v, want[k]), k
    assert "loaded" in str(report) and "unexpected" in str(report)


@pytest.mark.parametrize("prefix", ["", "module.", "MAE_encoder.", "base_model."])
def test_prefix_variants_load(tmp_path, prefix):
    enc = small()
    want = official_checkpoint(tmp_path / "c.pth", enc, prefix=prefix, extra=("cls_token", "cls_head_finetune.0.weight"))
    report = load_pointmae_checkpoint(enc, tmp_path / "c.pth")
    assert report.missing == [] and len(report.unexpected) == 2
    assert torch.equal(enc.state_dict()["blocks.blocks.5.attn.qkv.weight"], want["blocks.blocks.5.attn.qkv.weight"])


def test_missing_keys_are_reported_and_kept(tmp_path):
    enc = small()
    before = enc.state_dict()["norm.weight"].clone()
    drop = ("norm.weight", "blocks.blocks.11.mlp.fc2.bias")
    official_checkpoint(tmp_path / "c.pth", enc, drop=drop)
    report = load_pointmae_checkpoint(enc, tmp_path / "c.pth")
    assert sorted(report.missing) == sorted(drop)
    assert torch.equal(enc.state_dict()["norm.weight"], before)
    assert "missing" in str(report)
    with pytest.raises(UserError, match="lacks 2 encoder tensors"):
        load_pointmae_checkpoint(small(), tmp_path / "c.pth", strict=True)


def test_absent_file_is_a_clear_user_error(tmp_path):
    with pytest.raises(UserError, match="checkpoint not found.*cannot be downloaded"):
        load_pointmae_checkpoint(small(), tmp_path / "nope.pth")


def test_files_that_are_not_pointmae_checkpoints(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(UserError, match="not a readable PyTorch checkpoint"):
        load_pointmae_checkpoint(small(), text)
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(UserError, match="expected a dict"):
        load_pointmae_checkpoint(small(), tmp_path / "list.pth")
    torch.save({"epoch": 3, "optimizer": {}}, tmp_path / "nobase.pth")
    with pytest.raises(UserError, match="no 'base_model'"):
        load_pointmae_checkpoint(small(), tmp_path / "nobase.pth")
    torch.save({"base_model": {"backbone.conv1.weight": torch.zeros(2)}}, tmp_path / "resnet.pth")
    with pytest.raises(UserError, match="none of its 1 keys"):
        load_pointmae_checkpoint(small(), tmp_path / "resnet.pth")


def test_wrong_width_is_a_user_error(tmp_path):
    official_checkpoint(tmp_path / "c.pth", small())
    with pytest.raises(UserError, match="does not fit this encoder"):
        load_pointmae_checkpoint(PointMAEEncoder(trans_dim=96, depth=12, num_heads=6), tmp_path / "c.pth")


def test_own_checkpoint_round_trip_and_official_readability(tmp_path):
    enc = small()
    torch.nn.init.normal_(enc.norm.weight)
    path = save_checkpoint(enc, tmp_path / "sub" / "ian.pth", phase="ian", config={"lr": 1e-4})
    raw = torch.load(path, weights_only=True)
    assert all(k.startswith("MAE_encoder.") for k in raw["base_model"])  # official layout
    loaded, report = load_encoder(path)
    assert report.missing == [] and report.unexpected == [] and report.meta["phase"] == "ian"
    assert loaded.trans_dim == 48 and not loaded.training
    for k, v in enc.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    nb, c = torch.randn(1, 6, 5, 3), torch.randn(1, 6, 3)
    with torch.no_grad():
        assert torch.equal(enc.eval()(nb, c), loaded(nb, c))
