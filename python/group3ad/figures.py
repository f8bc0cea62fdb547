"""PNG figures (matplotlib, headless Agg): ROC curves per category, and a scored test cloud
rendered beside its ground truth."""

from __future__ import annotations

import os

import numpy as np

MAX_RENDER_POINTS = 30000


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def roc_figure(path: str, category: str, curves: dict) -> str:
    """curves: method -> (object_labels, object_scores, point_labels list, point_scores list).
    Two panels: object-level and point-level ROC, one line per method with its AUROC."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for name, (ol, os_, pl, ps) in curves.items():
        pl, ps = np.concatenate(pl), np.concatenate(ps)
        for ax, y, s in ((axes[0], ol, os_), (axes[1], pl, ps)):
            if len(np.unique(y)) < 2:
                continue
            fpr, tpr, _ = roc_curve(y, s)
            ax.plot(fpr, tpr, label=f"{name} ({roc_auc_score(y, s):.3f})")
    for ax, title in zip(axes, ("object level", "point level")):
        ax.plot([0, 1], [0, 1], color="grey", lw=0.5, ls="--")
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"{category}: {title}",
               xlim=(0, 1), ylim=(0, 1.01))
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render_scored_cloud(path: str, points: np.ndarray, scores: np.ndarray, labels=None,
                        title: str = "", seed: int = 0) -> str:
    """The cloud coloured by anomaly score, beside its ground truth (red = anomalous) when
    ``labels`` are given. At most MAX_RENDER_POINTS points (seeded subset, anomalies kept)."""
    plt = _plt()
    points, scores = np.asarray(points), np.asarray(scores, dtype=np.float64)
    keep = np.arange(len(points))
    if len(points) > MAX_RENDER_POINTS:
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(len(points), MAX_RENDER_POINTS, replace=False))
        if labels is not None:
            keep = np.union1d(keep, np.flatnonzero(np.asarray(labels) > 0))
    p = points[keep]
    panels = [("anomaly score", scores[keep], "jet")]
    if labels is not None:
        panels.append(("ground truth", np.asarray(labels)[keep].astype(float), "coolwarm"))
    fig = plt.figure(figsize=(5.5 * len(panels), 5))
    for i, (name, c, cmap) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1, projection="3d")
        order = np.argsort(c, kind="stable")  # anomalies drawn last, on top
        ax.scatter(p[order, 0], p[order, 1], p[order, 2], c=c[order], cmap=cmap, s=0.5, linewidths=0)
        ax.set_title(f"{title}\n{name}" if title else name, fontsize=9)
        ax.set_axis_off()
        span = (p.max(0) - p.min(0)).max() / 2
        mid = (p.max(0) + p.min(0)) / 2
        ax.set(xlim=(mid[0] - span, mid[0] + span), ylim=(mid[1] - span, mid[1] + span),
               zlim=(mid[2] - span, mid[2] + span))
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def scored_cloud_figure(path: str, samples, clouds, point_scores, title: str) -> str | None:
    """Render the first anomalous test cloud of a category (the first cloud if none is)."""
    if not clouds:
        return None
    i = next((j for j, s in enumerate(samples) if s.is_anomalous), 0)
    return render_scored_cloud(path, clouds[i].points, point_scores[i], clouds[i].labels,
                               f"{title} — {samples[i].name}")
