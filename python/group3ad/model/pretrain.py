"""Self-supervised Point-MAE pretraining on the category's own clouds (no download possible).

Point-MAE's masked group reconstruction: a random 60 % of each step's groups are masked, the
encoder sees only the visible tokens, a light transformer decoder (4 blocks) receives the encoded
visible tokens plus a shared mask token at every masked centre, and a Conv1d head predicts each
masked group's ``group_size`` points (relative to its centre); the loss is the symmetric
Chamfer-L2 distance (Point-MAE's ChamferDistanceL2: mean squared nearest distance each way,
summed). Module names follow Point-MAE's ``Point_MAE`` (MAE_encoder, MAE_decoder, mask_token,
decoder_pos_embed, increase_dim), so ``MAEPretrainer.state_dict()`` has the official layout.
Groups come from the full-resolution clouds (FPS from a random start point each step); no
drop_path; BatchNorm in training mode. See ``config.PretrainConfig`` for the sizes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import PretrainConfig
from .encoder import Block, PointMAEEncoder
from .grouping import make_groups
from .norms import LayerNorm


def chamfer_l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Symmetric Chamfer-L2 of point sets a (B,n,3), b (B,m,3): mean_i min_j |a_i-b_j|^2 +
    mean_j min_i |a_i-b_j|^2, averaged over the batch (exact difference form, no Gram trick)."""
    d2 = ((a[:, :, None, :] - b[:, None, :, :]) ** 2).sum(-1)
    return d2.min(2).values.mean() + d2.min(1).values.mean()


class TransformerDecoder(nn.Module):
    """Point-MAE ``TransformerDecoder``: blocks (position re-added each time), norm on the last
    ``n_return`` tokens."""

    def __init__(self, dim: int, depth: int, num_heads: int):
        super().__init__()
        self.blocks = nn.ModuleList([Block(dim, num_heads) for _ in range(depth)])
        self.norm = LayerNorm(dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, n_return: int) -> torch.Tensor:
        for block in self.blocks:
            x = block(x + pos)
        return self.norm(x[:, -n_return:])


class MAEPretrainer(nn.Module):
    """Point-MAE model around a PointMAEEncoder. ``forward(neighborhood (B,G,k,3), center (B,G,3),
    generator) -> Chamfer-L2 loss`` of the masked groups' reconstruction."""

    def __init__(self, encoder: PointMAEEncoder, group_size: int, mask_ratio: float = 0.6,
                 decoder_depth: int = 4, decoder_heads: int = 6):
        super().__init__()
        dim = encoder.trans_dim
        self.MAE_encoder = encoder
        self.mask_ratio = mask_ratio
        self.group_size = group_size
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.decoder_pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, dim))
        self.MAE_decoder = TransformerDecoder(dim, decoder_depth, decoder_heads)
        self.increase_dim = nn.Conv1d(dim, 3 * group_size, 1)

    def random_mask(self, b: int, g: int, generator: torch.Generator, device) -> torch.Tensor:
        """(B,G) bool, True on int(mask_ratio * G) randomly chosen groups per cloud."""
        n_mask = int(self.mask_ratio * g)
        mask = torch.zeros(b, g, dtype=torch.bool)
        for i in range(b):
            mask[i, torch.randperm(g, generator=generator)[:n_mask]] = True
        return mask.to(device)

    def forward(self, neighborhood: torch.Tensor, center: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        enc = self.MAE_encoder
        b, g, k, _ = neighborhood.shape
        if k != self.group_size:
            raise ValueError(f"neighborhood has groups of {k} points; this pretrainer predicts {self.group_size}")
        mask = self.random_mask(b, g, generator, neighborhood.device)
        tokens, pos = enc.tokens(neighborhood, center)
        c = tokens.shape[-1]
        x_vis = tokens[~mask].reshape(b, -1, c)
        x_vis, _ = enc.blocks(x_vis, pos[~mask].reshape(b, -1, c))
        x_vis = enc.norm(x_vis)
        n_mask = int(mask[0].sum())
        pos_vis = self.decoder_pos_embed(center[~mask].reshape(b, -1, 3))
        pos_mask = self.decoder_pos_embed(center[mask].reshape(b, -1, 3))
        x_full = torch.cat([x_vis, self.mask_token.expand(b, n_mask, -1)], dim=1)
        x_rec = self.MAE_decoder(x_full, torch.cat([pos_vis, pos_mask], dim=1), n_mask)
        # increase_dim is a 1x1 Conv1d (Point-MAE's parameter names); applied as the matrix product
        # it is, since oneDNN's convolution gradients change with the thread count (norms.py).
        conv = self.increase_dim
        rebuild = F.linear(x_rec, conv.weight[..., 0], conv.bias).reshape(b * n_mask, k, 3)
        target = neighborhood[mask].reshape(b * n_mask, k, 3)
        return chamfer_l2(rebuild, target)


def pretrain_encoder(clouds, config: PretrainConfig | None = None, device="cpu",
                     encoder: PointMAEEncoder | None = None) -> tuple[PointMAEEncoder, dict]:
    """Pretrain a (new, or the given) PointMAEEncoder on ``clouds`` (list of (N_i,3) tensors).

    AdamW(lr, weight_decay) with cosine decay over all steps; one cloud per step, ``steps_per_cloud``
    steps per cloud per epoch, each with a new random FPS start. Seeded: the same call gives the
    same weights on the same device. Returns (encoder in eval mode, history with per-step losses).
    """
    from tqdm.auto import tqdm

    config = config or PretrainConfig()
    config.validate()
    clouds = [c.detach().to("cpu", torch.float32) for c in clouds]
    if not clouds:
        raise ValueError("clouds must contain at least one cloud")
    for i, c in enumerate(clouds):
        if c.dim() != 2 or c.shape[1] != 3 or c.shape[0] < max(config.n_groups, config.group_size):
            raise ValueError(f"clouds[{i}] must be (N,3) with N >= n_groups ({config.n_groups}) and "
                             f">= group_size ({config.group_size}); got {tuple(c.shape)}")
    device = torch.device(device)
    torch.manual_seed(config.seed)
    if encoder is None:
        encoder = PointMAEEncoder(embed_chunk=config.embed_chunk)
    model = MAEPretrainer(encoder, config.group_size, config.mask_ratio, config.decoder_depth,
                          config.decoder_heads).to(device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    total = config.epochs * len(clouds) * config.steps_per_cloud
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    gen = torch.Generator().manual_seed(config.seed)
    history = {"config": config.to_dict(), "steps": [], "epochs": []}
    bar = tqdm(total=total, disable=not config.progress, desc="Point-MAE pretraining", dynamic_ncols=True)
    for epoch in range(config.epochs):
        losses = []
        for i in torch.randperm(len(clouds), generator=gen).tolist():
            cloud = clouds[i].to(device)
            for _ in range(config.steps_per_cloud):
                start = int(torch.randint(cloud.shape[0], (1,), generator=gen))
                nb, center, _, _ = make_groups(cloud, config.n_groups, config.group_size, start_idx=start)
                loss = model(nb[None], center[None], gen)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                losses.append(float(loss.detach()))
                history["steps"].append({"epoch": epoch, "cloud": i, "loss": losses[-1]})
                bar.set_postfix_str(f"epoch {epoch + 1}/{config.epochs} chamfer {losses[-1]:.4g}")
                bar.update(1)
        history["epochs"].append({"epoch": epoch, "mean_loss": sum(losses) / len(losses)})
    bar.close()
    return encoder.eval(), history
