"""Group3AD encoder training, Algorithm 1 phases 1 (IUN) and 2 (IAN).

One step = one training cloud with ALL its groups (n_groups FPS centres x group_size neighbours
over the whole full-resolution cloud, one attention sequence):
    phase 1 (E // 2 epochs): P_mod = FakeAnomaly(P); F = enc(groups(P_mod)); K-means on F (K by
        elbow); L_IUN = 1 / min distance between the cluster centres; Adam step.
    phase 2 (E - E // 2 epochs): F = enc(groups(P)); K-means; L_IAN = T/K sum_k maxdist_k^2; step.
Assignments come from k-means on the detached features (fixed within the step); the centres are
means of the live features, so both losses reach the encoder.

Stated choices: the encoder stays in eval mode throughout (BatchNorm uses its running statistics:
one cloud per step gives no representative batch, and updating the statistics from fake-anomaly
clouds would shift the clean features); the final LayerNorm is frozen (see config); clouds are
visited in a seeded random order each epoch; FPS starts at point 0 (training uses FPS centres,
Supplementary C), so each clean cloud's groups are computed once; fake anomalies change every step
(seeded by seed, epoch, cloud). Determinism: torch.manual_seed(seed) and
torch.use_deterministic_algorithms(True, warn_only=True) for the duration (restored afterwards);
on CUDA set CUBLAS_WORKSPACE_CONFIG=:4096:8 before the first CUDA call for bitwise repeatability.
"""

from __future__ import annotations

import os

import torch

from .checkpoint import save_checkpoint
from .config import Group3ADTrainConfig
from .encoder import PointMAEEncoder
from .fake_anomaly import anomaly_center, make_fake_anomaly
from .grouping import make_groups
from .kmeans import kmeans, kmeans_elbow
from .losses import cluster_centers, ian_loss, iun_loss


def _mix(*parts: int) -> int:
    h = 0x9E3779B9
    for p in parts:
        h = (h * 1000003 + int(p) + 1) % (2**63 - 1)
    return h


def phase_loss(encoder: PointMAEEncoder, neighborhood: torch.Tensor, center: torch.Tensor, phase: str,
               config: Group3ADTrainConfig, seed: int) -> tuple[torch.Tensor, int]:
    """Loss of one cloud's groups (neighborhood (G,k,3), center (G,3)) for phase 'iun' or 'ian';
    returns (loss, K). Gradients flow when grad mode is on."""
    feats = encoder(neighborhood[None], center[None])[0]
    x = feats.detach()
    if config.k_fixed is not None:
        res = kmeans(x, min(config.k_fixed, x.shape[0]), seed=seed, max_iter=config.kmeans_max_iter)
    else:
        res = kmeans_elbow(x, k_max=config.k_max, seed=seed, max_iter=config.kmeans_max_iter)[0]
    # relabel to the non-empty clusters only (duplicate features can leave one empty)
    present, labels = torch.unique(res.labels, return_inverse=True)
    k = int(present.numel())
    if phase == "iun":
        if k < 2:
            raise ValueError("all group features coincide: IUN needs at least two distinct clusters")
        return iun_loss(cluster_centers(feats, labels, k), eps=config.eps), k
    if phase == "ian":
        return ian_loss(feats, labels, k, config.temperature), k
    raise ValueError(f"phase must be 'iun' or 'ian'; got {phase!r}")


def train_group3ad(encoder: PointMAEEncoder, clouds, config: Group3ADTrainConfig | None = None,
                   device="cpu") -> dict:
    """Train ``encoder`` in place on ``clouds`` (list of (N_i,3) tensors, one category's training
    clouds, centred). Returns the history: ``steps`` (phase, epoch, cloud, loss, k per step),
    ``epochs`` (mean loss per epoch), ``evaluation`` (mean loss of each phase over all clouds with
    fixed seeds, before and after that phase, when config.evaluate), ``checkpoints``, ``config``."""
    from tqdm.auto import tqdm

    config = config or Group3ADTrainConfig()
    config.validate()
    clouds = list(clouds)
    if not clouds:
        raise ValueError("clouds must contain at least one training cloud")
    for i, c in enumerate(clouds):
        if not isinstance(c, torch.Tensor) or c.dim() != 2 or c.shape[1] != 3:
            raise ValueError(f"clouds[{i}] must be an (N,3) tensor")
        if c.shape[0] < max(config.n_groups, config.group_size):
            raise ValueError(f"clouds[{i}] has {c.shape[0]} points, fewer than n_groups ({config.n_groups}) "
                             f"or group_size ({config.group_size})")
    device = torch.device(device)
    encoder.to(device).eval()
    encoder.embed_chunk = config.embed_chunk
    for p in encoder.norm.parameters():
        p.requires_grad_(not config.freeze_final_norm)
    params = [p for p in encoder.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=config.lr)

    history = {"config": config.to_dict(), "steps": [], "epochs": [], "evaluation": {}, "checkpoints": []}
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        cpu_clouds = [c.detach().to("cpu", torch.float32) for c in clouds]
        centers = [anomaly_center(c, config.fpfh_radius) for c in cpu_clouds]
        clean = [_groups(c, config, device) for c in cpu_clouds]

        def fake_groups(i, epoch):
            fa = make_fake_anomaly(cpu_clouds[i], seed=_mix(config.seed, 1, epoch, i), ratio_range=config.ratio_range,
                                   variance_range=config.variance_range, noise_unit=config.noise_unit,
                                   combine=config.combine, center_index=centers[i])
            return _groups(fa.points, config, device)

        def evaluate(phase):
            with torch.no_grad():
                groups = [fake_groups(i, 0) if phase == "iun" else clean[i] for i in range(len(clouds))]
                vals = [float(phase_loss(encoder, *g, phase, config, _mix(config.seed, 3, i))[0])
                        for i, g in enumerate(groups)]
            return sum(vals) / len(vals)

        e1 = config.epochs // 2
        plan = [("iun", e) for e in range(e1)] + [("ian", e) for e in range(e1, config.epochs)]
        bar = tqdm(total=len(plan) * len(clouds), disable=not config.progress, desc="Group3AD", dynamic_ncols=True)
        order_gen = torch.Generator().manual_seed(_mix(config.seed, 4))
        for phase in ("iun", "ian"):
            epochs = [e for ph, e in plan if ph == phase]
            if not epochs:
                continue
            if config.evaluate:
                history["evaluation"][f"{phase}_before"] = evaluate(phase)
            for epoch in epochs:
                losses = []
                for i in torch.randperm(len(clouds), generator=order_gen).tolist():
                    groups = fake_groups(i, epoch) if phase == "iun" else clean[i]
                    loss, k = phase_loss(encoder, *groups, phase, config, _mix(config.seed, 2, epoch, i))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    value = float(loss.detach())
                    losses.append(value)
                    history["steps"].append({"phase": phase, "epoch": epoch, "cloud": i, "loss": value, "k": k})
                    bar.set_postfix_str(f"{phase.upper()} epoch {epoch + 1}/{config.epochs} loss {value:.4g} K {k}")
                    bar.update(1)
                history["epochs"].append({"phase": phase, "epoch": epoch, "mean_loss": sum(losses) / len(losses)})
            if config.evaluate:
                history["evaluation"][f"{phase}_after"] = evaluate(phase)
            if config.checkpoint_dir:
                path = save_checkpoint(encoder, os.path.join(config.checkpoint_dir, f"{phase}.pth"),
                                       phase=phase, epoch=epochs[-1] + 1, config=config.to_dict(),
                                       steps=history["steps"])
                history["checkpoints"].append(path)
        bar.close()
    finally:
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
    return history


def _groups(points: torch.Tensor, config: Group3ADTrainConfig, device) -> tuple[torch.Tensor, torch.Tensor]:
    nb, center, _, _ = make_groups(points.to(device), config.n_groups, config.group_size)
    return nb, center
