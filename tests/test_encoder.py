"""PointMAEEncoder: shapes, Point-MAE key layout, attention and chunking against direct maths,
grouping against brute force and fpsample."""

import fpsample
import numpy as np
import pytest
import torch

from group3ad.model import PointMAEEncoder, extract_group_features, make_groups
from group3ad.model.encoder import Attention

from model_shapes import one_thread, shape_cloud  # noqa: F401  (autouse fixture)


def small_encoder(**kw):
    """Point-MAE layout (12 blocks, 6 heads, features of blocks 3/7/11) at 48 dims: fast on CPU."""
    return PointMAEEncoder(trans_dim=48, depth=12, num_heads=6, **kw)


def official_encoder_keys(depth=12):
    """Point-MAE MAE_encoder parameter/buffer names (as documented for the official checkpoints)."""
    keys = []
    for conv, idx in (("first_conv", (0, 1, 3)), ("second_conv", (0, 1, 3))):
        for i in idx:
            if i == 1:
                keys += [f"encoder.{conv}.1.{s}" for s in
                         ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
            else:
                keys += [f"encoder.{conv}.{i}.weight", f"encoder.{conv}.{i}.bias"]
    keys += ["pos_embed.0.weight", "pos_embed.0.bias", "pos_embed.2.weight", "pos_embed.2.bias"]
    for b in range(depth):
        p = f"blocks.blocks.{b}."
        keys += [p + "norm1.weight", p + "norm1.bias", p + "attn.qkv.weight", p + "attn.proj.weight",
                 p + "attn.proj.bias", p + "norm2.weight", p + "norm2.bias", p + "mlp.fc1.weight",
                 p + "mlp.fc1.bias", p + "mlp.fc2.weight", p + "mlp.fc2.bias"]
    return sorted(keys + ["norm.weight", "norm.bias"])


def test_state_dict_has_exact_pointmae_names_and_shapes():
    enc = PointMAEEncoder()
    sd = enc.state_dict()
    assert sorted(sd) == official_encoder_keys()
    assert sd["blocks.blocks.0.attn.qkv.weight"].shape == (1152, 384)
    assert sd["blocks.blocks.11.mlp.fc1.weight"].shape == (1536, 384)
    assert sd["encoder.second_conv.3.weight"].shape == (384, 512, 1)


def test_output_shapes():
    enc = PointMAEEncoder().eval()
    nb, c = torch.randn(2, 16, 4, 3), torch.randn(2, 16, 3)
    with torch.no_grad():
        assert enc(nb, c).shape == (2, 16, 1152)
        assert enc(nb, c, final_only=True).shape == (2, 16, 384)
    small = PointMAEEncoder(trans_dim=48, depth=3, num_heads=4, feature_blocks=(0, 2)).eval()
    assert small(nb, c).shape == (2, 16, 96) and small.feature_dim == 96


def test_feature_is_normed_block_outputs_3_7_11():
    enc = small_encoder().eval()
    nb, c = torch.randn(1, 10, 8, 3), torch.randn(1, 10, 3)
    with torch.no_grad():
        x, pos = enc.tokens(nb, c)
        outs = []
        for blk in enc.blocks.blocks:
            x = blk(x + pos)
            outs.append(enc.norm(x))
        want = torch.cat([outs[3], outs[7], outs[11]], -1)
        torch.testing.assert_close(enc(nb, c), want)
        torch.testing.assert_close(enc(nb, c, final_only=True), outs[11])


def test_sdpa_attention_equals_pointmae_softmax_formula():
    attn = Attention(48, 6).double()
    x = torch.randn(2, 20, 48, dtype=torch.float64)
    qkv = attn.qkv(x).reshape(2, 20, 3, 6, 8).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    a = (q @ k.transpose(-2, -1) * 8 ** -0.5).softmax(-1)
    want = attn.proj((a @ v).transpose(1, 2).reshape(2, 20, 48))
    torch.testing.assert_close(attn(x), want)


def test_chunked_embedding_equals_whole_values_and_gradients():
    torch.manual_seed(1)
    whole = small_encoder(embed_chunk=10_000).double().eval()
    chunked = small_encoder(embed_chunk=7).double().eval()
    chunked.load_state_dict(whole.state_dict())
    nb, c = torch.randn(1, 30, 6, 3, dtype=torch.float64), torch.randn(1, 30, 3, dtype=torch.float64)
    a, b = whole(nb, c), chunked(nb, c)
    torch.testing.assert_close(a, b)
    a.square().sum().backward()
    b.square().sum().backward()
    for (n, p), q in zip(whole.named_parameters(), chunked.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=n)


def test_point_order_inside_group_and_group_order_do_not_matter():
    enc = small_encoder().double().eval()
    nb, c = torch.randn(1, 12, 8, 3, dtype=torch.float64), torch.randn(1, 12, 3, dtype=torch.float64)
    with torch.no_grad():
        base = enc(nb, c)
        torch.testing.assert_close(enc(nb[:, :, torch.randperm(8)], c), base)
        perm = torch.randperm(12)
        torch.testing.assert_close(enc(nb[:, perm], c[:, perm]), base[:, perm])


@pytest.mark.parametrize("bad", [torch.randn(16, 8, 3), torch.randn(1, 16, 8, 2)])
def test_bad_neighborhood_raises(bad):
    with pytest.raises(ValueError, match="neighborhood"):
        small_encoder()(bad, torch.randn(1, 16, 3))


def test_bad_center_raises():
    with pytest.raises(ValueError, match="center"):
        small_encoder()(torch.randn(1, 16, 8, 3), torch.randn(1, 15, 3))


def test_bad_construction_raises():
    with pytest.raises(ValueError, match="num_heads"):
        PointMAEEncoder(trans_dim=384, num_heads=5)
    with pytest.raises(ValueError, match="feature_blocks"):
        PointMAEEncoder(depth=4, feature_blocks=(3, 7))


def test_make_groups_matches_fpsample_and_brute_force_knn():
    pts = shape_cloud("torus", 1500, seed=3)
    nb, center, cidx, idx = make_groups(pts, n_groups=40, group_size=12)
    assert nb.shape == (40, 12, 3) and center.shape == (40, 3) and idx.shape == (40, 12)
    want_c = fpsample.fps_sampling(pts.double().numpy(), 40, start_idx=0)
    np.testing.assert_array_equal(cidx.numpy(), want_c)
    d = ((center.double()[:, None] - pts.double()[None]) ** 2).sum(-1)
    want_idx = torch.sort(d, dim=1, stable=True).indices[:, :12]
    torch.testing.assert_close(idx, want_idx)
    torch.testing.assert_close(nb, pts[idx] - center[:, None])
    torch.testing.assert_close(idx[:, 0], cidx)  # each centre is its own nearest point


def test_make_groups_given_centres_and_bad_arguments():
    pts = shape_cloud("box", 500)
    cidx = torch.tensor([5, 0, 499])
    nb, center, out_idx, _ = make_groups(pts, group_size=4, center_idx=cidx)
    assert nb.shape == (3, 4, 3)
    torch.testing.assert_close(center, pts[cidx])
    with pytest.raises(ValueError, match="n_groups"):
        make_groups(pts, n_groups=501, group_size=4)
    with pytest.raises(ValueError, match="group_size"):
        make_groups(pts, n_groups=4, group_size=0)
    with pytest.raises(ValueError, match="center_idx"):
        make_groups(pts, group_size=4, center_idx=torch.tensor([500]))
    with pytest.raises(ValueError, match="points"):
        make_groups(pts[:, :2], n_groups=4, group_size=4)


def test_extract_group_features_is_one_sequence_over_all_groups():
    pts = shape_cloud("sphere", 800)
    enc = small_encoder().train()
    f = extract_group_features(enc, pts, group_size=16, n_groups=20)
    assert f.shape == (20, 144) and enc.training  # mode restored
    nb, c, _, _ = make_groups(pts, 20, 16)
    with torch.no_grad():
        torch.testing.assert_close(f, enc.eval()(nb[None], c[None])[0])


def pointmae_embed(mini, groups):
    """Point-MAE's Encoder.forward, verbatim: Conv1d over (M,3,k), cat(global, per-point)."""
    m, k, _ = groups.shape
    feature = mini.first_conv(groups.transpose(2, 1))
    global_feature = torch.max(feature, dim=2, keepdim=True)[0]
    feature = torch.cat([global_feature.expand(-1, -1, k), feature], dim=1)
    feature = mini.second_conv(feature)
    return torch.max(feature, dim=2, keepdim=False)[0]


@pytest.mark.parametrize("train", [False, True])
def test_minipointnet_equals_pointmae_conv_formula(train):
    # Our embedding runs points-last, splits the cat() layer and folds eval BatchNorm: the
    # official formulation is the oracle, values and gradients, BN statistics in both modes.
    torch.manual_seed(3)
    ours = small_encoder().double().encoder
    for bn in (ours.first_conv[1], ours.second_conv[1]):  # non-trivial running statistics
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
    ref = small_encoder().double().encoder
    ref.load_state_dict(ours.state_dict())
    ours.train(train)
    ref.train(train)
    g = torch.randn(40, 9, 3, dtype=torch.float64)
    a, b = ours.embed(g), pointmae_embed(ref, g)
    torch.testing.assert_close(a, b)
    a.square().sum().backward()
    b.square().sum().backward()
    for (n, p), q in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=n)
    if train:  # running statistics updated the same way
        torch.testing.assert_close(ours.second_conv[1].running_var, ref.second_conv[1].running_var)


def test_extract_group_features_bf16_close_to_fp32_and_bad_precision():
    pts = shape_cloud("sphere", 800)
    enc = small_encoder()
    f32 = extract_group_features(enc, pts, group_size=16, n_groups=20)
    bf = extract_group_features(enc, pts, group_size=16, n_groups=20, precision="bf16")
    assert bf.dtype == torch.float32 and bf.shape == f32.shape
    assert not torch.equal(bf, f32)  # it did run in bfloat16
    assert ((bf - f32).norm() / f32.norm()) < 0.05
    with pytest.raises(ValueError, match="precision"):
        extract_group_features(enc, pts, group_size=16, n_groups=20, precision="fp16")
