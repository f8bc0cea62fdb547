"""Point-MAE group encoder (the feature extractor Reg3D-AD and Group3AD use).

Module and parameter names copy Point-MAE's ``MaskTransformer`` (``MAE_encoder.*`` in an official
pretraining checkpoint) exactly, so a checkpoint's state dict loads with no renaming beyond
stripping the ``module.`` / ``MAE_encoder.`` prefixes (see ``checkpoint.py``):

    encoder.first_conv.{0,1,3}   Conv1d 3->128, BatchNorm1d(128), Conv1d 128->256
    encoder.second_conv.{0,1,3}  Conv1d 512->512, BatchNorm1d(512), Conv1d 512->384
    pos_embed.{0,2}              Linear 3->128, GELU, Linear 128->384
    blocks.blocks.{0..11}        norm1, attn.qkv (no bias), attn.proj, norm2, mlp.fc1, mlp.fc2
    norm                         final LayerNorm

Choices the reference code leaves implicit:
- Attention is ``torch.nn.functional.scaled_dot_product_attention`` (same maths as Point-MAE's
  explicit softmax(q k^T / sqrt(d)) v, scale 1/sqrt(64)); its fused/memory-efficient kernels
  never materialise the G x G attention matrix, so one sequence of 16384 groups fits.
- All groups of a cloud form ONE sequence (as in Reg3D-AD); nothing is chunked in attention.
- The mini-PointNet runs in chunks of ``embed_chunk`` groups when its BatchNorms are in eval mode
  (exact: each group is independent then). With autograd on, each chunk is recomputed in the
  backward pass (activation checkpointing): a 4096 x 128 cloud would otherwise hold ~6 GiB of
  per-point activations. In training mode (self-supervised pretraining) BatchNorm statistics
  couple the groups, so the embedding then runs unchunked.
- No drop_path/dropout at all: the official encoder only uses them during pretraining; our own
  pretraining (``pretrain.py``) does without them too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .norms import LayerNorm, batch_norm_rows

#: Transformer blocks whose outputs (each through the final LayerNorm) form the group feature.
FEATURE_BLOCKS = (3, 7, 11)


def _fold_batchnorm(weight: torch.Tensor, bias: torch.Tensor, bn: nn.BatchNorm1d):
    """(W (out,in), b (out,)) followed by eval-mode BatchNorm -> one affine layer (W', b')."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return weight * scale[:, None], (bias - bn.running_mean) * scale + bn.bias


class MiniPointNet(nn.Module):
    """Point-MAE ``Encoder``: per-group shared MLP with max pooling, (B,G,k,3) -> (B,G,C)."""

    def __init__(self, encoder_channel: int = 384):
        super().__init__()
        self.encoder_channel = encoder_channel
        self.first_conv = nn.Sequential(
            nn.Conv1d(3, 128, 1), nn.BatchNorm1d(128), nn.ReLU(inplace=True), nn.Conv1d(128, 256, 1))
        self.second_conv = nn.Sequential(
            nn.Conv1d(512, 512, 1), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
            nn.Conv1d(512, encoder_channel, 1))

    def embed(self, groups: torch.Tensor) -> torch.Tensor:
        """groups (M,k,3) -> (M,C).

        Point-MAE's maths, computed points-last: every 1x1 Conv1d is a matrix product over
        (M*k, channels) rows, and BatchNorm1d normalises those rows (the same statistics as over
        (M, channels, k)). The second block's first layer sees ``cat(global, per-point)``: its
        weight is applied in two halves, the global half once per group instead of once per
        point (a quarter of the encoder's work saved; equal up to float rounding).
        """
        conv1, bn1, _, conv2 = self.first_conv
        conv3, bn2, _, conv4 = self.second_conv
        if not (bn1.training or bn2.training):
            return self._embed_folded(groups)
        m, k, _ = groups.shape
        x = F.linear(groups.reshape(m * k, 3), conv1.weight[..., 0], conv1.bias)
        x = F.relu_(batch_norm_rows(x, bn1))
        feature = F.linear(x, conv2.weight[..., 0], conv2.bias)                # (M*k,256)
        global_feature = feature.view(m, k, -1).max(dim=1).values             # (M,256)
        w3 = conv3.weight[..., 0]
        half = global_feature.shape[1]
        per_group = F.linear(global_feature, w3[:, :half], conv3.bias)        # (M,512)
        x = F.linear(feature, w3[:, half:]).view(m, k, -1)
        x = F.relu_(batch_norm_rows((x + per_group[:, None, :]).view(m * k, -1), bn2))
        feature = F.linear(x, conv4.weight[..., 0], conv4.bias)              # (M*k,C)
        return feature.view(m, k, -1).max(dim=1).values

    def _embed_folded(self, groups: torch.Tensor) -> torch.Tensor:
        """``embed`` with eval-mode BatchNorms, arranged so no per-point bias is ever added:
        the per-point tensors are the big ones (M*k rows) and each pass over them costs more
        than the arithmetic around it. Each BatchNorm is folded into the layer before it; the
        first layer's bias rides in a column of ones; a bias before a max over the group's
        points is added after it (max(a + b) = max(a) + b, exactly); the 128->256 layer's bias
        reaches the next layer through its weight (W (f + b) = W f + W b, per group).
        """
        m, k, _ = groups.shape
        conv1, bn1, _, conv2 = self.first_conv
        conv3, bn2, _, conv4 = self.second_conv
        w1, b1 = _fold_batchnorm(conv1.weight[..., 0], conv1.bias, bn1)
        w3, b3 = _fold_batchnorm(conv3.weight[..., 0], conv3.bias, bn2)
        w2, b2 = conv2.weight[..., 0], conv2.bias
        half = w2.shape[0]
        w3_global, w3_point = w3[:, :half], w3[:, half:]
        rows = torch.cat([groups.reshape(m * k, 3), groups.new_ones(m * k, 1)], dim=1)
        x = torch.mm(rows, torch.cat([w1, b1[:, None]], dim=1).t()).relu_()  # (M*k,128)
        feature = torch.mm(x, w2.t())                                       # (M*k,256), no b2
        global_feature = feature.view(m, k, -1).amax(dim=1) + b2            # (M,256)
        if torch.is_grad_enabled() and b2.requires_grad:
            # b2's gradient through a matrix-vector product would be an MKL gemv, whose sums
            # depend on the thread count; a 1-row matrix product is a gemm (thread-invariant
            # under strict CNR, see norms.py). Inference keeps the gemv's bits.
            b2_through_w3 = torch.mm(b2[None], w3_point.t())[0]
        else:
            b2_through_w3 = w3_point @ b2
        per_group = F.linear(global_feature, w3_global, b3 + b2_through_w3)  # (M,512)
        x = torch.mm(feature, w3_point.t()).view(m, k, -1)
        x = x.add_(per_group[:, None, :]).relu_().view(m * k, -1)           # (M*k,512)
        return torch.mm(x, conv4.weight[..., 0].t()).view(m, k, -1).amax(dim=1) + conv4.bias

    def forward(self, point_groups: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """point_groups (B,G,k,3) -> (B,G,C). ``chunk``: groups per pass (eval-mode BN only)."""
        b, g, k, _ = point_groups.shape
        flat = point_groups.reshape(b * g, k, 3)
        bn_training = any(m.training for m in self.modules() if isinstance(m, nn.BatchNorm1d))
        if chunk is None or bn_training or flat.shape[0] <= chunk:
            out = self.embed(flat)
        else:
            use_ckpt = torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
            parts = []
            for s in range(0, flat.shape[0], chunk):
                piece = flat[s:s + chunk]
                parts.append(checkpoint(self.embed, piece, use_reentrant=False) if use_ckpt
                             else self.embed(piece))
            out = torch.cat(parts, 0)
        return out.reshape(b, g, self.encoder_channel)


class Attention(nn.Module):
    """Multi-head self-attention with Point-MAE's parameter names (qkv without bias, proj)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (B,H,N,C/H)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block (Point-MAE ``Block``) without drop_path."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TransformerEncoder(nn.Module):
    """Point-MAE ``TransformerEncoder``: the position embedding is re-added before every block."""

    def __init__(self, dim: int, depth: int, num_heads: int):
        super().__init__()
        self.blocks = nn.ModuleList([Block(dim, num_heads) for _ in range(depth)])

    def forward(self, x: torch.Tensor, pos: torch.Tensor, fetch=()) -> tuple[torch.Tensor, list]:
        """Returns the last block's output and the outputs of the blocks listed in ``fetch``."""
        fetched = []
        for i, block in enumerate(self.blocks):
            x = block(x + pos)
            if i in fetch:
                fetched.append(x)
        return x, fetched


class PointMAEEncoder(nn.Module):
    """Point-MAE group encoder: mini-PointNet group tokens + centre position embedding +
    ``depth`` transformer blocks + final LayerNorm.

    Args:
        trans_dim: token width (384 in every official checkpoint).
        depth: transformer blocks (12).
        num_heads: attention heads (6).
        feature_blocks: 0-based blocks whose normalised outputs are concatenated into the group
            feature (default (3, 7, 11): 3 x 384 = 1152 dims, as M3DM / Reg3D-AD).
        embed_chunk: groups per mini-PointNet pass in eval mode (memory bound; see module doc).

    ``forward(neighborhood (B,G,k,3), center (B,G,3)) -> (B,G,len(feature_blocks)*trans_dim)``;
    neighbourhoods are relative to their centres (``grouping.make_groups`` output). With
    ``final_only=True`` it returns the last block's output through the LayerNorm, (B,G,trans_dim).
    """

    def __init__(self, trans_dim: int = 384, depth: int = 12, num_heads: int = 6,
                 feature_blocks=FEATURE_BLOCKS, embed_chunk: int = 1024):
        super().__init__()
        if trans_dim % num_heads:
            raise ValueError(f"trans_dim ({trans_dim}) must be divisible by num_heads ({num_heads})")
        if not feature_blocks or any(not 0 <= b < depth for b in feature_blocks):
            raise ValueError(f"feature_blocks must be non-empty indices in [0, {depth}); got {feature_blocks}")
        self.trans_dim, self.depth, self.num_heads = trans_dim, depth, num_heads
        self.feature_blocks = tuple(int(b) for b in feature_blocks)
        self.embed_chunk = embed_chunk
        self.encoder = MiniPointNet(trans_dim)
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, trans_dim))
        self.blocks = TransformerEncoder(trans_dim, depth, num_heads)
        self.norm = LayerNorm(trans_dim)

    @property
    def feature_dim(self) -> int:
        return self.trans_dim * len(self.feature_blocks)

    def tokens(self, neighborhood: torch.Tensor, center: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Group tokens (B,G,C) and position embeddings (B,G,C), before the transformer."""
        _check_inputs(neighborhood, center)
        return self.encoder(neighborhood, chunk=self.embed_chunk), self.pos_embed(center)

    def forward(self, neighborhood: torch.Tensor, center: torch.Tensor, final_only: bool = False) -> torch.Tensor:
        x, pos = self.tokens(neighborhood, center)
        last, fetched = self.blocks(x, pos, fetch=() if final_only else self.feature_blocks)
        if final_only:
            return self.norm(last)
        return torch.cat([self.norm(f) for f in fetched], dim=-1)


def _check_inputs(neighborhood, center) -> None:
    if not isinstance(neighborhood, torch.Tensor) or neighborhood.dim() != 4 or neighborhood.shape[-1] != 3:
        raise ValueError(f"neighborhood must be a (B,G,k,3) tensor; got "
                         f"{tuple(neighborhood.shape) if isinstance(neighborhood, torch.Tensor) else type(neighborhood).__name__}")
    if not isinstance(center, torch.Tensor) or center.shape != neighborhood.shape[:2] + (3,):
        raise ValueError(f"center must be a (B,G,3) tensor matching neighborhood {tuple(neighborhood.shape)}; got "
                         f"{tuple(center.shape) if isinstance(center, torch.Tensor) else type(center).__name__}")
    if neighborhood.shape[2] < 1 or neighborhood.shape[1] < 1:
        raise ValueError(f"neighborhood needs at least one group of at least one point; got {tuple(neighborhood.shape)}")
